"""A user's models.toml in a temp dir, written as a user would: a two-input, two-output onnx model with a variant and
its held-out .npz, a python model with text samples, and a python model with no payloads at all. Shared by the load
test and benchmark tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests import specs


def churn(**fields) -> dict:
    """A two-input, two-output onnx model with an fp16 variant."""
    return specs.model("churn", **{"source": "churn.onnx", "heldout": "heldout.npz", "variants": ["fp32", "fp16"],
                                   "loadtest_weight": 4, **fields},
                       inputs=[specs.tensor("features", [3]), specs.tensor("plan_ids", [2], "TYPE_INT64")],
                       outputs=[specs.tensor("churn_probability", [2], labels=["stays", "leaves"]),
                                specs.tensor("spend", [1])])


def text_model(name: str, **fields) -> dict:
    """A python model from text to length; `samples` gives it load-test payloads."""
    return specs.model(name, "python", code="model.py", **fields, inputs=[specs.tensor("text", [1], "TYPE_STRING")],
                       outputs=[specs.tensor("length", [1], "TYPE_INT32")])


def user_models() -> tuple[dict, ...]:
    """churn; notes, with text samples; bare, with no payloads at all."""
    return churn(), text_model("notes", samples="notes.txt"), text_model("bare")


ROWS = 12


def heldout_arrays(rows: int = ROWS) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "features": rng.normal(size=(rows, 3)).astype(np.float64),  # float64 on disk: the spec's dtype wins
        "plan_ids": rng.integers(0, 50, size=(rows, 2)),
        "y": rng.integers(0, 2, size=rows),
    }


def write_user_spec(folder: Path, *entries: dict | str,
                    notes: tuple[str, ...] = ("great service", "", "too pricey")) -> Path:
    """models.toml (the user models unless `entries` are given) beside the files it names."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.py").write_text("class TritonPythonModel:\n    pass\n")
    np.savez(folder / "heldout.npz", **heldout_arrays())
    (folder / "notes.txt").write_text("".join(f"{n}\n" for n in notes), encoding="utf-8")
    return specs.write_spec(folder, *(entries or user_models()))


def write_churn_onnx(path: Path) -> Path:
    """The spec's churn model as a real ONNX file, inputs in the other order than the spec lists them (plan_ids,
    features), as an exporter may leave them: churn_probability = softmax(features @ W + plan_ids), spend = sum."""
    import onnx
    from onnx import TensorProto, helper

    weights = helper.make_tensor("W", TensorProto.FLOAT, [3, 2], [0.5, -0.5, 1.0, 0.0, -1.0, 2.0])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["features", "W"], ["scores"]),
            helper.make_node("Cast", ["plan_ids"], ["plan_float"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["scores", "plan_float"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["churn_probability"], axis=1),
            helper.make_node("ReduceSum", ["features", "axes"], ["spend"], keepdims=1),
        ],
        "churn",
        [helper.make_tensor_value_info("plan_ids", TensorProto.INT64, ["N", 2]),
         helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("churn_probability", TensorProto.FLOAT, ["N", 2]),
         helper.make_tensor_value_info("spend", TensorProto.FLOAT, ["N", 1])],
        initializer=[weights, axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def churn_reference(features: np.ndarray, plan_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    weights = np.array([[0.5, -0.5], [1.0, 0.0], [-1.0, 2.0]], dtype=np.float32)
    logits = features.astype(np.float32) @ weights + plan_ids.astype(np.float32)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True), features.astype(np.float32).sum(axis=1, keepdims=True)
