"""The source model's reference outputs: every source format agrees, and SavedModel tensors are paired with the
spec by the signature's names, never by sorted order."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import IncompatibleModelError
from core.heldout import Dataset, load_npz
from export.reference import reference_outputs
from tests import specs
from tests.export.conftest import tiny_spec


def test_a_saved_model_source_gives_the_same_reference_outputs_as_its_keras_file(tmp_path, tiny_model):
    import keras

    saved = tmp_path / "saved_model"
    keras.saving.load_model(tiny_model.keras_path).export(str(saved), verbose=False)
    from_keras = specs.load(tmp_path, tiny_spec(tiny_model)).models[0]
    from_saved = specs.load(tmp_path, tiny_spec(tiny_model, source=saved)).models[0]
    assert from_saved.source.onnx.source_format == "savedmodel"
    data = load_npz(from_keras, tiny_model.heldout, with_labels=True)
    a, b = reference_outputs(from_keras, data)["scores"], reference_outputs(from_saved, data)["scores"]
    assert a.shape == (40, 3) and np.max(np.abs(a - b)) <= 1e-6


def two_by_two_spec(source, heldout, inputs=("zeta", "alpha"), outputs=("zsum", "adiff")) -> dict:
    """A spec entry for the raw tf.Module below, declaring its tensors in an order unlike the sorted one."""
    dims = {"zeta": 3, "alpha": 3, "zsum": 3, "adiff": 1}
    return specs.model("pairs", source=source, heldout=heldout,
                       inputs=[specs.tensor(n, [dims.get(n, 3)]) for n in inputs],
                       outputs=[specs.tensor(n, [dims.get(n, 3)]) for n in outputs])


@pytest.fixture(scope="module")
def two_by_two(tmp_path_factory):
    """A tf.Module SavedModel: inputs zeta, alpha -> outputs zsum = 10 zeta - alpha, adiff = 2 sum(alpha)."""
    import tensorflow as tf

    directory = tmp_path_factory.mktemp("two_by_two")

    class TwoByTwo(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="zeta"),
                                      tf.TensorSpec([None, 3], tf.float32, name="alpha")])
        def serve(self, zeta, alpha):
            return {"zsum": zeta * 10.0 - alpha, "adiff": tf.reduce_sum(alpha, axis=1, keepdims=True) * 2.0}

    module = TwoByTwo()
    tf.saved_model.save(module, str(directory / "saved_model"), signatures={"serving_default": module.serve})
    rng = np.random.default_rng(0)
    zeta, alpha = rng.normal(size=(12, 3)).astype(np.float32), rng.normal(size=(12, 3)).astype(np.float32)
    np.savez(directory / "heldout.npz", zeta=zeta, alpha=alpha, y=np.argmax(zeta * 10 - alpha, axis=1))
    return directory


def expected_outputs(x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"zsum": x["zeta"] * 10 - x["alpha"], "adiff": x["alpha"].sum(axis=1, keepdims=True) * 2}


def test_a_saved_model_maps_inputs_and_outputs_by_the_signatures_names_not_by_sorted_order(tmp_path, two_by_two):
    spec = two_by_two_spec(two_by_two / "saved_model", two_by_two / "heldout.npz")
    model = specs.load(tmp_path, spec).models[0]
    data = load_npz(model, model.source.onnx.heldout, with_labels=True)
    outputs = reference_outputs(model, data)
    for name, want in expected_outputs(data.x).items():
        np.testing.assert_allclose(outputs[name], want, rtol=1e-6, err_msg=name)


def test_spec_names_the_signature_does_not_have_fail_listing_both_sides(tmp_path, two_by_two):
    spec = two_by_two_spec(two_by_two / "saved_model", two_by_two / "heldout.npz", inputs=("first", "second"))
    model = specs.load(tmp_path, spec).models[0]
    data = Dataset({"first": np.zeros((2, 3), np.float32), "second": np.zeros((2, 3), np.float32)}, None)
    with pytest.raises(IncompatibleModelError) as raised:
        reference_outputs(model, data)
    message = str(raised.value)
    assert "the spec's inputs (first, second)" in message and "signature 'serving_default' (alpha, zeta)" in message
    assert "rename the [[model.input]] tables" in message


def test_a_two_input_two_output_saved_model_exports_by_name_and_passes_the_gate(tmp_path, two_by_two):
    import onnxruntime as ort

    from export import pipeline

    spec = specs.load(tmp_path, two_by_two_spec(two_by_two / "saved_model", two_by_two / "heldout.npz"))
    lines = []
    pipeline.run(spec, pipeline.Options(tmp_path / "repo"), lines.append)
    session = ort.InferenceSession(str(tmp_path / "repo" / "pairs" / "1" / "model.onnx"))
    assert [i.name for i in session.get_inputs()] == ["alpha", "zeta"]  # tf2onnx's order; fed by name below
    data = load_npz(spec.models[0], two_by_two / "heldout.npz", with_labels=True)
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, data.x)))
    for name, want in expected_outputs(data.x).items():
        np.testing.assert_allclose(got[name], want, rtol=1e-5, err_msg=name)
    assert any(line.strip().startswith("pairs: ") and "accuracy 100.00%" in line for line in lines), lines
