"""The Flask and FastAPI baselines serve the exported digits model on both paths, driven by the bench generator."""

from pathlib import Path

import numpy as np
import pytest

from bench import loadgen, run, servers

pytestmark = pytest.mark.integration

ONNX = Path(__file__).resolve().parents[2] / "model_repository" / "digits" / "1" / "model.onnx"
PROBE = np.zeros((1, 8, 8, 1), dtype="<f4").tobytes()


@pytest.mark.skipif(not ONNX.is_file(), reason="needs `make export` (model_repository/digits/1/model.onnx)")
@pytest.mark.parametrize("start", [servers.flask_gunicorn, servers.fastapi_uvicorn], ids=["flask", "fastapi"])
@pytest.mark.parametrize("encoding", ["binary", "json"])
def test_baseline_answers_every_request_of_a_short_closed_loop_run(tmp_path, start, encoding):
    with start(ONNX, 1, tmp_path, PROBE) as server:
        requests = run.baseline_requests(encoding, f"{server.host}:{server.port}")
        m = loadgen.run(loadgen.HttpTarget(server.host, server.port, requests),
                        loadgen.LoadSpec(connections=4, duration_s=0.5, warmup_s=0.1))

    assert m.errors == 0, m.first_error
    assert m.requests > 10
