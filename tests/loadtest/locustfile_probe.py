"""Imports the real locustfile as Locust does (in a subprocess: importing Locust monkey-patches the whole process) and
prints, as JSON, the tasks it built and what Locust's tag filter and each user's weighting leave of them.

    python tests/loadtest/locustfile_probe.py [TAG ...] -- LOCUST ARGS (e.g. --spec PATH)
"""

import json
import runpy
import sys
from pathlib import Path
from types import SimpleNamespace

LOCUSTFILE = Path(__file__).resolve().parents[2] / "loadtest" / "locustfile.py"

if __name__ == "__main__":
    split = sys.argv.index("--")
    tags, sys.argv = sys.argv[1:split], ["locust", *sys.argv[split + 1:]]
    namespace = runpy.run_path(str(LOCUSTFILE))

    from locust.user.task import filter_tasks_by_tags

    scenarios = namespace["ModelScenarios"]
    built = [{"name": t.__name__, "tags": sorted(t.locust_tag_set), "target": t.target.name} for t in scenarios.tasks]
    calls = []
    scenarios.tasks[0](SimpleNamespace(user=SimpleNamespace(infer=lambda target: calls.append(target.name))))
    filter_tasks_by_tags(namespace["TritonHttpUser"], tags=set(tags) or None)
    options = SimpleNamespace(tags=tags)
    picked = SimpleNamespace(tasks=list(scenarios.tasks),
                             user=SimpleNamespace(environment=SimpleNamespace(parsed_options=options)))
    scenarios.on_start(picked)
    print(json.dumps({"spec": str(namespace["SPEC_PATH"]), "tasks": built, "first_task_calls": calls,
                      "user_list": [t.__name__ for t in picked.tasks]}))
