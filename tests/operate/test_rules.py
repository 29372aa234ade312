"""The alert and recording rules: promtool checks and unit-tests them on synthetic series (no server needed)."""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from core import promql
from core.spec import load_declared_spec
from core.state import read_state
from operate import dashboard, k8s, rules
from operate.monitor import INSTALL_HINT
from tests.conftest import ROOT

HERE = Path(__file__).parent
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
SPEC = load_declared_spec(ROOT / "models.toml")


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail(f"promtool is not installed: {INSTALL_HINT}", pytrace=False)
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def shown(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


def with_models_series(unit_tests: dict, loaded: list[str]) -> dict:
    """rules_test.yml with its ModelNotLoaded case given one series per loaded model (the spec's, so a user's too)."""
    case = next(c for c in unit_tests["tests"]
                if any(t["alertname"] == "ModelNotLoaded" for t in c.get("alert_rule_test", [])))
    case["input_series"] = [{"series": f'nv_inference_request_success{{instance="a", model="{name}", version="1"}}',
                             "values": "0x20"} for name in loaded]
    unit_tests["rule_files"] = [str(RULES)]
    return unit_tests


def test_promtool_unit_tests_of_the_rules_pass_including_the_8979_case(tmp_path):
    loaded = [name for name in rules.model_names(SPEC) if name != "sentiment"]
    unit_tests = with_models_series(yaml.safe_load((HERE / "rules_test.yml").read_text()), loaded)
    (tmp_path / "rules_test.yml").write_text(yaml.safe_dump(unit_tests, sort_keys=False))

    result = promtool("test", "rules", str(tmp_path / "rules_test.yml"))
    assert result.returncode == 0 and "SUCCESS" in result.stdout, shown(result)


def test_the_model_not_loaded_case_fails_when_one_more_model_has_no_series(tmp_path):
    loaded = [name for name in rules.model_names(SPEC) if name not in ("sentiment", "digits_int8")]
    unit_tests = with_models_series(yaml.safe_load((HERE / "rules_test.yml").read_text()), loaded)
    (tmp_path / "rules_test.yml").write_text(yaml.safe_dump(unit_tests, sort_keys=False))

    result = promtool("test", "rules", str(tmp_path / "rules_test.yml"))
    assert result.returncode != 0 and 'model="digits_int8"' in result.stdout + result.stderr, shown(result)


def test_the_kubernetes_prometheus_rule_passes_promtool_check_and_its_unit_test(tmp_path):
    documents = list(yaml.safe_load_all((ROOT / "deploy" / "k8s" / "monitoring.yaml").read_text()))
    rule = next(d for d in documents if d["kind"] == "PrometheusRule")
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rule["spec"]))
    shutil.copy(HERE / "rules_kubernetes_test.yml", tmp_path)

    checked = promtool("check", "rules", "rules.yml", cwd=tmp_path)
    tested = promtool("test", "rules", "rules_kubernetes_test.yml", cwd=tmp_path)

    assert checked.returncode == 0, shown(checked)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, shown(tested)


def test_promtool_accepts_the_generated_prometheus_config_and_rule_file():
    config = promtool("check", "config", str(ROOT / "deploy" / "prometheus" / "prometheus.yml"))
    checked = promtool("check", "rules", str(RULES))
    assert config.returncode == 0, shown(config)
    assert checked.returncode == 0, shown(checked)


def test_the_unit_test_shows_the_charts_own_query_verbatim_next_to_ours():
    tests = yaml.safe_load((HERE / "rules_test.yml").read_text())["tests"]
    exprs = [t["expr"] for case in tests for t in case.get("promql_expr_test", [])]
    official = promql.OFFICIAL_QUEUE_QUERY.replace("<<.LabelMatchers>>", 'job="modelport-triton"').replace(
        "<<.GroupBy>>", "instance")
    assert official in exprs
    assert promql.QUEUE_RECORD in exprs
    assert promql.version_error_ratio('model="digits"', "5m") in exprs  # the dashboard's, 0 for a version without


def test_the_autoscaler_reads_the_recorded_weighted_queue_time():
    record = next(r for r in rules.recording_rules().rules if r.name == promql.QUEUE_RECORD)
    adapter = k8s.adapter_rules()["rules"][0]

    assert record.expr == promql.server_queue_us_per_request("", "1m")
    # summed over every model before dividing: the #8979 fix
    assert record.expr.startswith("sum by (job, instance, namespace, pod) (increase(nv_inference_queue_duration_us")
    assert adapter["seriesQuery"].startswith(promql.QUEUE_RECORD + "{")
    assert adapter["name"]["as"] == k8s.ADAPTER_METRIC


def test_model_not_loaded_watches_every_model_the_spec_declares():
    names = rules.model_names(SPEC)
    alert = next(a for a in rules.triton_alerts(SPEC, rules.Budgets()).rules if a.name == "ModelNotLoaded")

    # every declared model, those whose optional extra is not installed here too (the rules depend on models.toml and
    # the committed cards alone), less an optional variant the export left out: Triton never loads it
    left_out = {v["triton_name"] for m in SPEC.models for v in read_state(SPEC.root / "model_repository" / m.name)
                .left_out.values()}
    assert set(names) == {n for m in SPEC.models for n in m.triton_names} - left_out
    assert "sentiment_bert_classifier" in names
    assert {"digits", "digits_int8", "digits_image", "sentiment"} <= set(names)
    for name in names:
        assert f'"model", "{name}"' in alert.expr


