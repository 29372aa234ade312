"""The parity gate compares every variant with the source model and reports all failures at once."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.errors import ParityError
from export.dataset import Dataset
from export.spec import load_spec
from export.verify import gate, latency_us, run_onnx
from tests.export.conftest import tiny_spec, write_spec


def linear_softmax(weights: np.ndarray) -> bytes:
    """pixels [batch, 6, 6, 1] -> Flatten -> MatMul -> Softmax -> scores [batch, 3]."""
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["pixels"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["scores"])],
        "linear",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 6, 6, 1])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(weights.astype(np.float32), "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@pytest.fixture()
def setup(tmp_path, tiny_model):
    model = load_spec(write_spec(tmp_path, tiny_spec(tiny_model))).models[0]
    rng = np.random.default_rng(1)
    weights = rng.normal(0, 0.05, (36, 3))
    x = rng.uniform(0, 255, (50, 6, 6, 1)).astype(np.float32)
    good = linear_softmax(weights)
    reference = run_onnx(good, {"pixels": x}, batch_size=50, output_names=["scores"])
    heldout = Dataset({"pixels": x}, reference["scores"].argmax(axis=1))
    return model, weights, heldout, reference, good


def test_a_faithful_conversion_passes_with_its_figures(setup):
    model, _, heldout, reference, good = setup
    (report,) = gate(model, {"fp32": good}, heldout, reference)
    assert report.passed and report.accuracy == 1.0 and report.argmax_agreement == 1.0
    assert set(report.max_abs_diff) == {1, 7, 16}, "the gate runs at batch sizes other than the export's"
    assert max(report.max_abs_diff.values()) <= 1e-6


def test_the_gate_fails_a_deliberately_broken_model_and_lists_every_failure(setup):
    model, weights, heldout, reference, _ = setup
    broken = linear_softmax(weights[:, ::-1])  # swapped classes: a wrong model that still runs
    with pytest.raises(ParityError) as info:
        gate(model, {"fp32": broken, "int8": broken, "fp16": broken}, heldout, reference)
    failures = info.value.failures
    checks = {(f.variant, f.check) for f in failures}
    assert ("fp32", "max |diff|") in checks and ("fp32", "argmax agreement") in checks
    assert ("int8", "accuracy drop (points)") in checks and ("fp16", "max |diff|") in checks
    assert {f.batch_size for f in failures if f.variant == "fp32" and f.check == "max |diff|"} == {1, 7, 16}
    message = str(info.value)
    assert "'scores'" in message and "tolerance 0.0001" in message and "tolerance 0.01" in message
    assert "left untouched" in message


def test_a_tiny_numeric_drift_below_tolerance_passes_but_above_it_fails(setup):
    model, weights, heldout, reference, _ = setup
    nudged = linear_softmax(weights + 1e-9)
    gate(model, {"fp32": nudged}, heldout, reference)
    drifted = linear_softmax(weights * 1.01)
    with pytest.raises(ParityError, match=r"fp32 'scores': max \|diff\|"):
        gate(model, {"fp32": drifted}, heldout, reference)


def test_latency_is_measured_per_batch_size_up_to_max_batch_size(setup):
    model, _, heldout, _, good = setup
    timings = latency_us(model, good, heldout)
    assert list(timings) == [1, 8]  # 32 exceeds the tiny model's max_batch_size of 16
    assert all(0 < t["p50"] <= t["p99"] for t in timings.values())
