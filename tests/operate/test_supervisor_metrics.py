"""The supervisor's heal and restart counters, as Prometheus reads them (no Triton needed)."""
from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from core.errors import UserError
from core.triton import ServeOptions
from serve.metrics import SupervisorMetrics
from core.process import free_ports


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_every_counter_exists_at_zero_before_anything_happens():
    seen = samples(generate_latest(SupervisorMetrics(["digits", "sentiment"]).registry).decode())

    for model in ("digits", "sentiment"):
        for outcome in ("ok", "failed"):
            assert seen[("modelport_supervisor_heals_total", (("model", model), ("outcome", outcome)))] == 0
    assert seen[("modelport_supervisor_restarts_total", (("outcome", "failed"),))] == 0


def test_heals_and_restarts_count_by_outcome_and_are_served_over_http():
    metrics = SupervisorMetrics(["digits"])
    metrics.heal("digits", ok=True)
    metrics.heal("digits", ok=False)
    metrics.heal("digits", ok=True)
    metrics.restart(ok=True)
    (port,) = free_ports(1)
    metrics.serve("127.0.0.1", port)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            seen = samples(response.read().decode())
    finally:
        metrics.close()

    assert seen[("modelport_supervisor_heals_total", (("model", "digits"), ("outcome", "ok")))] == 2
    assert seen[("modelport_supervisor_heals_total", (("model", "digits"), ("outcome", "failed")))] == 1
    assert seen[("modelport_supervisor_restarts_total", (("outcome", "ok"),))] == 1


def test_the_supervisor_metrics_port_must_be_off_or_a_port_of_its_own():
    ServeOptions(repository=Path("r"), admin_key="k", supervisor_metrics_port=0)
    with pytest.raises(UserError, match="--supervisor-metrics-port"):
        ServeOptions(repository=Path("r"), admin_key="k", supervisor_metrics_port=8002)
    with pytest.raises(UserError, match="--supervisor-metrics-port"):
        ServeOptions(repository=Path("r"), admin_key="k", supervisor_metrics_port=70000)
