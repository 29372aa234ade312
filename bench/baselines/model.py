"""The one ONNX Runtime session a baseline worker holds, and the two wire formats, for any ONNX model.

Inputs and outputs are the model file's own (names, dtypes, shapes from the session), so the baselines serve whatever
`BENCH_ONNX_MODEL` names: one input or several, any numeric dtype.

- JSON:   {"inputs": {input name: nested list [N, ...]}} -> {output name: nested list, for every output}
- binary: every input's raw little-endian samples, inputs one after another in the model's input order, N samples
          each (N from the body's length) -> every output's raw little-endian values, outputs in the model's order

With workers = cores, more threads per worker only make the workers fight over the same cores; a single thread per
session is the baselines' best setting on this machine.
"""

from __future__ import annotations

import math
import os

import numpy as np
import onnxruntime as ort

from tritonmodels.onnxruntime_session import ort_session, threads_config

MODEL_ENV = "BENCH_ONNX_MODEL"
# ONNX Runtime's type strings -> numpy; a model with other input types cannot be served by the baselines
ONNX_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int16)": np.int16, "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}


def load_session() -> ort.InferenceSession:
    path = os.environ.get(MODEL_ENV)
    if not path or not os.path.isfile(path):
        raise RuntimeError(f"{MODEL_ENV} must name an ONNX file, got {path!r}: run `make export` first")
    return ort_session(threads_config(1, 1), path)  # sequential execution: the config's default


class Predictor:
    def __init__(self, session: ort.InferenceSession | None = None) -> None:
        self.session = session or load_session()
        self.inputs = []  # (name, little-endian dtype, sample shape)
        for model_input in self.session.get_inputs():
            if model_input.type not in ONNX_TYPES:
                raise RuntimeError(f"input {model_input.name!r} is {model_input.type}; the baselines serve "
                                   f"{', '.join(ONNX_TYPES)}")
            shape = model_input.shape[1:]
            if not all(isinstance(d, int) and d > 0 for d in shape):
                raise RuntimeError(f"input {model_input.name!r} has shape {model_input.shape}: the baselines need "
                                   f"static dims after the batch dimension")
            self.inputs.append((model_input.name, np.dtype(ONNX_TYPES[model_input.type]).newbyteorder("<"),
                                tuple(shape)))
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._sample_bytes = sum(dtype.itemsize * math.prod(shape) for _, dtype, shape in self.inputs)

    def predict(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, feed)

    def from_json(self, document: dict) -> dict[str, np.ndarray]:
        inputs = document["inputs"]
        return {name: np.asarray(inputs[name], dtype=dtype) for name, dtype, _ in self.inputs}

    def to_json(self, outputs: list[np.ndarray]) -> dict[str, list]:
        return {name: output.tolist() for name, output in zip(self.output_names, outputs)}

    def from_bytes(self, body: bytes) -> dict[str, np.ndarray]:
        rows, rest = divmod(len(body), self._sample_bytes)
        if rest or not rows:
            raise ValueError(f"{len(body)} bytes is not a whole number of samples of {self._sample_bytes} bytes")
        feed, offset = {}, 0
        for name, dtype, shape in self.inputs:
            count = rows * math.prod(shape)
            feed[name] = np.frombuffer(body, dtype=dtype, count=count, offset=offset).reshape((rows, *shape))
            offset += count * dtype.itemsize
        return feed

    @staticmethod
    def to_bytes(outputs: list[np.ndarray]) -> bytes:
        return b"".join(output.astype(output.dtype.newbyteorder("<"), copy=False).tobytes() for output in outputs)


def request_body(arrays: list[np.ndarray]) -> bytes:
    """The binary request for a batch: the inputs' arrays in the model's input order (what `from_bytes` reads)."""
    return b"".join(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes() for a in arrays)


def input_order(onnx_path) -> list[str]:
    """The model file's input names in its own order: the order of the binary format (the client's side)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    return [i.name for i in graph.input if i.name not in initializers]
