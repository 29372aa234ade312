"""The gateway scenario of the load test (loadtest/gateway_locustfile.py, through `python -m loadtest --gateway`)
against the session gateway, and the benchmark's gateway row on recorded numbers."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest

from bench import run as bench_run
from bench.results import BenchResults, Cell, CellResult, Round, format_gateway, format_markdown
from tests.conftest import ROOT


@pytest.mark.integration
def test_the_mixed_scenario_runs_through_the_gateway_without_failures(gateway, triton, tmp_path):
    report = tmp_path / "report"
    command = [sys.executable, "-m", "loadtest", "--gateway", gateway.url, "--gateway-key", gateway.key,
               "--http-url", triton.http_url, "--metrics-url", triton.metrics_url, "--duration", "4", "--users", "3",
               "--report-dir", str(report), "--slo-min-rps", "5"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)
    output = (result.stdout + result.stderr)[-4000:]
    assert result.returncode == 0, output
    assert gateway.key not in result.stdout  # it travels in the environment, not on Locust's command line
    with open(report / "locust_stats.csv", newline="") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    for model in ("digits", "digits_image", "sentiment"):
        assert int(rows[model]["Request Count"]) > 0 and int(rows[model]["Failure Count"]) == 0, output
    assert "| digits |" in (report / "summary.md").read_text()  # Triton's side, read from its metrics


def test_the_benchmark_adds_gateway_cells_next_to_tritons_json_on_the_baseline_model():
    cells = bench_run.tensor_cells("digits") + bench_run.pipeline_cells("sentiment")
    added = bench_run.gateway_cells(cells)
    assert added == [Cell("digits", "triton", "json", 1), Cell("digits", "gateway", "json", 1),
                     Cell("digits", "gateway", "json", 64)]
    assert bench_run.gateway_cells(bench_run.pipeline_cells("sentiment")) == []


def test_the_gateway_row_gives_the_overhead_per_request_and_the_throughput_ratio():
    def cell(server, connections, rps, p50):
        return CellResult(Cell("digits", server, "json", connections), (Round(rps, p50, p50 * 2, 0, 0.1),))

    results = BenchResults({"mode": "full"}, None, (cell("triton", 1, 2000, 0.45), cell("gateway", 1, 500, 1.95),
                                                   cell("triton", 64, 8000, 7.0), cell("gateway", 64, 1000, 60.0)))
    table = format_gateway(results)
    assert "| digits | 1 | 2000 | 500 | 0.25× | 0.45 | 1.95 | +1500 |" in table
    assert "| digits | 64 | 8000 | 1000 | 0.12× |" in table
    assert "## Gateway vs direct Triton" in format_markdown(results)
