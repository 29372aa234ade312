"""Conversion output: spec tensor names, a dynamic `batch` dim, static other dims; the ops TensorRT cannot run, named."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from core.errors import IncompatibleModelError
from export.convert import finalize, unsupported_ops
from tests import specs
from tests.export.conftest import tiny_spec


def graph_with(op: str = "Softmax", output: str = "output_0", dims=("unk__7", 6, 6, 1), domain: str = ""):
    nodes = [helper.make_node("Flatten", ["pixels"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["logits"]),
             helper.make_node(op, ["logits"], [output], domain=domain)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, list(dims))],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["unk__8", 3])],
        [numpy_helper.from_array(np.ones((36, 3), np.float32), "w")])
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(graph, opset_imports=opsets)


@pytest.fixture()
def model(tmp_path, tiny_model):
    return specs.load(tmp_path, tiny_spec(tiny_model)).models[0]


def test_outputs_are_renamed_to_the_spec_and_the_batch_dim_is_named_batch(model):
    proto = finalize(model, graph_with())
    assert [o.name for o in proto.graph.output] == ["scores"]
    for vi in (proto.graph.input[0], proto.graph.output[0]):
        assert vi.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim[1:]] == [6, 6, 1]
    assert any("scores" in n.output for n in proto.graph.node)


def test_a_dynamic_non_batch_dim_the_spec_declares_fixed_is_refused_with_the_fix(model):
    with pytest.raises(IncompatibleModelError, match=r"shape \[batch, h, 6, 1\] in the model, the spec says "
                                                     r"\[batch, 6, 6, 1\]: a dim is -1 in the spec exactly where"):
        finalize(model, graph_with(dims=("n", "h", 6, 1)))


def test_an_op_tensorrt_cannot_run_is_named_and_the_model_still_converts(model):
    custom = graph_with(op="Gelu", domain="com.microsoft")
    assert unsupported_ops(custom) == ["com.microsoft.Gelu"]
    assert finalize(model, custom).graph.output[0].name == "scores", "served without TensorRT, not refused"


def test_loop_bodies_are_checked_op_by_op_and_loop_itself_is_on_tensorrts_list():
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Hardmax", ["state_in"], ["state_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("state_in", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("state_out", TensorProto.FLOAT, ["batch", 3])])
    proto = graph_with()
    proto.graph.node.append(helper.make_node("Loop", ["", "", "output_0"], ["looped"], body=body))
    assert unsupported_ops(proto) == ["Hardmax"], "Loop is imported by TensorRT; the Hardmax inside it is not"


def test_a_dtype_mismatch_names_both_sides_in_the_specs_own_type_names(tmp_path, tiny_model):
    entry = tiny_spec(tiny_model)
    entry["input"][0]["dtype"] = "TYPE_INT64"
    model = specs.load(tmp_path, entry).models[0]
    with pytest.raises(IncompatibleModelError, match=r"input 'pixels' is TYPE_FP32 in the model, the spec says "
                                                     r"TYPE_INT64"):
        finalize(model, graph_with())
    halves = graph_with()
    halves.graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    with pytest.raises(IncompatibleModelError, match=r"input 'pixels' is TYPE_FP16 in the model, the spec says "
                                                     r"TYPE_INT64"):
        finalize(model, halves)
    complex_ = graph_with()
    complex_.graph.input[0].type.tensor_type.elem_type = TensorProto.COMPLEX64
    with pytest.raises(IncompatibleModelError, match=r"input 'pixels' is COMPLEX64 \(no Triton dtype\) in the model"):
        finalize(model, complex_)
    texts = graph_with()  # strings inside the graph: the fix is a preprocessing step, whatever the spec says
    texts.graph.input[0].type.tensor_type.elem_type = TensorProto.STRING
    with pytest.raises(IncompatibleModelError, match=r"input 'pixels' takes strings inside the graph"):
        finalize(model, texts)


def test_keras_positional_output_names_pair_by_number_so_output_10_comes_after_output_9(tmp_path, tiny_model):
    from export.convert import pair
    from core.spec import Tensor

    model = specs.load(tmp_path, tiny_spec(tiny_model)).models[0]
    wanted = tuple(Tensor("tiny", f"out{i}", "TYPE_FP32", (1,)) for i in range(11))
    actual = sorted(f"output_{i}" for i in range(11))  # as a signature lists them: output_10 before output_2
    pairs = pair(model, "output", wanted, actual, "the converted model")
    assert [(t.name, name) for t, name in pairs][9:] == [("out9", "output_9"), ("out10", "output_10")]


def test_a_trainers_saved_model_is_converted_as_it_is_not_exported_again(tmp_path, tiny_model):
    from export.convert import saved_model
    from export.train.base import TrainedModel

    model = specs.load(tmp_path, tiny_spec(tiny_model)).models[0]
    written = tmp_path / "saved_model"
    written.mkdir()
    (written / "saved_model.pb").write_bytes(b"")
    trained = TrainedModel("tiny", tiny_model.keras_path, written, tiny_model.heldout, tiny_model.calibration, 1.0, "")
    assert saved_model(model, trained, tmp_path / "work") == written
    assert not (tmp_path / "work").exists()
