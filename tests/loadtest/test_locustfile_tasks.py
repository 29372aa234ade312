"""The locustfile builds its tasks from whichever spec it is given, at import, as Locust loads it (a subprocess)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from core.measure import payloads
from core.spec import load_spec
from tests.conftest import REFERENCE_MIX
from tests.loadtest.user_spec import write_user_spec

PROBE = Path(__file__).with_name("locustfile_probe.py")


def probe(*tags: str, args: tuple[str, ...] = (), env: dict | None = None) -> dict:
    result = subprocess.run([sys.executable, str(PROBE), *tags, "--", *args], capture_output=True, text=True,
                            timeout=120, env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_user_spec_gets_one_task_per_served_model_with_payloads_tagged_with_its_triton_name(tmp_path):
    spec = write_user_spec(tmp_path)

    seen = probe(args=("--spec", str(spec)))

    assert seen["spec"] == str(spec)
    assert seen["tasks"] == [{"name": n, "tags": [n], "target": n} for n in ("churn", "churn_fp16", "notes")]
    assert seen["first_task_calls"] == ["churn"]
    # the mixed scenario: churn 4, notes 1 (the default weight), the variant left out
    assert seen["user_list"] == ["churn"] * 4 + ["notes"]


def test_a_tag_selects_a_variant_which_then_runs_although_it_has_no_share_of_the_mix(tmp_path):
    seen = probe("churn_fp16", args=("--spec", str(write_user_spec(tmp_path))))

    assert seen["user_list"] == ["churn_fp16"]


def test_the_spec_can_come_from_the_environment_so_distributed_workers_find_it(tmp_path):
    spec = write_user_spec(tmp_path)

    seen = probe(env={payloads.SPEC_ENV: str(spec)})

    assert seen["spec"] == str(spec) and [t["name"] for t in seen["tasks"]][0] == "churn"


def test_the_repository_spec_keeps_the_reference_mix_5_2_3_and_weighs_every_other_model_as_the_spec_says():
    seen = probe(env={payloads.SPEC_ENV: ""})

    counts = {m: seen["user_list"].count(m) for m in set(seen["user_list"])}
    assert {m: counts.get(m) for m in REFERENCE_MIX} == REFERENCE_MIX
    weights = {t.name: t.weight for t in payloads.targets(load_spec(payloads.DEFAULT_SPEC)) if t.weight > 0}
    assert counts == weights  # a user's own models join with their loadtest_weight
    assert {"digits_int8", "digits_fp16", "sentiment_classifier"} <= {t["name"] for t in seen["tasks"]}
