"""The one ONNX Runtime session a baseline worker holds: one intra-op thread, as one worker per core wants.

With workers = cores, more threads per worker only make the workers fight over the same cores; a single thread per
session is the baselines' best setting on this machine.
"""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort

MODEL_ENV = "BENCH_ONNX_MODEL"


def load_session() -> ort.InferenceSession:
    path = os.environ.get(MODEL_ENV)
    if not path or not os.path.isfile(path):
        raise RuntimeError(f"{MODEL_ENV} must name an ONNX file, got {path!r}: run `make export` first")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


class Predictor:
    def __init__(self) -> None:
        self.session = load_session()
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.sample_shape = tuple(int(d) for d in model_input.shape[1:])

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch.astype(np.float32, copy=False)})[0]

    def from_bytes(self, body: bytes) -> np.ndarray:
        """Raw little-endian float32 samples, as many as the body holds."""
        return np.frombuffer(body, dtype="<f4").reshape((-1, *self.sample_shape))
