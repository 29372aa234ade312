"""Every PromQL expression of the dashboard and of the alert rules returns data from a real Prometheus scraping a
real Triton (and its supervisor) during a short Locust run; the rules evaluate without errors, the alert for a dead
backend fires after a real heal, and the load-test report's queries for its own window return data too.
One Triton and one Prometheus for the module, on free loopback ports."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import psutil
import pytest

from core import promql
from core.process import free_ports
from core.spec import load_spec
from operate import dashboard, monitor, prometheus, rules
from tests.conftest import ROOT, exported_repository, launch_triton

pytestmark = pytest.mark.integration

SPEC = load_spec(ROOT / "models.toml")
NAMES = rules.model_names(SPEC)
LOAD_S = 8
RATE_INTERVAL = "20s"  # stands in for Grafana's $__rate_interval: a few 1 s scrapes, about the length of the load


@dataclasses.dataclass(frozen=True)
class Stack:
    triton: object
    prometheus: monitor.PrometheusServer
    supervisor_url: str
    report: str  # summary.md of the Locust run
    load_window: tuple[float, float]  # wall clock


def grafana_to_promql(expr: str) -> str:
    """What Grafana sends for the dashboard's defaults: every model (the All value) and a rate interval."""
    return expr.replace("$model", "|".join(NAMES)).replace("$__rate_interval", RATE_INTERVAL)


def finite(result: list[dict]) -> list[float]:
    return [float(r["value"][1]) for r in result if math.isfinite(float(r["value"][1]))]


def wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}", pytrace=False)


def post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("live-monitoring")
    supervisor_port, prometheus_port = free_ports(2)
    with launch_triton(exported_repository(), workdir / "triton",
                       supervisor_metrics_port=supervisor_port) as triton:
        supervisor_url = f"127.0.0.1:{supervisor_port}"
        options = monitor.MonitorOptions(prometheus.Targets(triton.metrics_url, supervisor_url),
                                         listen=f"127.0.0.1:{prometheus_port}", workdir=workdir / "prometheus",
                                         scrape_interval="1s")
        with monitor.running(options) as server:
            wait_for(lambda: [t["health"] for t in server.targets()] == ["up", "up"], 30, "both targets scraped")
            # Requests that fail inside an ensemble's python step: Triton 2.51 counts them on the ensemble, reason
            # OTHER (not on the python model itself, nor a malformed request refused before any model runs).
            bad = json.dumps({"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [1, 1],
                                          "data": ["not an image"]}]}).encode()
            for _ in range(3):
                assert post(f"http://{triton.http_url}/v2/models/digits_image/infer", bad) == 400
            began = time.time()
            result = subprocess.run([
                sys.executable, "-m", "locust", "-f", str(ROOT / "loadtest" / "locustfile.py"), "--headless",
                "-u", "4", "-r", "4", "-t", f"{LOAD_S}s", "--host", f"http://{triton.http_url}",
                "--grpc-host", triton.grpc_url, "--metrics-url", triton.metrics_url, "--prometheus-url", server.url,
                "--report-dir", str(workdir / "report"), "--only-summary", "TritonHttpUser", "TritonGrpcUser",
            ], cwd=workdir, capture_output=True, text=True, timeout=120)
            ended = time.time()
            assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
            # the last scrapes of the run are in, and the rules have been evaluated on them
            time.sleep(3)
            yield Stack(triton, server, supervisor_url, (workdir / "report" / "summary.md").read_text(), (began, ended))


def test_prometheus_scrapes_triton_and_the_supervisor(stack):
    jobs = {t["labels"]["job"]: t["health"] for t in stack.prometheus.targets()}
    assert jobs == {promql.TRITON_JOB: "up", promql.SUPERVISOR_JOB: "up"}


def test_every_dashboard_expression_returns_data_from_the_live_server(stack):
    board = json.loads((ROOT / "deploy" / "grafana" / "modelport.json").read_text())
    # no gateway runs in this stack: its rows have no data here (rules_test.yml proves the same queries' rules)
    expressions = [e for e in dashboard.expressions(board) if "modelport_gateway_" not in e]
    assert len(expressions) >= 15
    empty = []
    for expr in expressions:
        values = finite(stack.prometheus.query(grafana_to_promql(expr)))
        if not values:
            empty.append(expr)
    assert not empty, "dashboard queries without data:\n  " + "\n  ".join(empty)


