"""Headless Locust runs of the real locustfile against the test server, as users run it: a subprocess."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

LOCUSTFILE = Path(__file__).resolve().parents[2] / "loadtest" / "locustfile.py"


def run_locust(triton, workdir: Path, *args: str, seconds: int = 4, users: int = 3) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(users), "-r", str(users),
        "-t", f"{seconds}s", "--host", f"http://{triton.http_url}", "--grpc-host", triton.grpc_url,
        "--metrics-url", triton.metrics_url, "--csv", str(workdir / "run"), *args,
    ]
    # another cwd than the repository: the locustfile must find its package wherever it is started from
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=180)


def stats_rows(workdir: Path) -> dict[tuple[str, str], dict]:
    with open(workdir / "run_stats.csv", newline="") as handle:
        return {(row["Type"], row["Name"]): row for row in csv.DictReader(handle)}


def tail(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n--- output tail ---\n{(result.stdout + result.stderr)[-4000:]}"


@pytest.mark.parametrize(
    ("user_class", "extra", "request_type"),
    [
        ("TritonHttpUser", [], "POST"),
        ("TritonHttpUser", ["--encoding", "json"], "POST"),
        ("TritonGrpcUser", [], "grpc"),
    ],
    ids=["http-binary", "http-json", "grpc"],
)
def test_each_user_type_runs_the_mixed_scenario_on_every_model_without_failures(
        triton, tmp_path, user_class, extra, request_type):
    result = run_locust(triton, tmp_path, *extra, user_class)

    assert result.returncode == 0, tail(result)
    rows = stats_rows(tmp_path)
    for model in ("digits", "digits_image", "sentiment"):
        row = rows.get((request_type, model))
        assert row is not None and int(row["Request Count"]) > 0, f"no {request_type} {model} requests\n{tail(result)}"
        assert int(row["Failure Count"]) == 0, tail(result)
    assert int(rows[("", "Aggregated")]["Failure Count"]) == 0
    assert "Latency at microsecond resolution" in result.stdout + result.stderr


def test_an_impossible_slo_fails_the_run_and_names_the_threshold(triton, tmp_path):
    result = run_locust(triton, tmp_path, "--tags", "digits", "--slo-p99-ms", "0.001", "TritonHttpUser", seconds=3)

    assert result.returncode == 3, tail(result)
    output = result.stdout + result.stderr
    assert "SLO MISSED" in output and "--slo-p99-ms: p99 latency" in output and "> limit 0.001 ms" in output


def test_a_step_shape_from_the_command_line_ramps_users_and_ends_the_run(triton, tmp_path):
    result = run_locust(triton, tmp_path, "--tags", "digits", "--shape", "step", "--step-users", "1",
                        "--step-seconds", "1", "--shape-duration", "4", "--csv-full-history", "TritonHttpUser",
                        seconds=60, users=3)

    assert result.returncode == 0, tail(result)
    with open(tmp_path / "run_stats_history.csv", newline="") as handle:
        user_counts = {int(row["User Count"]) for row in csv.DictReader(handle)}
    assert {1, 3} <= user_counts, f"user counts seen {user_counts}\n{tail(result)}"


def test_make_loadtest_entry_point_writes_the_report_it_prints(triton, tmp_path):
    report = tmp_path / "report"
    command = [
        sys.executable, "-m", "loadtest", "--http-url", triton.http_url, "--grpc-url", triton.grpc_url,
        "--metrics-url", triton.metrics_url, "--duration", "3", "--users", "2", "--report-dir", str(report),
        "--", "--tags", "digits",
    ]
    result = subprocess.run(command, cwd=Path(LOCUSTFILE).parents[1], capture_output=True, text=True, timeout=180)

    assert result.returncode == 0, tail(result)
    assert f"load test report: {report}/" in result.stdout
    for name in ("locust.html", "locust_stats.csv", "summary.md", "timeline.png"):
        assert (report / name).is_file(), f"{name} missing\n{tail(result)}"
    summary = (report / "summary.md").read_text()
    assert "| digits |" in summary and "avg batch formed" in summary  # Triton's side was read
