"""Every model models.toml lists is served and behaves as its spec and card say: a model added to the spec is tested
here with no change to the tests.

For each Triton model: it is READY; its metadata (inputs, outputs, datatypes, shapes) equals the spec's; an onnx model
run on its whole held-out set through Triton reproduces the accuracy its card recorded at export; a model with load-test
samples answers them with outputs of the declared shape.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from core.heldout import load_npz
from core.repository import served_names
from core.spec import ModelSpec, Tensor, load_spec

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SPEC = load_spec(ROOT / "models.toml")
# an optional variant the export left out (its card records why) is not served
SERVED = [(name, model) for model in SPEC.models for name in served_names(model, ROOT / "model_repository")]
# Triton computes with the same ONNX Runtime build as the export, but thread scheduling may flip a near-tie; one
# held-out sample either way is allowed.
ACCURACY_TOLERANCE_SAMPLES = 1
SAMPLES_PER_MODEL = 16


def triton_datatype(dtype: str) -> str:
    return "BYTES" if dtype == "TYPE_STRING" else dtype.removeprefix("TYPE_")


def expected_tensors(tensors: tuple[Tensor, ...]) -> list[dict]:
    return [{"name": t.name, "datatype": triton_datatype(t.dtype), "shape": [-1, *t.dims]} for t in tensors]


def sample_payloads(model: ModelSpec) -> list[bytes]:
    if model.loadtest.samples.is_dir():
        return [p.read_bytes() for p in sorted(model.loadtest.samples.iterdir()) if p.is_file()][:SAMPLES_PER_MODEL]
    return [line.encode() for line in model.loadtest.samples.read_text(encoding="utf-8").splitlines() if line][
        :SAMPLES_PER_MODEL]


def infer(client, name: str, model: ModelSpec, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    inputs = []
    for t in model.inputs:
        tensor = httpclient.InferInput(t.name, list(arrays[t.name].shape), triton_datatype(t.dtype))
        tensor.set_data_from_numpy(arrays[t.name], binary_data=True)
        inputs.append(tensor)
    outputs = [httpclient.InferRequestedOutput(t.name, binary_data=True) for t in model.outputs]
    result = client.infer(name, inputs, outputs=outputs)
    return {t.name: result.as_numpy(t.name) for t in model.outputs}


@pytest.fixture(scope="module")
def client(triton):
    with httpclient.InferenceServerClient(triton.http_url) as c:
        yield c


@pytest.mark.parametrize(("name", "model"), SERVED, ids=[n for n, _ in SERVED])
def test_every_spec_model_is_ready_with_the_metadata_the_spec_declares(client, name, model):
    assert client.is_model_ready(name), f"{name} is not READY"
    metadata = client.get_model_metadata(name)
    assert metadata["inputs"] == expected_tensors(model.inputs)
    assert metadata["outputs"] == expected_tensors(model.outputs)


ONNX_SERVED = [(n, m) for n, m in SERVED if m.source.onnx is not None]


@pytest.mark.parametrize(("name", "model"), ONNX_SERVED, ids=[n for n, _ in ONNX_SERVED])
def test_every_onnx_model_reproduces_its_cards_heldout_accuracy_on_triton(triton, client, name, model):
    card = json.loads((triton.repository / name / "card.json").read_text())
    recorded = next(v["accuracy"] for v in card["variants"] if v["triton_name"] == name)
    heldout = load_npz(model, model.source.onnx.heldout, with_labels=True)
    x, y, rows = heldout.x, heldout.y, len(heldout)
    outputs = {t.name: [] for t in model.outputs}
    for start in range(0, rows, model.batching.max_batch_size):
        part = infer(client, name, model, {k: v[start:start + model.batching.max_batch_size] for k, v in x.items()})
        for k, v in part.items():
            outputs[k].append(v)
    first = np.concatenate(outputs[model.outputs[0].name])
    assert first.shape == (rows, *model.outputs[0].dims)
    if recorded is None:  # no classification output with targets (regression, multi-label): as ONNX Runtime answers
        import onnxruntime as ort

        session = ort.InferenceSession(str(triton.repository / name / "1" / "model.onnx"),
                                       providers=["CPUExecutionProvider"])
        for t, expected in zip(model.outputs, session.run([t.name for t in model.outputs], x)):
            np.testing.assert_allclose(np.concatenate(outputs[t.name]), expected, rtol=1e-5, atol=1e-6 * (
                1 + float(np.max(np.abs(expected)))), err_msg=f"{name} {t.name}")
        return
    correct = int((first.reshape(rows, -1).argmax(axis=1) == y).sum())
    assert abs(correct - round(recorded * rows)) <= ACCURACY_TOLERANCE_SAMPLES, (
        f"{name}: {correct}/{rows} right on Triton, the card recorded {recorded:.2%} "
        f"({round(recorded * rows)}/{rows}) at export")


SAMPLED = [(n, m) for n, m in SERVED if m.loadtest.samples is not None]


@pytest.mark.parametrize(("name", "model"), SAMPLED, ids=[n for n, _ in SAMPLED])
def test_every_model_with_samples_answers_them_in_the_declared_shape(client, name, model):
    (text_input,) = model.inputs  # samples feed one TYPE_STRING input
    payloads = sample_payloads(model)
    assert payloads, f"{model.loadtest.samples} holds no samples"
    batch = np.array([[p] for p in payloads], dtype=np.object_)
    outputs = infer(client, name, model, {text_input.name: batch})
    for t in model.outputs:
        assert outputs[t.name].shape == (len(payloads), *t.dims), t.name
        if outputs[t.name].dtype.kind == "f":
            assert np.all(np.isfinite(outputs[t.name])), t.name