def test_every_alert_signal_and_guard_returns_data_and_every_rule_evaluates_cleanly(stack):
    groups = rules.local_groups(SPEC, rules.Budgets())
    # no gateway takes feedback in this stack: its group's signals have no data here (rules_test.yml proves them)
    served = [g for g in groups if g.name != rules.gateway_alerts(SPEC, rules.Budgets()).name]
    signals = [s for g in served for r in g.rules if isinstance(r, rules.Alert) for s in r.signals]
    empty = [s for s in signals if not finite(stack.prometheus.query(s))]
    assert not empty, "rule signals without data:\n  " + "\n  ".join(empty)

    loaded = stack.prometheus.api("rules")["groups"]
    assert sorted(g["name"] for g in loaded) == sorted(g.name for g in groups)
    unhealthy = [(r["name"], r.get("lastError")) for g in loaded for r in g["rules"] if r["health"] != "ok"]
    assert not unhealthy
    assert sum(len(g["rules"]) for g in loaded) == sum(len(g.rules) for g in groups)


def test_with_every_model_loaded_and_triton_up_no_critical_alert_fires(stack):
    firing = [a["labels"] for a in stack.prometheus.api("alerts")["alerts"]]
    # the rules watch every model models.toml declares; those whose optional extra is not installed here are not
    # served, and ModelNotLoaded says so for exactly them
    absent = {n for m in SPEC.skipped for n in m.triton_names}
    critical = [a for a in firing if a.get("severity") == "critical"]
    assert [a for a in critical if not (a["alertname"] == "ModelNotLoaded" and a.get("model") in absent)] == [], firing
    assert {r["metric"]["model"]: float(r["value"][1]) for r in stack.prometheus.query(promql.models_loaded(NAMES))} \
        == {name: 1.0 for name in NAMES}


def test_a_failure_inside_a_model_shows_in_the_errors_by_reason(stack):
    result = stack.prometheus.query(promql.failures_per_second("", "5m").replace("rate(", "increase(", 1))
    failed = {(r["metric"]["model"], r["metric"]["reason"]): float(r["value"][1]) for r in result}
    assert failed.get(("digits_image", "OTHER"), 0) > 0, failed


def test_the_autoscaling_metric_and_the_adapters_query_return_data_per_server(stack):
    recorded = stack.prometheus.query(promql.QUEUE_RECORD)
    assert [r["metric"]["instance"] for r in recorded] == [stack.triton.metrics_url]
    adapter_query = "max(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)".replace(
        "<<.Series>>", promql.QUEUE_RECORD).replace("<<.LabelMatchers>>", f'job="{promql.TRITON_JOB}"').replace(
        "<<.GroupBy>>", "instance")
    assert finite(stack.prometheus.query(adapter_query))


def test_the_load_test_report_gives_prometheus_queries_for_its_own_window_and_they_return_data(stack):
    assert "## Prometheus queries for this run" in stack.report
    rows = [line for line in stack.report.splitlines() if line.startswith("| ") and "`" in line]
    queries = [re.search(r"`(.+)`", row)[1].replace("\\|", "|") for row in rows]
    assert len(queries) == len(promql.run_queries(LOAD_S)) and all(q.strip() for q in queries)
    at = float(re.search(r"`time=(\d+)`", stack.report)[1])
    began, ended = stack.load_window
    assert began - 2 <= at <= ended + 2
    empty = [q for q in queries if not finite(stack.prometheus.query(q, at=at))]
    assert not empty, "report queries without data at the end of the run:\n  " + "\n  ".join(empty)
    rps = {r["metric"]["model"]: float(r["value"][1]) for r in stack.prometheus.query(queries[0], at=at)}
    assert rps.get("digits", 0) > 1 and rps.get("sentiment", 0) > 1, rps


def test_make_monitor_reports_the_triton_target_up_and_stops_on_ctrl_c(stack, tmp_path):
    (port,) = free_ports(1)
    process = subprocess.Popen([
        sys.executable, "-m", "operate", "monitor", "--listen", f"127.0.0.1:{port}", "--triton",
        stack.triton.metrics_url, "--supervisor", stack.supervisor_url, "--workdir", str(tmp_path),
    ], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # as from a terminal: a suite started in the background (`cmd &`) inherits SIGINT ignored, and so would this
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if "Ctrl-C stops it" in line:
                break
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=30)  # Prometheus gets 15 s to stop on SIGTERM, then is killed
    output = "".join(lines)
    assert re.search(rf"{promql.TRITON_JOB}\s+http://{re.escape(stack.triton.metrics_url)}/metrics\s+up", output), output
    assert re.search(rf"{promql.SUPERVISOR_JOB}\s+\S+\s+up", output), output
    assert code == 0


def test_a_killed_backend_is_healed_counted_and_fires_the_backend_healed_alert(stack):
    victims = stack.triton.backend_stubs("digits")
    assert victims
    for victim in victims:
        os.kill(victim.pid, signal.SIGKILL)

    def healed_alert():
        alerts = stack.prometheus.api("alerts")["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "BackendHealed" and a["state"] == "firing"]

    firing = wait_for(healed_alert, 40, "the BackendHealed alert to fire")
    assert {(a["labels"]["model"], a["labels"]["outcome"]) for a in firing} == {("digits", "ok")}
    assert "model 'digits' reloaded" in stack.triton.events_path.read_text()
