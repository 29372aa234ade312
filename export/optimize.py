"""FP32 ONNX -> the INT8 (static QDQ quantization) and FP16 variants. The parity gate judges them afterwards."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx

from export.load import Dataset

CALIBRATION_BATCH = 32


def quantize_int8(fp32: onnx.ModelProto, calibration: Dataset) -> onnx.ModelProto:
    """Static INT8 in QDQ form with symmetric scales: the form TensorRT's explicit quantization imports."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            n = len(calibration)
            self._batches = iter([{k: v[i:i + CALIBRATION_BATCH] for k, v in calibration.x.items()}
                                  for i in range(0, n, CALIBRATION_BATCH)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    with tempfile.TemporaryDirectory(prefix="modelport-int8-") as tmp:
        src, pre, out = Path(tmp, "fp32.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "int8.onnx")
        onnx.save(fp32, str(src))
        # Shape inference and ORT's own graph fusions first, as onnxruntime.quantization recommends.
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
        return onnx.load(str(out))


def convert_fp16(fp32: onnx.ModelProto) -> onnx.ModelProto:
    """FP16 weights and compute, FP32 inputs and outputs, so the variant keeps the FP32 serving contract."""
    from onnxconverter_common import float16

    return float16.convert_float_to_float16(fp32, keep_io_types=True)
