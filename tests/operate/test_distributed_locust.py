"""Distributed Locust for real on one machine: our locustfile as a master and two worker processes on loopback,
against the test server. Both workers must report, and the master's HDR percentiles must be the merge of theirs."""
from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.process import free_ports
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

# Not imported here: importing locust would monkey-patch the test process (gevent).
PROBE = Path(__file__).with_name("locust_workers_probe.py")
MARKER = "WORKER-REPORTS "  # locust_workers_probe.MARKER
LOCUSTFILES = f"{ROOT / 'loadtest' / 'locustfile.py'},{PROBE}"
WORKERS = 2


def test_a_master_and_two_workers_run_the_mixed_scenario_and_merge_their_hdr_histograms(triton, tmp_path):
    (port,) = free_ports(1)
    common = ["--grpc-host", triton.grpc_url]
    master = subprocess.Popen([
        sys.executable, "-m", "locust", "-f", LOCUSTFILES, "--master", "--master-bind-host", "127.0.0.1",
        "--master-bind-port", str(port), "--expect-workers", str(WORKERS), "--headless", "-u", "4", "-r", "4",
        "-t", "6s", "--host", f"http://{triton.http_url}", "--metrics-url", triton.metrics_url,
        "--prometheus-url", "none", "--csv", str(tmp_path / "run"), "--report-dir", str(tmp_path / "report"),
        "--only-summary", *common, "TritonHttpUser", "TritonGrpcUser",
    ], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    workers = [subprocess.Popen([
        sys.executable, "-m", "locust", "-f", LOCUSTFILES, "--worker", "--master-host", "127.0.0.1",
        "--master-port", str(port), *common,
    ], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(WORKERS)]
    try:
        output, _ = master.communicate(timeout=120)
        worker_output = [w.communicate(timeout=30)[0] for w in workers]
    finally:
        for process in (master, *workers):
            if process.poll() is None:
                process.kill()
                process.wait()
    shown = f"--- master ---\n{output[-3000:]}\n" + "".join(f"--- worker ---\n{o[-1500:]}\n" for o in worker_output)

    assert master.returncode == 0, shown
    assert all(w.returncode == 0 for w in workers), shown
    reports = json.loads(next(line for line in output.splitlines() if line.startswith(MARKER))[len(MARKER):])
    assert len(reports) == WORKERS, shown
    for tally in reports.values():
        assert tally["requests"] > 0 and tally["hdr_samples"] > 0, reports

    with open(tmp_path / "run_stats.csv", newline="") as handle:
        total = next(row for row in csv.DictReader(handle) if row["Name"] == "Aggregated")
    successes = int(total["Request Count"]) - int(total["Failure Count"])
    summary = (tmp_path / "report" / "summary.md").read_text()
    merged = int(re.search(r"^\| Aggregated \| (\d+) \|", summary, re.M)[1])
    # every success of either worker is in the master's merged histogram, and nothing else is
    assert int(total["Failure Count"]) == 0, shown
    assert merged == successes == sum(t["hdr_samples"] for t in reports.values()), (merged, successes, reports)
    print(f"workers: {reports}; merged HDR count {merged} = Locust's successes {successes}")


def test_the_probe_prints_the_marker_this_test_looks_for():
    assert f'MARKER = "{MARKER}"' in PROBE.read_text()
