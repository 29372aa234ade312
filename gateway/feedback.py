"""Feedback: the true label (or value) of a recent prediction, and from it live accuracy per model and version.

Every predict answer is remembered by its request ID in a bounded index (the last `--feedback-window` requests,
oldest evicted first): model, version, and per item the judged output's prediction, the top-1 label of the model's
first labelled output, or the number of a one-value output (a regression). `POST /v1/feedback` with
`{"request_id", "label"}` (or `"value"`, and `"item"` for a request of several items, default 0) judges an item once:

- `modelport_gateway_feedback_judged_total{model,version}` and `..._feedback_correct_total{model,version}`, so
  live accuracy over a window is `rate(correct) / rate(judged)`;
- `modelport_gateway_feedback_abs_error_total{model,version}` for a regression: the mean absolute error is
  `rate(abs_error) / rate(judged)`.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np
from prometheus_client import CollectorRegistry, Counter

import modelport
from gateway import problems
from gateway.catalogue import Endpoint

MAX_REQUEST_ID_CHARS = 64  # the gateway's own IDs are 32; a client's X-Request-ID at most 64 (gateway/accesslog.py)


@dataclass
class Judgeable:
    model: str
    version: str
    predictions: tuple[Union[str, float], ...]  # one per item
    labels: tuple[str, ...]  # what a label may be; () for a regression
    time: float
    judged: set[int] = field(default_factory=set)  # the items that have their feedback


def judged_output(endpoint: Endpoint) -> Optional[str]:
    """The output feedback is about: the first with labels, else the first with one value per item, else none."""
    labelled = [t.name for t in endpoint.outputs if t.labels]
    if labelled:
        return labelled[0]
    scalar = [t.name for t in endpoint.outputs if int(np.prod(t.dims or (1,))) == 1]
    return scalar[0] if scalar else None


class FeedbackIndex:
    def __init__(self, size: int, registry: CollectorRegistry):
        self.size = size
        self._entries: OrderedDict[str, Judgeable] = OrderedDict()
        self.judged = Counter("modelport_gateway_feedback_judged_total",
                              "Predictions judged by feedback, by model and version", ["model", "version"],
                              registry=registry)
        self.correct = Counter("modelport_gateway_feedback_correct_total",
                               "Judged predictions whose top-1 label was the true one", ["model", "version"],
                               registry=registry)
        self.abs_error = Counter("modelport_gateway_feedback_abs_error",
                                 "Sum of |predicted - true| over judged regression predictions", ["model", "version"],
                                 registry=registry)

    def __len__(self) -> int:
        return len(self._entries)

    def remember(self, request_id: str, endpoint: Endpoint, version: str,
                 outputs: Sequence[modelport.ModelOutput]) -> None:
        name = judged_output(endpoint)
        # a model with nothing to judge is remembered too, so that its feedback is told why, not "unknown"
        values = () if name is None else tuple(o[name].label if isinstance(o[name], modelport.Prediction)
                                               else float(np.asarray(o[name]).ravel()[0]) for o in outputs)
        labels = next((t.labels for t in endpoint.outputs if t.name == name), ())
        self._entries[request_id] = Judgeable(endpoint.name, version, values, labels, time.time())
        self._entries.move_to_end(request_id)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def model_of(self, request_id: object) -> Optional[str]:
        entry = self._entries.get(request_id) if isinstance(request_id, str) else None
        return entry.model if entry is not None else None

    def judge(self, document: object) -> dict:
        """Apply one feedback document; returns what was judged. Problems name the field and the fix."""
        if not isinstance(document, dict):
            raise problems.InvalidInput("feedback is a JSON object: {\"request_id\": ..., \"label\": ...} (or "
                                        "\"value\" for a regression)", field="/")
        unknown = set(document) - {"request_id", "label", "value", "item"}
        if unknown:
            raise problems.InvalidInput(f"unknown field(s) {', '.join(sorted(map(str, unknown)))}: feedback takes "
                                        f"request_id, label or value, and item", field=f"/{sorted(unknown)[0]}")
        request_id = document.get("request_id")
        if not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_REQUEST_ID_CHARS:
            raise problems.InvalidInput("request_id must be the X-Request-ID of a predict answer (a string of 1..64 "
                                        "characters)", field="/request_id")
        entry = self._entries.get(request_id)
        if entry is None:
            raise problems.NotFound(f"no recent prediction has request ID {request_id!r}: it is unknown, or older "
                                    f"than the last {self.size} predictions this gateway remembers",
                                    fix="send feedback with the X-Request-ID of a recent predict answer, sooner")
        if not entry.predictions:
            raise problems.InvalidInput(f"{entry.model} has no output feedback can judge (no labels, and more than "
                                        f"one value per item)", field="/request_id",
                                        fix="send feedback on the predictions of a classifier or a regression")
        item = document.get("item", 0)
        if not isinstance(item, int) or isinstance(item, bool) or not 0 <= item < len(entry.predictions):
            raise problems.InvalidInput(f"item must be the index of an item of that request, 0..."
                                        f"{len(entry.predictions) - 1}", field="/item")
        if item in entry.judged:
            raise problems.NotFound(f"item {item} of request ID {request_id!r} already has its feedback: each "
                                    f"prediction is judged once", fix="send one feedback per predicted item")
        predicted = entry.predictions[item]
        if entry.labels:
            truth = document.get("label")
            if not isinstance(truth, str) or truth not in entry.labels:
                shown = ", ".join(entry.labels[:20]) + (", ..." if len(entry.labels) > 20 else "")
                raise problems.InvalidInput(f"label must be one of {entry.model}'s labels ({shown}), got "
                                            f"{str(truth)[:64]!r}", field="/label",
                                            fix=f"GET /v1/models/{entry.model} lists its labels")
            correct = predicted == truth
        else:
            truth = document.get("value")
            if not isinstance(truth, (int, float)) or isinstance(truth, bool) or not math.isfinite(truth):
                raise problems.InvalidInput(f"{entry.model} predicts a number: send its true \"value\" (a finite "
                                            f"number)", field="/value")
            correct = None
            self.abs_error.labels(entry.model, entry.version).inc(abs(float(predicted) - float(truth)))
        entry.judged.add(item)
        self.judged.labels(entry.model, entry.version).inc()
        if correct:
            self.correct.labels(entry.model, entry.version).inc()
        elif correct is False:
            self.correct.labels(entry.model, entry.version)  # the series exists from the first judgement on
        return {"request_id": request_id, "model": entry.model, "version": entry.version, "item": item,
                "predicted": predicted, "correct": correct}
