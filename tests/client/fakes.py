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
                 "output": [{"name": "probabilities", "data_type": "TYPE_FP32", "dims": [10],
                             "label_filename": "labels.txt"}]}
# The fake server's labels are words, so a test can tell them from class indices or labels written in the client.
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PAIR_METADATA = {  # as gRPC's JSON mapping gives it: int64 dims as strings
    "name": "pair", "versions": ["1"], "platform": "python",
    "inputs": [{"name": "ids", "datatype": "INT64", "shape": ["-1", "3"]},
               {"name": "text", "datatype": "BYTES", "shape": ["-1", "1"]}],
    "outputs": [{"name": "score", "datatype": "FP32", "shape": ["-1", "1"]}],
}
PAIR_CONFIG = {"config": {"name": "pair", "max_batch_size": 8}}
# Two inputs, a labelled output and an unlabelled one.
TAGGER_METADATA = {
    "name": "tagger", "versions": ["1"], "platform": "python",
    "inputs": [{"name": "ids", "datatype": "INT64", "shape": [-1, 3]},
               {"name": "text", "datatype": "BYTES", "shape": [-1, 1]}],
    "outputs": [{"name": "kind", "datatype": "FP32", "shape": [-1, 3]},
                {"name": "embedding", "datatype": "FP32", "shape": [-1, 2]}],
}
TAGGER_CONFIG = {"name": "tagger", "max_batch_size": 8,
                 "output": [{"name": "kind", "data_type": "TYPE_FP32", "dims": [3], "label_filename": "kinds.txt"},
                            {"name": "embedding", "data_type": "TYPE_FP32", "dims": [2]}]}
TAGGER_KINDS = ("cat", "dog", "bird")


def echo_digits(request):
    """Output row i = one-hot of the first pixel of image i (mod 10), so order can be checked."""
    first = request.inputs["image"].reshape(len(request.inputs["image"]), -1)[:, 0].astype(int) % 10
    return {"probabilities": np.eye(10, dtype=np.float32)[first]}


def tag(request):
    """kind: ids[:, 0] % 3 scores 0.7, the others 0.1 and 0.2; embedding: [length of text, sum of ids]."""
    ids, text = request.inputs["ids"], request.inputs["text"]
    kind = np.tile(np.array([0.1, 0.2, 0.0], np.float32), (len(ids), 1))
    kind[np.arange(len(ids)), ids[:, 0] % 3] = 0.7
    embedding = np.stack([[len(t) for t in text[:, 0]], ids.sum(axis=1)], axis=1).astype(np.float32)
    return {"kind": kind, "embedding": embedding}


def answer_by_model(request):
    return tag(request) if request.model == "tagger" else echo_digits(request)


def classification(values, labels, class_count):
    """What Triton's classification extension returns: per item the top class_count as b"score:index[:label]"."""
    rows = []
    for row in values.reshape(len(values), -1):
        order = np.argsort(-row, kind="stable")[:class_count]
        rows.append([(f"{row[i]:f}:{i}" + (f":{labels[i]}" if labels and i < len(labels) else "")).encode()
                     for i in order])
    return np.array(rows, dtype=object)


class FakeTransport:
    """Answers metadata/config from dicts; `failures` is a queue of errors handed out to the next infer calls."""

    def __init__(self, metadata=None, configs=None, answer=answer_by_model, failures=(), labels=None):
        self.metadata_by_model = metadata or {"digits": DIGITS_METADATA, "pair": PAIR_METADATA,
                                              "tagger": TAGGER_METADATA}
        self.configs = configs or {"digits": DIGITS_CONFIG, "pair": PAIR_CONFIG, "tagger": TAGGER_CONFIG}
        # (model, output) -> the label file's lines, for outputs whose config names a label_filename
        self.labels = labels if labels is not None else {("digits", "probabilities"): DIGIT_NAMES,
                                                         ("tagger", "kind"): TAGGER_KINDS}
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
            outcomes.append(self.failures.popleft() if self.failures else self._answer(request))
        return outcomes

    def _answer(self, request):
        answer = {name: value for name, value in self.answer(request).items() if name in request.outputs}
        if request.class_count:
            answer = {name: classification(value, self.labels.get((request.model, name)), request.class_count)
                      for name, value in answer.items()}
        return answer

    @property
    def label_requests(self):
        return [r for r in self.sent if r.class_count]

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
