"""The model lifecycle end to end (docs/lifecycle.md, "A worked example"), on a copy of the project: a small model goes
in through models.toml alone and is exported (version 1); a deliberately worse version of it, retrained on shuffled
labels, is exported beside it (version 2, a candidate); with the real Triton and the gateway serving, a 20 % canary
of version 2 under Locust traffic that sends feedback for a share of its requests is rolled back by the gateway on its
own within its window, on the accuracy the feedback measures, while no request fails and stable's answers all come
from version 1; then a good version 3 is exported, started and promoted after a clean window, and answers.

The commands are those of the page's worked example, in its order (WORKED_EXAMPLE; a unit test below holds the page
to them).
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import requests

from core.lifecycle import read_lifecycle
from tests.conftest import launch_triton
from tests.test_adding_a_model import copy_project, run, tail

ROOT = Path(__file__).resolve().parents[1]
LIFECYCLE_DOC = ROOT / "docs" / "lifecycle.md"
MODEL = "iris"
WINDOW_S = 30

# The user's model, trained in seconds: a Keras MLP on scikit-learn's iris. Each argument `KIND:SEED:PATH` trains one
# version into PATH: `good` on the true labels, `shuffled` on the training labels permuted (a model that learnt
# nothing). One process trains every version the test exports (Keras imports once); the held-out rows and their true
# labels are the same for all of them.
TRAIN = """
import os, sys
import keras
import numpy as np
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split

