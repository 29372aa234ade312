"""The int8 and fp16 variants keep the FP32 contract, and int8 is the QDQ form TensorRT imports."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto

from core.heldout import Dataset
from export.optimize import convert_fp16, quantize_int8
from export.verify import run_onnx
from tests.export.test_verify import linear_softmax


def _io_types(proto: onnx.ModelProto) -> list[int]:
    return [vi.type.tensor_type.elem_type for vi in list(proto.graph.input) + list(proto.graph.output)]


def test_int8_is_static_qdq_with_symmetric_scales_and_fp32_inputs_and_outputs():
    rng = np.random.default_rng(0)
    fp32 = onnx.load_from_string(linear_softmax(rng.normal(0, 0.05, (36, 3))))
    calibration = Dataset({"pixels": rng.uniform(0, 255, (64, 6, 6, 1)).astype(np.float32)}, None)
    int8 = quantize_int8(fp32, calibration)
    ops = {n.op_type for n in int8.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and not any(op.startswith("QLinear") for op in ops)
    zero_points = [i for i in int8.graph.initializer if i.name.endswith("_zero_point")]
    assert zero_points and all(not onnx.numpy_helper.to_array(z).any() for z in zero_points)  # symmetric
    assert _io_types(int8) == [TensorProto.FLOAT, TensorProto.FLOAT]
    out = run_onnx(int8.SerializeToString(), calibration.x, batch_size=8, output_names=["scores"])["scores"]
    assert out.shape == (64, 3)


def test_fp16_keeps_fp32_inputs_and_outputs_with_fp16_weights():
    fp32 = onnx.load_from_string(linear_softmax(np.full((36, 3), 0.01)))
    fp16 = convert_fp16(fp32)
    assert _io_types(fp16) == [TensorProto.FLOAT, TensorProto.FLOAT]
    assert {i.data_type for i in fp16.graph.initializer} == {TensorProto.FLOAT16}
