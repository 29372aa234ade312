"""The parity gate compares every variant with the source model and reports all failures at once."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from core.errors import ParityError
from core.heldout import Dataset
from export.verify import check, gate, latency_us, run_onnx
from tests import specs
from tests.export.conftest import tiny_spec


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
    model = specs.load(tmp_path, tiny_spec(tiny_model)).models[0]
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


# ---- every output judged by its kind --------------------------------------------------------------------------------

def dense(weights: np.ndarray, activation: str, scale: float = 1.0) -> bytes:
    """features [batch, 4] -> MatMul -> activation (Sigmoid, Softmax, Identity) x scale -> out [batch, k]."""
    k = weights.shape[1]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "w"], ["z"]), helper.make_node(activation, ["z"], ["a"]),
         helper.make_node("Mul", ["a", "scale"], ["out"])], "dense",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", k])],
        [numpy_helper.from_array(weights.astype(np.float32), "w"),
         numpy_helper.from_array(np.array(scale, np.float32), "scale")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def dense_model(tmp_path, k: int, gate: dict | None = None, **output_fields):
    """The spec entry of `dense` below: features [4] -> out [k]."""
    entry = specs.model("dense", source=tmp_path / "dense.onnx", heldout=tmp_path / "heldout.npz",
                        variants=["fp32", "int8", "fp16"], calibration=tmp_path / "heldout.npz", max_batch_size=16,
                        inputs=[specs.tensor("features", [4])], outputs=[specs.tensor("out", [k], **output_fields)],
                        gate=gate)
    return specs.load(tmp_path, entry).models[0]


@pytest.fixture()
def features():
    rng = np.random.default_rng(3)
    return rng.normal(0, 1, (64, 4)).astype(np.float32), rng.normal(0, 1, (4, 3))


def judge(model, variants: dict[str, bytes], x, y=None):
    reference = run_onnx(variants.pop("source"), {"features": x}, 64, ["out"])
    targets = {} if y is None else {"out": y}
    return check(model, variants, Dataset({"features": x}, y, targets), reference)


def test_a_regression_output_is_judged_relative_to_its_range_not_by_an_absolute_diff(tmp_path, features):
    x, w = features
    model = dense_model(tmp_path, 1)
    source = dense(w[:, :1], "Identity", 300.0)  # values about -600..600: float noise is far above 1e-2 absolute
    y = run_onnx(source, {"features": x}, 64, ["out"])["out"].astype(np.float64) + 1.0
    reports, failures = judge(model, {"source": source, "fp16": dense(w[:, :1] * 1.0004, "Identity", 300.0),
                                      "int8": dense(w[:, :1] * 1.1, "Identity", 300.0)}, x, y)
    fp16, int8 = (r.outputs[0] for r in reports)
    assert fp16.task == "regression" and fp16.figures["max_abs_diff"] > 1e-2 and fp16.figures["range_error"] < 1e-2
    assert fp16.figures["mae"] == pytest.approx(1.0, abs=0.5) and fp16.figures["source_mae"] == pytest.approx(1.0)
    assert [(f.variant, f.check) for f in failures if f.variant == "fp16"] == [], "4e-4 relative passes fp16"
    assert {f.check for f in failures if f.variant == "int8"} == {
        "range error (max |diff| / source p1-p99 range)", "mean relative error"}, "10 % off fails int8"


def test_a_sigmoid_output_with_multi_hot_targets_is_judged_label_by_label(tmp_path, features):
    x, w = features
    model = dense_model(tmp_path, 3, labels=["a", "b", "c"])
    source = dense(w, "Sigmoid")
    y = (x @ w > 0).astype(np.int64)
    flipped = w.copy()
    flipped[:, 1] *= -1
    reports, failures = judge(model, {"source": source, "fp32": source, "int8": dense(flipped, "Sigmoid")}, x, y)
    fp32, int8 = (r.outputs[0] for r in reports)
    assert fp32.task == "multilabel" and fp32.figures["label_agreement"] == 1.0 and fp32.figures["micro_f1"] == 1.0
    assert int8.figures["label_agreement"] < 0.1, "label b decides the other way on almost every row"
    assert {f.check for f in failures} == {"label agreement (worst label)", "micro-F1 drop (points)"}
    assert reports[0].accuracy is None, "no top-1 accuracy on independent labels"
    (report,), _ = judge(model, {"source": source, "fp32": source}, x, y.astype(np.float32))
    assert report.outputs[0].task == "multilabel", "multi-hot rows saved as floats, for a labelled output"


def test_without_targets_labelled_scores_that_do_not_sum_to_one_are_multilabel(tmp_path, features):
    x, w = features
    model = dense_model(tmp_path, 3, labels=["a", "b", "c"])
    (report,), failures = judge(model, {"source": dense(w, "Sigmoid"), "fp32": dense(w, "Sigmoid")}, x)
    assert report.outputs[0].task == "multilabel" and not report.outputs[0].targets and not failures
    (report,), _ = judge(model, {"source": dense(w, "Softmax"), "fp32": dense(w, "Softmax")}, x)
    assert report.outputs[0].task == "classification"


def test_an_output_the_gate_cannot_judge_fails_with_the_reason(tmp_path, features):
    x, w = features
    single = dense_model(tmp_path, 1, task="classification")
    _, failures = judge(single, {"source": dense(w[:, :1], "Sigmoid"), "fp32": dense(w[:, :1], "Sigmoid")}, x)
    assert [f.check for f in failures] == ["cannot be judged"] and "single column" in str(failures[0])
    labelled = dense_model(tmp_path, 3, labels=["a", "b", "c"])
    _, failures = judge(labelled, {"source": dense(w, "Softmax"), "fp32": dense(w, "Softmax")}, x,
                        np.full(64, 7, np.int64))
    assert "class ids run from 7 to 7; the output has 3 classes" in str(failures[0])
    flat = dense_model(tmp_path, 3)
    _, failures = judge(flat, {"source": dense(w, "Identity", 0.0), "fp32": dense(w, "Identity", 0.0)}, x)
    assert "0 on every held-out row" in str(failures[0]), "a constant output has no scale to be relative to"


def test_a_variant_that_answers_nan_fails_even_where_a_diff_would_compare_false(tmp_path, features):
    x, w = features
    model = dense_model(tmp_path, 1)
    nan = dense(w[:, :1], "Identity", float("nan"))
    _, failures = judge(model, {"source": dense(w[:, :1], "Identity"), "fp16": nan}, x)
    assert {f.check for f in failures} == {"range error (max |diff| / source p1-p99 range)", "mean relative error"}


def test_a_per_output_gate_table_overrides_the_models_tolerance_for_that_output(tmp_path, features):
    x, w = features
    source, off = dense(w[:, :1], "Identity", 10.0), dense(w[:, :1] * 1.03, "Identity", 10.0)
    _, failures = judge(dense_model(tmp_path, 1), {"source": source, "fp16": off}, x)
    assert failures, "3 % off fails the default fp16 tolerances"
    loose = dense_model(tmp_path, 1, gate={"out": {"fp16_max_range_error": 0.1,
                                                   "fp16_max_mean_relative_error": 0.1}})
    _, failures = judge(loose, {"source": source, "fp16": off}, x)
    assert failures == []


def test_a_variant_onnx_runtime_cannot_load_is_one_failure_line_naming_variant_step_and_op(tmp_path, features):
    x, w = features
    model = dense_model(tmp_path, 1)
    _, failures = judge(model, {"source": dense(w[:, :1], "Identity"), "fp16": b"not an onnx model"}, x)
    (failure,) = failures
    assert str(failure).startswith("dense_fp16: loading in ONNX Runtime failed") and "\n" not in str(failure)


def mean_and_max(offset: float = 0.0) -> bytes:
    """tokens [batch, any length] -> [mean, max] over the length (+ offset): padding would change both."""
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["tokens"], ["mean"], axes=[1], keepdims=1),
         helper.make_node("ReduceMax", ["tokens"], ["max"], axes=[1], keepdims=1),
         helper.make_node("Concat", ["mean", "max"], ["both"], axis=1),
         helper.make_node("Add", ["both", "offset"], ["stats"])],
        "mean_and_max",
        [helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["batch", "length"])],
        [helper.make_tensor_value_info("stats", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(np.array([offset], np.float32), "offset")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


def test_a_variable_length_model_is_judged_on_rows_at_their_true_length_against_targets_per_output(tmp_path):
    from core.heldout import load_npz
    from core.spec import Batching, Gate, ModelSpec, OnnxSource, Source, Tensor

    rng = np.random.default_rng(3)
    lengths = rng.integers(1, 9, 40)
    padded = np.where(np.arange(8) < lengths[:, None], rng.uniform(-5, 5, (40, 8)), 0.0)
    truth = np.array([[row[:n].mean(), row[:n].max()] for row, n in zip(padded, lengths)])
    np.savez(tmp_path / "heldout.npz", x=padded.astype(np.float32), x_lengths=lengths, y_stats=truth + 0.1)
    source = OnnxSource(tmp_path / "m.onnx", tmp_path / "heldout.npz", None, None, ("fp32",), Gate("m"), False)
    model = ModelSpec("m", "onnx", (Tensor("m", "tokens", "TYPE_FP32", (-1,)),),
                      (Tensor("m", "stats", "TYPE_FP32", (2,)),), Batching(16), source=Source(onnx=source))
    heldout = load_npz(model, tmp_path / "heldout.npz", with_labels=True)
    reference = {"stats": truth.astype(np.float32)}
    (report,) = gate(model, {"fp32": mean_and_max()}, heldout, reference)
    (stats,) = report.outputs
    assert report.passed and stats.task == "regression" and stats.figures["range_error"] < 1e-5
    assert stats.figures["mae"] == pytest.approx(0.1, abs=1e-5), "targets judged row by row in sample order"
    with pytest.raises(ParityError, match=r"fp32 'stats': range error"):
        gate(model, {"fp32": mean_and_max(offset=0.5)}, heldout, reference)