x, y = load_iris(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(x.astype("float32"), y, test_size=0.3, random_state=0, stratify=y)
os.makedirs("models/iris", exist_ok=True)
np.savez("models/iris/heldout.npz", x=x_test, y=y_test)
for version in sys.argv[1:]:
    kind, seed, path = version.split(":", 2)
    keras.utils.set_random_seed(int(seed))
    labels = np.random.default_rng(int(seed)).permutation(y_train) if kind == "shuffled" else y_train
    norm = keras.layers.Normalization()
    norm.adapt(x_train)
    inputs = keras.Input((4,), name="measurements")
    hidden = keras.layers.Dense(16, activation="relu")(norm(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="species")(hidden))
    model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy")
    model.fit(x_train, labels, epochs=60, verbose=0)
    model.save(path)
"""

# Limits scaled for a test: a 30 s window, judged after 30 canary requests and 20 judged predictions on each version.
# The test is about the accuracy feedback measures: disagreement is counted but acted on only above 1 (never), and
# latency on a shared 2-core machine is noise, not the model's (p99 ratio 20).
SPEC = f"""
[[model]]
name = "iris"
kind = "onnx"
description = "Keras MLP on scikit-learn's iris: four measurements to three species."
source = "models/iris/iris.keras"
heldout = "models/iris/heldout.npz"
max_batch_size = 16

[[model.input]]
name = "measurements"
dtype = "TYPE_FP32"
dims = [4]

[[model.output]]
name = "species"
dtype = "TYPE_FP32"
dims = [3]
labels = ["setosa", "versicolor", "virginica"]

[model.lifecycle]
window_seconds = {WINDOW_S}
min_requests = 30
min_feedback = 20
max_accuracy_drop = 0.2
max_disagreement = 1.0
max_p99_ratio = 20
auto_promote = true
"""

# What the page's worked example runs, in order; {gateway} is the running gateway's URL.
WORKED_EXAMPLE = (
    "python -m export --only iris",
    "python -m export --only iris",
    "python -m operate rollout start iris --percent 20",
    "python -m loadtest --gateway {gateway} --users 4 --feedback-share 0.5 -- --throughput-per-user 25 --tags iris",
    "python -m operate rollout status iris --gateway {gateway}",
    "python -m export --only iris",
    "python -m operate rollout start iris --percent 20",
    "python -m operate rollout status iris --gateway {gateway}",
)
EXPORT, STATUS = WORKED_EXAMPLE[0], WORKED_EXAMPLE[4]


def wait_for(condition, timeout_s: float, what: str, shown=lambda: "", interval_s: float = 0.5):
    """condition()'s first true value within the time; else the test fails with `shown()`, what there is to see."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval_s)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}\n{shown()}", pytrace=False)


def history(project: Path, action: str, version: int) -> dict | None:
    """The last lifecycle history entry of this action on this version, or None."""
    lifecycle = read_lifecycle(project / "model_repository" / MODEL)
    entries = [h for h in (lifecycle.history if lifecycle else ()) if h["action"] == action and h["version"] == version]
    return entries[-1] if entries else None


def access_log(path: Path) -> list[dict]:
    """The gateway's access log lines of predict requests to the model."""
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [line for line in lines if line.get("path") == f"/v1/models/{MODEL}:predict"]


def train(project: Path, *versions: str) -> None:
    run([sys.executable, "-c", TRAIN, *versions], cwd=project)


def argv(line: str, *extra: str, **values: str) -> list[str]:
    """A worked-example command as this interpreter runs it; `extra` options go before its ` -- ` (Locust's part)."""
    assert line in WORKED_EXAMPLE, line
    head, _, locust_part = line.format(**values).partition(" -- ")
    return [sys.executable, *shlex.split(head)[1:], *extra, *(("--", *shlex.split(locust_part)) if locust_part else ())]


def example(ran: list[str], project: Path, line: str, env: dict | None = None, **values: str) -> str:
    ran.append(line)
    result = subprocess.run(argv(line, **values), cwd=project, capture_output=True, text=True, timeout=600,
                            env={**os.environ, **(env or {})})
    assert result.returncode == 0, f"{line}\n{tail(result)}"
    return result.stdout + result.stderr


LOADTEST = WORKED_EXAMPLE[3]


@contextlib.contextmanager
def locust(ran: list[str], project: Path, triton, gateway, key: str, workdir: Path):
    """The worked example's load test, 4 users offering 100 requests/s, in the background until stopped (its duration
    is only a bound): its statistics are read once it has quit. Triton's addresses are the test's; the SLO gate is
    loose (a shared machine): the tests count the failures."""
    workdir.mkdir(parents=True, exist_ok=True)
    ran.append(LOADTEST)
    command = argv(LOADTEST, "--http-url", triton.http_url, "--metrics-url", triton.metrics_url, "--duration", "300",
                   "--report-dir", str(workdir), "--slo-min-rps", "1", "--slo-p99-ms", "60000", gateway=gateway.url)
    with open(workdir / "loadtest.out", "wb") as out:
        proc = subprocess.Popen(command, cwd=project, env={**os.environ, "MODELPORT_API_KEY": key}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # Locust quits on SIGTERM and writes its statistics
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def locust_rows(workdir: Path) -> dict[str, dict]:
    with open(workdir / "locust_stats.csv", newline="") as handle:
        return {row["Name"]: row for row in csv.DictReader(handle)}


def tail_of(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else ""


def unix_time(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


@dataclasses.dataclass(frozen=True)
class Observed:
    """What the worked example did and what it left, for the tests below to judge."""

    ran: tuple[str, ...]  # the worked example's commands, in the order they ran
    project: Path
    exports: tuple[str, ...]  # each `python -m export`'s output
    started: dict  # version 2's start, its rollback, version 3's start and promotion: lifecycle history entries
    rolled_back: dict
    restarted: dict
    promoted: dict
    status_rolled_back: str  # `rollout status` after the rollback, and at the end
    status_end: str
    answers: tuple[dict, ...]  # the gateway's access log lines of the model's predict requests
    stats: dict  # Locust's statistics rows by name
    metrics: str  # the gateway's /metrics at the end
    final_version: str  # Model-Version of an answer after the promotion
    triton_ready: set  # the versions Triton has ready at the end
    phases: dict  # seconds each phase took, in order


@pytest.fixture(scope="module")
def observed(tmp_path_factory) -> Observed:
    from tests.gateway.conftest import launch_gateway

    began = time.monotonic()
    phases: dict[str, float] = {}

    def lap(name: str) -> None:
        phases[name] = round(time.monotonic() - began - sum(phases.values()), 1)

    work = tmp_path_factory.mktemp("lifecycle")
    project = copy_project(tmp_path_factory.mktemp("project"))
    builds = work / "builds"
    builds.mkdir()
    train(project, "good:0:models/iris/iris.keras", f"shuffled:0:{builds / 'shuffled.keras'}",
          f"good:1:{builds / 'retrained.keras'}")
    with open(project / "models.toml", "a", encoding="utf-8") as spec:
        spec.write(SPEC)
    lap("copy and train")
    ran: list[str] = []
    exports = [example(ran, project, EXPORT)]  # version 1
    shutil.copy(builds / "shuffled.keras", project / "models" / MODEL / f"{MODEL}.keras")
    exports.append(example(ran, project, EXPORT))  # version 2, a candidate
    lap("export versions 1 and 2")

    keys = {"admin": {"scopes": ("admin",)}, "client": {"models": (MODEL,), "scopes": ("feedback",)}}
    repository = project / "model_repository"
    with launch_triton(repository, work / "triton") as triton, \
            launch_gateway(triton, work / "gateway", "--spec", str(project / "models.toml"), "--repository",
                           str(repository), "--feedback-window", "100000", keys=keys) as gateway:
        lap("start Triton and the gateway")
        admin = {"MODELPORT_GATEWAY_KEY": gateway.keys["admin"]}  # `rollout status` reads GET /v1/rollouts with it
        example(ran, project, "python -m operate rollout start iris --percent 20")
        started = history(project, "start", 2)

        def shown() -> str:
            lifecycle = read_lifecycle(repository / MODEL)
            return "\n".join(["--- lifecycle history ---", *map(str, lifecycle.history if lifecycle else ()),
                              gateway.log_tail(), triton.log_tail(20),
                              f"--- load test ---\n{tail_of(work / 'loadtest' / 'loadtest.out')}"])

        with locust(ran, project, triton, gateway, gateway.keys["client"], work / "loadtest"):
            rolled_back = wait_for(lambda: history(project, "rollback", 2), WINDOW_S + 60,
                                   "the gateway to roll version 2 back on its own", shown)
            lap("canary of version 2 until its rollback")
            status_rolled_back = example(ran, project, STATUS, env=admin, gateway=gateway.url)
            shutil.copy(builds / "retrained.keras", project / "models" / MODEL / f"{MODEL}.keras")
            exports.append(example(ran, project, EXPORT))  # version 3, under load
            example(ran, project, "python -m operate rollout start iris --percent 20")
            restarted = history(project, "start", 3)
            lap("export version 3 under load")
            promoted = wait_for(lambda: history(project, "promote", 3), WINDOW_S + 90,
                                "the gateway to promote version 3 after a clean window", shown)
            lap("canary of version 3 until its promotion")
            final_version = wait_for(lambda: answered_by(gateway, "3"), 30, "version 3 to answer every request",
                                     shown)
            # Locust's traffic on version 3 as stable, once the gateway has seen the promotion, before it stops
            wait_for(lambda: sum(a.get("version") == "3" and unix_time(a["ts"]) > promoted["time"] + 2
                                 for a in access_log(gateway.access_log)) >= 50, 30, "answers from version 3",
                     shown)
        status_end = example(ran, project, STATUS, env=admin, gateway=gateway.url)
        metrics = requests.get(f"{gateway.url}/metrics", headers=gateway.auth(), timeout=10).text
        # Triton unloads the old stable once the new one is loaded
        triton_ready = wait_for(lambda: (ready := ready_versions(triton)) == {3} and ready, 30,
                                "Triton to serve version 3 alone", lambda: str(ready_versions(triton)))
        answers = tuple(access_log(gateway.access_log))
    lap("the end: stop the load, Triton and the gateway")
    (work / "phases.json").write_text(json.dumps(phases, indent=1))  # where the time went, for a slow run
    return Observed(tuple(ran), project, tuple(exports), started, rolled_back, restarted, promoted, status_rolled_back,
                    status_end, answers, locust_rows(work / "loadtest"), metrics, final_version, triton_ready,
                    phases)


def ready_versions(triton) -> set[int]:
    return {v for v in (1, 2, 3) if requests.get(f"http://{triton.http_url}/v2/models/{MODEL}/versions/{v}/ready",
                                                 timeout=5).status_code == 200}


def answered_by(gateway, version: str) -> str | None:
    """`version` when it answered five requests in a row through the gateway (its Model-Version header), else None."""
    for _ in range(5):
        response = gateway.predict(MODEL, {"inputs": [[5.1, 3.5, 1.4, 0.2]]})
        if response.status_code != 200 or response.headers.get("Model-Version") != version:
            return None
    return version


def sample(metrics: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels` (0 when none)."""
    total = 0.0
    for line in metrics.splitlines():
        head, _, value = line.rpartition(" ")
        if re.match(rf"{name}(\{{|$)", head) and all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


# ---- the worked example's outcome -----------------------------------------------------------------------------------

@pytest.mark.integration
def test_the_first_export_is_version_1_and_the_retrained_ones_are_candidates_beside_it(observed):
    first, worse, better = observed.exports
    model_dir = observed.project / "model_repository" / MODEL
    for output in (first, worse, better):
        assert re.search(r"export: wrote (.*, )?iris into", output), output[-3000:]
    assert f"rollout start {MODEL}" in worse, "the export says which command starts the candidate"
    assert {1, 2, 3} <= {int(p.name) for p in model_dir.iterdir() if p.name.isdigit()}
    assert observed.started["version"] == 2 and observed.restarted["version"] == 3


@pytest.mark.integration
def test_the_worse_version_is_rolled_back_by_the_gateway_within_its_window_on_the_accuracy_feedback_measured(
        observed):
    rollback = observed.rolled_back
    assert rollback["by"] == "auto", rollback
    assert "accuracy" in rollback["reason"], rollback
    assert rollback["time"] - observed.started["time"] <= WINDOW_S, (rollback, observed.started)
    # the judged predictions behind it, per version, in the gateway's counters
    judged = {v: sample(observed.metrics, "modelport_gateway_feedback_judged_total", model=MODEL, version=v)
              for v in ("1", "2")}
    correct = {v: sample(observed.metrics, "modelport_gateway_feedback_correct_total", model=MODEL, version=v)
               for v in ("1", "2")}
    assert judged["2"] >= 20 and judged["1"] >= 20, judged
    assert correct["1"] / judged["1"] - correct["2"] / judged["2"] > 0.2, (correct, judged)


@pytest.mark.integration
def test_the_canary_disagreed_with_stable_and_both_are_counted(observed):
    compared = sample(observed.metrics, "modelport_gateway_shadow_compared_total", model=MODEL, version="2")
    disagreed = sample(observed.metrics, "modelport_gateway_shadow_disagreed_total", model=MODEL, version="2")
    assert compared >= 30 and disagreed / compared > 0.3, (compared, disagreed)
    assert sample(observed.metrics, "modelport_gateway_rollout_actions_total", model=MODEL, action="rollback",
                  by="auto") == 1


@pytest.mark.integration
def test_no_request_failed_under_load_feedback_included(observed):
    stats = observed.stats
    assert int(stats[MODEL]["Request Count"]) > 1000 and int(stats["feedback"]["Request Count"]) > 300, stats
    assert int(stats["Aggregated"]["Failure Count"]) == 0, stats
    assert all(a["status"] == 200 for a in observed.answers), [a for a in observed.answers if a["status"] != 200][:5]


@pytest.mark.integration
def test_stable_answers_all_came_from_version_1_until_the_promotion_and_none_failed(observed):
    rolled_back, promoted = observed.rolled_back["time"], observed.promoted["time"]
    before = [a for a in observed.answers if unix_time(a["ts"]) < promoted]
    versions = {a.get("version") for a in before}
    assert versions <= {"1", "2", "3"} and "1" in versions, versions
    # the canary's share was a share: stable answered most requests while version 2 ran
    during = [a for a in before if unix_time(a["ts"]) < rolled_back]
    assert sum(a["version"] == "1" for a in during) > sum(a["version"] == "2" for a in during) > 0
    # once the gateway saw the rollback (it polls about once a second), version 2 answered nothing more
    assert not [a for a in observed.answers if a.get("version") == "2" and unix_time(a["ts"]) > rolled_back + 2]
    answered = sample(observed.metrics, "modelport_gateway_request_duration_seconds_count", model=MODEL,
                      version="1")
    ok = sample(observed.metrics, "modelport_gateway_request_duration_seconds_count", model=MODEL, version="1",
                status="200")
    assert answered == ok > 0, "every answer of version 1 is a 200"


@pytest.mark.integration
def test_the_good_version_is_promoted_after_a_clean_window_and_then_answers_alone(observed):
    promoted = observed.promoted
    assert promoted["by"] == "auto" and promoted["time"] - observed.restarted["time"] >= WINDOW_S, promoted
    assert observed.final_version == "3"
    after = [a for a in observed.answers if unix_time(a["ts"]) > promoted["time"] + 2]
    assert after and {a.get("version") for a in after} == {"3"}
    assert observed.triton_ready == {3}, "Triton serves exactly the stable version"
    lifecycle = read_lifecycle(observed.project / "model_repository" / MODEL)
    assert lifecycle.stable == 3 and lifecycle.canary is None


@pytest.mark.integration
def test_every_gateway_metric_the_alerts_and_the_dashboard_query_is_one_the_live_gateway_exports(observed):
    from operate import dashboard, rules
    from core.spec import load_spec

    spec = load_spec(observed.project / "models.toml")
    queries = [r.expr for g in rules.local_groups(spec, rules.Budgets()) for r in g.rules if isinstance(r, rules.Alert)]
    queries += dashboard.expressions(json.loads(dashboard.render(spec)))
    queried = {re.sub(r"_(bucket|count|sum)$", "", m) for q in queries for m in re.findall(r"modelport_gateway_\w+", q)}
    exported = set(re.findall(r"^# TYPE (modelport_gateway_\w+) ", observed.metrics, re.M))
    assert {"modelport_gateway_rollout_canary_percent", "modelport_gateway_shadow_compared_total"} <= queried
    assert queried - exported == set()


@pytest.mark.integration
def test_rollout_status_shows_each_version_and_the_rollback(observed):
    assert "rollback" in observed.status_rolled_back and "accuracy" in observed.status_rolled_back
    assert re.search(r"\b3\b.*stable|stable.*\b3\b", observed.status_end), observed.status_end


@pytest.mark.integration
def test_the_worked_example_ran_its_commands_in_order_in_bounded_time(observed):
    assert observed.ran == WORKED_EXAMPLE
    assert sum(observed.phases.values()) < 300, observed.phases


# ---- the page -------------------------------------------------------------------------------------------------------

def worked_example_commands() -> list[str]:
    """The lifecycle steps (`python -m export|operate|loadtest`) of docs/lifecycle.md's "A worked example", in order,
    without their environment variables, comments and a trailing `&`."""
    text = LIFECYCLE_DOC.read_text(encoding="utf-8")
    section = text.split("\n## A worked example", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    lines = [line.split("#", 1)[0].strip().removesuffix("&").strip() for block in blocks for line in block.splitlines()]
    steps = [re.sub(r"^(\w+=(\$\([^)]*\)|\S+) )+", "", line) for line in lines]
    return [step for step in steps if re.match(r"python -m (export|operate|loadtest)\b", step)]


def test_the_pages_worked_example_runs_the_tests_commands_in_order():
    shown = [re.sub(r"https?://\S+", "{gateway}", line) for line in worked_example_commands()]
    assert shown == list(WORKED_EXAMPLE), "docs/lifecycle.md's worked example and this test's commands differ"
