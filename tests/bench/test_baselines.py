"""The Flask and FastAPI baselines serve any ONNX model: the exported digits model, and a user's two-input,
two-output model whose file lists its inputs in another order than the spec; driven by the bench generator."""

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from core.measure import loadgen

from bench import run, servers
from bench.baselines.model import Predictor, request_body
from core.spec import load_spec
from core.measure import payloads
from tests.conftest import exported_repository
from tests.loadtest.user_spec import churn_reference, heldout_arrays, write_churn_onnx, write_user_spec

DIGITS_ONNX = Path(__file__).resolve().parents[2] / "model_repository" / "digits" / "1" / "model.onnx"


@pytest.fixture
def churn(tmp_path):
    spec = load_spec(write_user_spec(tmp_path / "spec"))
    return payloads.target(spec, "churn"), write_churn_onnx(tmp_path / "churn.onnx")


def test_the_binary_format_splits_a_body_into_every_input_in_the_files_order_and_joins_every_output(churn):
    _target, onnx = churn
    predictor = Predictor(ort.InferenceSession(str(onnx)))
    rows = heldout_arrays(3)

    feed = predictor.from_bytes(request_body([rows["plan_ids"], rows["features"].astype(np.float32)]))
    outputs = predictor.predict(feed)

    np.testing.assert_array_equal(feed["plan_ids"], rows["plan_ids"])
    probability, spend = churn_reference(rows["features"], rows["plan_ids"])
    np.testing.assert_allclose(outputs[0], probability, rtol=1e-5)
    assert predictor.to_bytes(outputs) == outputs[0].astype("<f4").tobytes() + outputs[1].astype("<f4").tobytes()
    assert len(predictor.to_bytes(outputs)) == 3 * (2 + 1) * 4


def test_the_json_format_takes_inputs_by_name_and_answers_every_output_by_name(churn):
    _target, onnx = churn
    predictor = Predictor(ort.InferenceSession(str(onnx)))
    rows = heldout_arrays(2)

    answer = predictor.to_json(predictor.predict(predictor.from_json(
        {"inputs": {"features": rows["features"].tolist(), "plan_ids": rows["plan_ids"].tolist()}})))

    probability, spend = churn_reference(rows["features"], rows["plan_ids"])
    assert set(answer) == {"churn_probability", "spend"}
    np.testing.assert_allclose(answer["spend"], spend, rtol=1e-5)


def test_a_body_that_is_not_whole_samples_is_refused_with_the_sizes(churn):
    predictor = Predictor(ort.InferenceSession(str(churn[1])))

    with pytest.raises(ValueError, match="31 bytes is not a whole number of samples of 28 bytes"):
        predictor.from_bytes(b"\0" * 31)


@pytest.mark.parametrize("start", [servers.flask_gunicorn, servers.fastapi_uvicorn], ids=["flask", "fastapi"])
@pytest.mark.parametrize("encoding", ["binary", "json"])
def test_baseline_serves_a_users_multi_input_model_for_every_request_of_a_closed_loop_run(tmp_path, churn, start,
                                                                                          encoding):
    target, onnx = churn
    probe = run.baseline_bodies(target, onnx, "binary")[0][1]
    with start(onnx, 1, tmp_path, probe) as server:
        requests = run.baseline_requests(target, onnx, encoding, f"{server.host}:{server.port}")
        m = loadgen.run(loadgen.HttpTarget(server.host, server.port, requests),
                        loadgen.LoadSpec(connections=4, duration_s=0.5, warmup_s=0.1))

    assert m.errors == 0, m.first_error
    assert m.requests > 10


@pytest.mark.integration
@pytest.mark.parametrize("start", [servers.flask_gunicorn, servers.fastapi_uvicorn], ids=["flask", "fastapi"])
def test_baseline_answers_every_digits_request_of_a_short_closed_loop_run(tmp_path, start):
    exported_repository(DIGITS_ONNX)
    target = payloads.target(load_spec(payloads.DEFAULT_SPEC), "digits")
    probe = run.baseline_bodies(target, DIGITS_ONNX, "binary")[0][1]
    with start(DIGITS_ONNX, 1, tmp_path, probe) as server:
        requests = run.baseline_requests(target, DIGITS_ONNX, "json", f"{server.host}:{server.port}")
        m = loadgen.run(loadgen.HttpTarget(server.host, server.port, requests),
                        loadgen.LoadSpec(connections=4, duration_s=0.5, warmup_s=0.1))

    assert m.errors == 0, m.first_error
    assert m.requests > 10
