"""Headless Locust runs of the real locustfile against the test server, as users run it: a subprocess."""

import csv
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from core.measure import payloads
from core.process import free_ports
from core.spec import load_spec
from tests.conftest import REFERENCE_MIX
from tests import specs
from tests.loadtest.user_spec import churn, user_models, write_user_spec

LOCUSTFILE = Path(__file__).resolve().parents[2] / "loadtest" / "locustfile.py"
REFERENCE = load_spec(payloads.DEFAULT_SPEC)


def nowhere() -> SimpleNamespace:
    """Free ports with nothing behind them: for runs that must stop before sending, or whose requests may fail."""
    http, grpc = free_ports(2)
    return SimpleNamespace(http_url=f"127.0.0.1:{http}", grpc_url=f"127.0.0.1:{grpc}", metrics_url="none")


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


@pytest.mark.integration
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
    mix = [t.name for t in payloads.select(payloads.targets(REFERENCE), None)[0]]
    assert set(REFERENCE_MIX) <= set(mix)  # and a user's own weighted models, each checked below
    for model in mix:
        row = rows.get((request_type, model))
        assert row is not None and int(row["Request Count"]) > 0, f"no {request_type} {model} requests\n{tail(result)}"
        assert int(row["Failure Count"]) == 0, tail(result)
    assert int(rows[("", "Aggregated")]["Failure Count"]) == 0
    assert "Latency at microsecond resolution" in result.stdout + result.stderr


@pytest.mark.integration
@pytest.mark.parametrize(("user_class", "request_type"), [("TritonHttpUser", "POST"), ("TritonGrpcUser", "grpc")])
def test_tags_run_models_outside_the_mix_a_variant_and_an_int64_model_and_nothing_else(
        triton, tmp_path, user_class, request_type):
    result = run_locust(triton, tmp_path, user_class, "--tags", "digits_int8", "sentiment_classifier")

    assert result.returncode == 0, tail(result)
    rows = stats_rows(tmp_path)
    assert {name for (_type, name) in rows if name != "Aggregated"} == {"digits_int8", "sentiment_classifier"}
    for model in ("digits_int8", "sentiment_classifier"):
        assert int(rows[(request_type, model)]["Request Count"]) > 0, tail(result)
        assert int(rows[(request_type, model)]["Failure Count"]) == 0, tail(result)


@pytest.mark.integration
def test_a_user_spec_given_with_spec_sends_the_rows_of_its_own_heldout_file_and_checks_the_outputs(triton, tmp_path):
    # A user's models.toml serving `digits` from their own held-out file, stored as float64 (sent as the spec's FP32).
    # Its rows are NaN, so the served model answers NaN: every request failing the finite-output check proves the
    # requests carried this file's rows, and that the check looks at what Triton returned.
    np.savez(tmp_path / "mine.npz", x=np.full((5, 8, 8, 1), np.nan), y=np.zeros(5, dtype=np.int64))
    spec = specs.write_spec(tmp_path, specs.model(
        "digits", source="digits.keras", heldout=tmp_path / "mine.npz", max_batch_size=32,
        inputs=[specs.tensor("image", [8, 8, 1])], outputs=[specs.tensor("probabilities", [10])]))

    result = run_locust(triton, tmp_path, "TritonHttpUser", "--spec", str(spec), "--tags", "digits", seconds=2)

    row = stats_rows(tmp_path)[("POST", "digits")]
    assert int(row["Request Count"]) > 0 and int(row["Failure Count"]) == int(row["Request Count"]), tail(result)
    with open(tmp_path / "run_failures.csv", newline="") as handle:
        errors = [r["Error"] for r in csv.DictReader(handle)]
    assert errors and all("output 'probabilities' expected 1 finite rows" in e for e in errors), errors
    assert "scenario from " + str(spec) in result.stdout + result.stderr, tail(result)




def test_a_missing_heldout_file_stops_the_run_with_the_field_and_make_export(tmp_path):
    spec = write_user_spec(tmp_path / "spec")
    (tmp_path / "spec" / "heldout.npz").unlink()

    result = run_locust(nowhere(), tmp_path, "--spec", str(spec), "--tags", "churn")

    assert result.returncode == 2, tail(result)
    output = result.stdout + result.stderr
    assert "models.toml field `heldout` of model 'churn'" in output and "make export" in output, tail(result)


def test_a_wrong_spec_stops_locust_at_import_with_the_field_not_a_traceback(tmp_path):
    spec = write_user_spec(tmp_path / "spec", churn(loadtest_weight=-4), *user_models()[1:])

    result = run_locust(nowhere(), tmp_path, "--spec", str(spec))

    assert result.returncode == 1, tail(result)
    assert "loadtest: models.toml: model 'churn', field 'loadtest_weight': got -4" in result.stderr, tail(result)
    assert "Traceback" not in result.stderr, tail(result)


def test_tagging_a_model_without_payloads_stops_the_run_naming_the_fields_to_add(tmp_path):
    result = run_locust(nowhere(), tmp_path, "--spec", str(write_user_spec(tmp_path / "spec")), "--tags", "bare")

    assert result.returncode == 2, tail(result)
    assert "'bare' has no load-test payloads: add `heldout`" in result.stdout + result.stderr, tail(result)


def test_a_model_without_payloads_is_left_out_of_the_mix_with_a_note_not_an_error(tmp_path):
    # the mix runs (against nothing here, so requests fail) instead of refusing to start
    result = run_locust(nowhere(), tmp_path, "--spec", str(write_user_spec(tmp_path / "spec")), "TritonHttpUser",
                        seconds=1, users=1)

    output = result.stdout + result.stderr
    assert "bare skipped: model 'bare' has no load-test payloads" in output, tail(result)
    assert "cannot run the load test" not in output, tail(result)
    assert ("POST", "churn") in stats_rows(tmp_path), tail(result)


@pytest.mark.integration
def test_an_impossible_slo_fails_the_run_and_names_the_threshold(triton, tmp_path):
    result = run_locust(triton, tmp_path, "--tags", "digits", "--slo-p99-ms", "0.001", "TritonHttpUser", seconds=3)

    assert result.returncode == 3, tail(result)
    output = result.stdout + result.stderr
    assert "SLO MISSED" in output and "--slo-p99-ms: p99 latency" in output and "> limit 0.001 ms" in output


@pytest.mark.integration
def test_a_step_shape_from_the_command_line_ramps_users_and_ends_the_run(triton, tmp_path):
    result = run_locust(triton, tmp_path, "--tags", "digits", "--shape", "step", "--step-users", "1",
                        "--step-seconds", "1", "--shape-duration", "4", "--csv-full-history", "TritonHttpUser",
                        seconds=60, users=3)

    assert result.returncode == 0, tail(result)
    with open(tmp_path / "run_stats_history.csv", newline="") as handle:
        user_counts = {int(row["User Count"]) for row in csv.DictReader(handle)}
    assert {1, 3} <= user_counts, f"user counts seen {user_counts}\n{tail(result)}"


@pytest.mark.integration
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