def test_a_per_model_latency_budget_gets_a_rule_of_its_own():
    budgets = rules.Budgets(p99_ms_per_model=(("sentiment", 40.0),))
    latency = [a for a in rules.triton_alerts(SPEC, budgets).rules if a.name == "ModelLatencyP99OverBudget"]

    assert [a.condition.threshold for a in latency] == [40.0, 250.0]
    watched = [set(re.search(r'model=~"([^"]+)"', a.expr)[1].split("|")) for a in latency]
    assert watched[0] == {"sentiment"}
    assert watched[1] == set(rules.model_names(SPEC)) - {"sentiment"}


def test_the_generated_rule_file_is_the_typed_rules_rendered():
    assert yaml.safe_load(RULES.read_text()) == rules.rule_file(rules.local_groups(SPEC, rules.Budgets()))


@pytest.mark.parametrize(("field", "value", "message"), [
    ("max_error_ratio", 1.5, "strictly between 0 and 1"),
    ("p99_ms", 0, "Budgets.p99_ms must be a number > 0"),
    ("window", "five minutes", "Prometheus duration"),
    ("pending_batches", 0, "integers >= 1"),
    ("max_restarts", 0, "Budgets.max_restarts must be an integer >= 1"),
])
def test_budgets_reject_a_bad_value_naming_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        rules.Budgets(**{field: value})


def test_a_condition_refuses_an_operator_prometheus_does_not_have():
    with pytest.raises(ValueError, match="compares with one of"):
        rules.Condition("up", "=>", 1)


def test_live_accuracy_alerts_sit_the_margin_below_each_models_held_out_accuracy():
    budgets = rules.Budgets(live_accuracy_margin=0.1)
    alerts = [a for a in rules.gateway_alerts(SPEC, budgets).rules if a.name == "ModelLiveAccuracyLow"]
    floors = {model: a.condition.threshold for a in alerts
              for model in re.search(r'model=~"([^"]+)"', a.expr)[1].split("|")}
    digits = rules.heldout_accuracy(SPEC, "digits")
    assert 0.9 < digits <= 1 and floors["digits"] == pytest.approx(digits - 0.1, abs=1e-6)
    # an ensemble has no accuracy of its own: it takes its classifier step's
    assert floors["sentiment"] == pytest.approx(rules.heldout_accuracy(SPEC, "sentiment_classifier") - 0.1, abs=1e-6)
    assert "digits_image_decode" not in floors  # it has no labels to be right or wrong about
    assert all(a.guard.threshold == budgets.min_judged and a.guard_on == "model, version" for a in alerts)


def test_a_models_own_lifecycle_limits_get_canary_rules_of_their_own_and_its_variants_follow():
    models = tuple(dataclasses.replace(m, rollout=dataclasses.replace(m.rollout, max_error_rate=0.2, min_requests=30))
                   if m.name == "digits" else m for m in SPEC.models)
    alerts = [a for a in rules.rollout_alerts(dataclasses.replace(SPEC, models=models), rules.Budgets())
              if a.name == "CanaryErrorRatioHigh"]

    by_limit = {(a.condition.threshold, a.guard.threshold): set(re.search(r'model=~"([^"]+)"', a.expr)[1].split("|"))
                for a in alerts}
    digits = set(SPEC.model("digits").triton_names) & set(rules.model_names(SPEC))
    assert by_limit[(0.2, 30)] == digits and "digits_int8" in digits
    assert "digits_mobilenet" in by_limit[(0.02, 50)]
    # python models and ensembles have no versions to roll out
    assert not {"digits_image", "digits_image_decode", "sentiment"} & set().union(*by_limit.values())


def test_every_rollout_alert_but_the_rollback_one_waits_for_its_models_minimum_of_evidence():
    alerts = {a.name: a for a in rules.rollout_alerts(SPEC, rules.Budgets())}
    digits = SPEC.model("digits").rollout

    assert set(alerts) == {"CanaryErrorRatioHigh", "CanaryLatencyP99High", "CanaryDisagreementHigh",
                           "CanaryAccuracyBelowStable", "CanaryRolledBack"}
    assert alerts["CanaryErrorRatioHigh"].guard.threshold == digits.min_requests
    assert alerts["CanaryDisagreementHigh"].guard.threshold == digits.min_requests
    assert alerts["CanaryAccuracyBelowStable"].guard.threshold == digits.min_feedback
    assert 'by="auto"' in alerts["CanaryRolledBack"].expr and 'action="rollback"' in alerts["CanaryRolledBack"].expr


def test_promtool_parses_every_gateway_query_of_the_dashboard(tmp_path):
    # no live gateway in tests/operate/test_live_monitoring.py: its queries are at least valid PromQL (as recording
    # rules, with Grafana's variables at their defaults)
    board = json.loads((ROOT / "deploy" / "grafana" / "modelport.json").read_text())
    queries = [e for e in dashboard.expressions(board) if "modelport_gateway_" in e]
    records = [{"record": f"dashboard:query_{i}", "expr": q.replace("$model", "digits").replace("$__rate_interval", "1m")}
               for i, q in enumerate(queries)]
    (tmp_path / "queries.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))

    checked = promtool("check", "rules", "queries.yml", cwd=tmp_path)
    assert len(queries) >= 8 and checked.returncode == 0, shown(checked)
