"""A scripted stand-in for the tritonclient adapter (modelport.transport), for unit tests without a server."""

from __future__ import annotations

from collections import deque

import numpy as np

DIGITS_METADATA = {
    "name": "digits", "versions": ["1"], "platform": "onnxruntime_onnx",
    "inputs": [{"name": "image", "datatype": "FP32", "shape": [-1, 8, 8, 1]}],
    "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}],
}
DIGITS_CONFIG = {"name": "digits", "max_batch_size": 4,
                 "input": [{"name": "image", "data_type": "TYPE_FP32", "dims": [8, 8, 1]}],
                 "output": [{"name": "probabilities", "data_type": "TYPE_FP32", "dims": [10]}]}
PAIR_METADATA = {  # as gRPC's JSON mapping gives it: int64 dims as strings
    "name": "pair", "versions": ["1"], "platform": "python",
    "inputs": [{"name": "ids", "datatype": "INT64", "shape": ["-1", "3"]},
               {"name": "text", "datatype": "BYTES", "shape": ["-1", "1"]}],
    "outputs": [{"name": "score", "datatype": "FP32", "shape": ["-1", "1"]}],
}
PAIR_CONFIG = {"config": {"name": "pair", "max_batch_size": 8}}


def echo_digits(request):
    """Output row i = one-hot of the first pixel of image i (mod 10), so order can be checked."""
    first = request.inputs["image"].reshape(len(request.inputs["image"]), -1)[:, 0].astype(int) % 10
    return {"probabilities": np.eye(10, dtype=np.float32)[first]}


class FakeTransport:
    """Answers metadata/config from dicts; `failures` is a queue of errors handed out to the next infer calls."""

    def __init__(self, metadata=None, configs=None, answer=echo_digits, failures=()):
        self.metadata_by_model = metadata or {"digits": DIGITS_METADATA, "pair": PAIR_METADATA}
        self.configs = configs or {"digits": DIGITS_CONFIG, "pair": PAIR_CONFIG}
        self.answer = answer
        self.failures = deque(failures)
        self.sent = []  # every InferRequest, in the order sent
        self.metadata_calls = 0

    def is_live(self):
        return True

    def is_ready(self):
        return True

    def is_model_ready(self, model, version):
        return True

    def repository_index(self):
        return [{"name": "digits", "version": "1", "state": "READY"}]

    def metadata(self, model, version):
        from modelport.errors import ModelNotFound

        self.metadata_calls += 1
        if model not in self.metadata_by_model:
            raise ModelNotFound(f"{model}: Request for unknown model: '{model}' is not found", model=model)
        return self.metadata_by_model[model]

    def config(self, model, version):
        config = self.configs[model]
        if isinstance(config, Exception):
            raise config
        return config

    def infer_many(self, requests, timeout_s):
        outcomes = []
        for request in requests:
            self.sent.append(request)
            outcomes.append(self.failures.popleft() if self.failures else self.answer(request))
        return outcomes

    def close(self):
        pass


class AsyncFakeTransport:
    def __init__(self, fake: FakeTransport):
        self.fake = fake

    def __getattr__(self, name):
        method = getattr(self.fake, name)

        async def call(*args):
            return method(*args)
        return call
