"""A text model over token ids of any length (Keras `Input((None,))`, spec `dims = [-1]`), trained tiny here and
taken through models.toml alone: exported with its sequence dim symbolic, served by the real Triton, called with two
lengths and compared with Keras; sizes outside the range the held-out data spans are refused by the client, the
backend and the gateway, and the load test's payloads have the held-out rows' own lengths.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import specs
from tests.conftest import launch_triton

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
VOCABULARY, CLASSES, SHORTEST, LONGEST = 40, 3, 3, 12
REVIEWS = specs.model("reviews", source="models/reviews.keras", heldout="models/heldout.npz",
                      max_queue_delay_microseconds=2000, inputs=[specs.tensor("tokens", [-1], "TYPE_INT64")],
                      outputs=[specs.tensor("probabilities", [3], labels=["bad", "fine", "good"])])


def build(project: Path) -> None:
    """Train a tiny embedding-average classifier; held-out rows of lengths 3..12, padded with 0, plus their lengths."""
    import keras

    keras.utils.set_random_seed(0)
    tokens = keras.Input((None,), dtype="int64", name="tokens")
    hidden = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(VOCABULARY, 8)(tokens))
    net = keras.Model(tokens, keras.layers.Dense(CLASSES, activation="softmax")(hidden))
    net.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    train = rng.integers(1, VOCABULARY, (64, 8))
    net.fit(train, train[:, 0] % CLASSES, epochs=1, verbose=0)
    lengths = rng.integers(SHORTEST, LONGEST + 1, 24)
    lengths[:2] = SHORTEST, LONGEST
    padded = np.zeros((len(lengths), LONGEST), dtype=np.int64)
    labels = np.empty(len(lengths), dtype=np.int64)
    for i, n in enumerate(lengths):
        padded[i, :n] = rng.integers(1, VOCABULARY, n)
        labels[i] = int(net.predict(padded[i:i + 1, :n], verbose=0).argmax())
    (project / "models").mkdir()
    net.save(project / "models" / "reviews.keras")
    np.savez(project / "models" / "heldout.npz", x=padded, x_lengths=lengths, y=labels)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("variable")
    build(project)
    specs.write_spec(project, REVIEWS)
    result = subprocess.run([sys.executable, "-m", "export", "--spec", str(project / "models.toml"), "--repository",
                             str(project / "model_repository")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return project


@pytest.fixture(scope="module")
def server(project, tmp_path_factory):
    with launch_triton(project / "model_repository", tmp_path_factory.mktemp("triton")) as triton:
        yield triton


def keras_outputs(project: Path, tokens: np.ndarray) -> np.ndarray:
    import keras

    return keras.saving.load_model(project / "models" / "reviews.keras", compile=False).predict(tokens, verbose=0)


def test_the_config_declares_the_variable_dim_and_the_held_out_range(project):
    from core import repository

    config = repository.parse((project / "model_repository" / "reviews" / "config.pbtxt").read_text())
    assert list(config.input[0].dims) == [-1]
    bounds = json.loads(config.parameters["shape_range.tokens"].string_value)
    assert (bounds["min"], bounds["max"]) == ([SHORTEST], [LONGEST])
    assert SHORTEST <= bounds["opt"][0] <= LONGEST
    shapes = config.optimization.execution_accelerators.gpu_execution_accelerator[0].parameters
    assert shapes["trt_profile_min_shapes"] == f"tokens:1x{SHORTEST}"
    assert shapes["trt_profile_max_shapes"] == f"tokens:8x{LONGEST}"


def test_the_exported_graph_keeps_the_sequence_dim_symbolic(project):
    import onnx

    graph = onnx.load(str(project / "model_repository" / "reviews" / "1" / "model.onnx")).graph
    batch, sequence = graph.input[0].type.tensor_type.shape.dim
    assert batch.dim_param == "batch" and sequence.dim_value == 0


def test_two_lengths_are_served_equal_to_keras(project, server):
    import modelport

    rng = np.random.default_rng(1)
    with modelport.Client(server.http_url) as client:
        for length in (4, 11):
            tokens = rng.integers(1, VOCABULARY, (3, length))
            served = client.infer("reviews", tokens)["probabilities"]
            np.testing.assert_allclose(served, keras_outputs(project, tokens), atol=1e-5)


def test_the_client_refuses_a_length_outside_the_range_before_sending(project, server):
    import modelport

    with modelport.Client(server.http_url) as client:
        with pytest.raises(modelport.InvalidInput, match=rf"takes \[N,{SHORTEST}\.\.{LONGEST}\].*cut or pad"):
            client.infer("reviews", np.ones((1, LONGEST + 1), dtype=np.int64))


def test_the_server_refuses_a_length_outside_the_range_and_keeps_serving(project, server):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    with httpclient.InferenceServerClient(server.http_url) as client:
        def call(length: int) -> np.ndarray:
            tensor = httpclient.InferInput("tokens", [1, length], "INT64")
            tensor.set_data_from_numpy(np.ones((1, length), dtype=np.int64))
            return client.infer("reviews", [tensor]).as_numpy("probabilities")

        with pytest.raises(InferenceServerException, match=rf"takes \[N, {SHORTEST}\.\.{LONGEST}\]"):
            call(SHORTEST - 1)
        assert call(SHORTEST).shape == (1, CLASSES)


def test_the_gateway_takes_a_length_within_the_range_and_refuses_others(project):
    from core.spec import load_spec
    from gateway.catalogue import endpoints
    from gateway.inputs import from_json
    from gateway.problems import InvalidInput

    (endpoint,) = endpoints(load_spec(project / "models.toml"), project / "model_repository")
    request = from_json(endpoint, {"inputs": [[1, 2, 3, 4], [5, 6, 7, 8]]})
    assert request.arrays["tokens"].shape == (2, 4)
    with pytest.raises(InvalidInput, match=rf"items of shape \[{SHORTEST}\.\.{LONGEST}\]; item 0 has shape \[2\]"):
        from_json(endpoint, {"inputs": [[1, 2]]})
    with pytest.raises(InvalidInput, match="every item of one request has the same shape"):
        from_json(endpoint, {"inputs": [[1, 2, 3, 4], [1, 2, 3, 4, 5]]})
    schema = endpoint.item_schema(endpoint.inputs[0])
    assert (schema["minItems"], schema["maxItems"]) == (SHORTEST, LONGEST)


def test_the_load_test_sends_each_held_out_row_at_its_own_length(project):
    from core.spec import load_spec
    from core.measure import payloads

    (target,) = payloads.targets(load_spec(project / "models.toml"))
    lengths = {sample.inputs[0].array.shape[1] for sample in payloads.samples(target)}
    expected = set(np.load(project / "models" / "heldout.npz")["x_lengths"].tolist())
    assert lengths == expected and {SHORTEST, LONGEST} <= lengths
