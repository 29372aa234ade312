"""What the benchmark runs comes from the spec: the reference plan, or `--model` for any onnx-kind model (a user's
two-input model here), with payloads from its held-out set and facts (batching step, input order) from the spec and
the model file. No servers."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import run
from bench.results import Cell
from core.spec import load_spec
from core.measure import payloads
from tests.conftest import exported_repository
from tests.loadtest.user_spec import heldout_arrays, write_churn_onnx, write_user_spec

REPO_ROOT = Path(__file__).resolve().parents[2]


def fake_repository(root: Path, *models: str) -> Path:
    for name in models:
        (root / name / "1").mkdir(parents=True)
        (root / name / "1" / "model.onnx").write_bytes(b"onnx")
    return root


@pytest.fixture
def user(tmp_path):
    """A user's spec, and a repository holding its exported churn model (a real ONNX file)."""
    spec = load_spec(write_user_spec(tmp_path / "spec"))
    repository = fake_repository(tmp_path / "repository", "churn_fp16")
    (repository / "churn" / "1").mkdir(parents=True)
    write_churn_onnx(repository / "churn" / "1" / "model.onnx")
    return spec, repository


def test_the_reference_plan_runs_the_tensor_model_on_every_contender_and_the_pipeline_on_triton(tmp_path):
    spec = load_spec(payloads.DEFAULT_SPEC)
    repository = fake_repository(tmp_path, "digits", "sentiment_classifier", "digits_mobilenet")

    cells, notes = run.plan(spec, repository)

    assert notes == []
    assert [c for c in cells if c.model == "digits"] == run.tensor_cells("digits")
    assert {(c.server, c.connections) for c in cells if c.model == "digits" and c.encoding == "json"} == {
        ("triton", 64), ("fastapi", 64), ("flask", 64)}
    assert [c for c in cells if c.model == "sentiment"] == [
        Cell("sentiment", s, "binary", n) for s in ("triton", "triton-nobatch") for n in (1, 64)]
    # the compute-bound model has no baselines: Triton at 1 and 64 connections, batching on and off at 64
    assert [c for c in cells if c.model == "digits_mobilenet"] == [
        Cell("digits_mobilenet", "triton", "binary", 1), Cell("digits_mobilenet", "triton", "binary", 64),
        Cell("digits_mobilenet", "triton-nobatch", "binary", 64)]


def test_the_reference_plan_skips_the_pipeline_whose_onnx_step_is_not_exported_and_says_so(tmp_path):
    spec = load_spec(payloads.DEFAULT_SPEC)

    cells, notes = run.plan(spec, fake_repository(tmp_path, "digits"))

    assert {c.model for c in cells} == {"digits"}
    assert notes == [f"sentiment skipped: {tmp_path}/sentiment_classifier/1/model.onnx missing (run `make export`)",
                     f"digits_mobilenet skipped: {tmp_path}/digits_mobilenet/1/model.onnx missing (run `make export`)"]


def test_the_reference_plan_of_a_spec_without_a_bench_table_is_empty_and_asks_for_one_or_a_model(user):
    spec, repository = user

    cells, notes = run.plan(spec, repository)

    assert cells == [] and notes == [f"{spec.path} has no [bench] table naming the reference models: add one, or "
                                     "pass --model NAME"]


def test_model_plans_a_users_onnx_model_and_its_variant_against_every_contender(user):
    spec, repository = user

    for name in ("churn", "churn_fp16"):
        cells, notes = run.plan(spec, repository, name)
        assert cells == run.tensor_cells(name) and notes == []
    assert {c.server for c in run.tensor_cells("churn")} == {"triton", "triton-nobatch", "fastapi", "flask"}


def test_model_refuses_a_python_model_naming_the_onnx_models_it_could_use(user):
    spec, repository = user

    with pytest.raises(run.PlanError, match=r"--model notes: kind = 'python'.*onnx models: churn, churn_fp16"):
        run.plan(spec, repository, "notes")


def test_model_refuses_an_ensemble_naming_its_onnx_step(tmp_path):
    spec = load_spec(payloads.DEFAULT_SPEC)

    with pytest.raises(run.PlanError, match=r"--model sentiment: kind = 'ensemble'.*its ONNX step: "
                                            r"sentiment_classifier;.*onnx models: digits, digits_int8"):
        run.plan(spec, tmp_path, "sentiment")


def test_model_refuses_an_unknown_name_and_an_unexported_model_with_the_fix(user, tmp_path):
    spec, repository = user

    with pytest.raises(run.PlanError, match="--model nope: no model of that name"):
        run.plan(spec, repository, "nope")
    with pytest.raises(run.PlanError, match=r"churn/1/model.onnx missing: run `make export`"):
        run.plan(spec, tmp_path / "empty", "churn")


def test_baseline_bodies_carry_the_heldout_rows_in_the_model_files_input_order(user):
    spec, repository = user
    rows = heldout_arrays()
    onnx = repository / "churn" / "1" / "model.onnx"

    binary = run.baseline_bodies(payloads.target(spec, "churn"), onnx, "binary")
    json_bodies = run.baseline_bodies(payloads.target(spec, "churn"), onnx, "json")

    path, body, kind = binary[2]
    # the file lists plan_ids first, the spec lists features first: the body follows the file
    expected = rows["plan_ids"][2].astype("<i8").tobytes() + rows["features"][2].astype("<f4").tobytes()
    assert (path, kind, body) == ("/predict/binary", "application/octet-stream", expected)
    assert len(binary) == len(rows["y"])
    assert json_bodies[2][0] == "/predict" and b'"plan_ids": [[' in json_bodies[2][1]


def test_batches_group_heldout_rows_and_repeat_them_when_there_are_fewer_rows_than_the_batch(user):
    spec, _repository = user
    samples = payloads.samples(payloads.target(spec, "churn"))

    fours = run.batches(samples, 4)
    big = run.batches(samples, 20)

    assert len(fours) == 3 and fours[1]["plan_ids"].shape == (4, 2)
    np.testing.assert_array_equal(fours[1]["plan_ids"], heldout_arrays()["plan_ids"][4:8])
    assert len(big) == 1 and big[0]["features"].shape == (20, 3)


def test_the_in_process_limit_of_an_onnx_model_feeds_its_heldout_batches(user):
    spec, repository = user

    job = run.in_process_job(spec, repository, "churn", 4)

    assert job.onnx == repository / "churn" / "1" / "model.onnx" and job.batch_size == 4
    assert set(job.batches[0]) == {"features", "plan_ids"}


def test_the_in_process_limit_of_the_text_ensemble_runs_its_tokenizer_step_then_its_onnx_step(tmp_path):
    spec = load_spec(payloads.DEFAULT_SPEC)
    exported_repository(spec.model("sentiment").loadtest.samples)

    job = run.in_process_job(spec, REPO_ROOT / "model_repository", "sentiment", 8)

    assert job.onnx.parts[-3:] == ("sentiment_classifier", "1", "model.onnx")
    assert job.tokenizer_dir.parts[-2:] == ("sentiment_tokenizer", "1")
    assert all(isinstance(t, bytes) for t in job.texts)


def test_bench_cli_refuses_an_ensemble_with_exit_2_before_starting_anything(tmp_path):
    result = subprocess.run([sys.executable, "-m", "bench", "--quick", "--model", "sentiment", "--output",
                             str(tmp_path / "out")], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)

    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "bench: error: --model sentiment: kind = 'ensemble'" in result.stderr
    assert "sentiment_classifier" in result.stderr
    assert not (tmp_path / "out.md").exists()
