"""`python -m gateway soak`, briefly, against the session gateway: good traffic all 200, hostile traffic all 4xx, and
the summary says so; a gateway that fails good requests fails the soak."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.gateway.conftest import ROOT

pytestmark = pytest.mark.integration


def soak(gateway, key: str, tmp_path, seconds: float = 6.0) -> tuple[int, dict]:
    report = tmp_path / "soak.json"
    done = subprocess.run([sys.executable, "-m", "gateway", "soak", "--url", gateway.url, "--key", key,
                           "--minutes", str(seconds / 60), "--connections", "2", "--rate", "50",
                           "--hostile-share", "0.3", "--pid", str(gateway.pid), "--report", str(report)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert report.exists(), done.stdout + done.stderr
    return done.returncode, json.loads(report.read_text())


def test_a_short_soak_passes_with_every_good_request_served_and_every_hostile_one_refused(gateway, tmp_path):
    code, summary = soak(gateway, gateway.key, tmp_path)
    assert code == 0 and summary["passed"], summary
    assert summary["good"] > 50 and summary["good_errors"] == 0
    assert summary["hostile"] > 20 and summary["hostile_not_4xx"] == 0
    assert summary["rss_mib_first"] > 0


def test_a_soak_whose_good_requests_fail_does_not_pass(gateway, tmp_path):
    code, summary = soak(gateway, gateway.keys["digits_only"], tmp_path, seconds=2.0)  # 403 on sentiment
    assert code == 1 and not summary["passed"] and summary["good_errors"] > 0
    assert "HTTP 403" in summary["first_errors"][0]
