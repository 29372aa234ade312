"""Feedback from the load test: the true answer of each held-out row the gateway scenario sends, so that a share of
its predict requests can be followed by `POST /v1/feedback` `{request_id, label}` (or `value`), as a client that
learns the truth later would. The gateway then counts live accuracy per model and version (gateway/feedback.py), and
judges a canary on it (docs/lifecycle.md).

The truth is the held-out .npz's target of the output the gateway judges: its first output with labels (the label of
the class id), else its first output of one value per item (the number). Rows come in the order core/measure/
payloads.py sends them. A model whose requests come from `samples` (files, lines of text), or whose targets are not
one class id or one number per row, has no truth here: its requests get no feedback.
"""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np

from core.errors import ModelportError
from core.heldout import load_npz
from core.measure import payloads
from core.spec import Tensor

PATH = "/v1/feedback"
NAME = "feedback"  # the statistics row of every feedback request


def judged_output(outputs: tuple[Tensor, ...]) -> Tensor | None:
    """The output the gateway judges feedback on (gateway/feedback.py judged_output): the first with labels, else the
    first with one value per item."""
    labelled = [t for t in outputs if t.labels]
    if labelled:
        return labelled[0]
    return next((t for t in outputs if int(np.prod(t.dims)) == 1), None)


@lru_cache(maxsize=None)
def truths(target: payloads.Target) -> tuple[dict | None, ...]:
    """Per request of `payloads.samples(target)`, in order, the feedback fields for its one row ({"label": ...} or
    {"value": ...}), or None where the truth is not known."""
    count = len(payloads.samples(target))
    output = judged_output(target.model.outputs)
    if output is None or target.source is None or target.source[0] != "heldout":
        return (None,) * count
    try:
        targets = load_npz(target.model, target.source[1], with_labels=True).targets.get(output.name)
    except ModelportError:  # no targets in the file: the load test runs, without feedback
        return (None,) * count
    if targets is None or targets.ndim != 1:  # multi-hot rows: no single true label to send
        return (None,) * count
    if output.labels:
        return tuple({"label": output.labels[int(t)]} if 0 <= int(t) < len(output.labels) else None
                     for t in targets[:count])
    return tuple({"value": float(t)} for t in targets[:count])


def body(request_id: str, truth: dict) -> bytes:
    return json.dumps({"request_id": request_id, **truth}).encode("utf-8")


def response_error(status: int, content: bytes | None) -> str | None:
    """None for a judged feedback; else what was wrong, with the problem's detail."""
    if status == 200:
        return None
    text = (content or b"").decode("utf-8", "replace")
    try:
        document = json.loads(text)
        return f"HTTP {status} from {PATH}: {document.get('title')}: {document.get('detail')}"
    except (ValueError, AttributeError):
        return f"HTTP {status} from {PATH}: {text[:200]}"


def check_share(share: float) -> str | None:
    """None for a share the option takes; else why not."""
    if not 0.0 <= share <= 1.0:
        return f"--feedback-share {share:g}: a share of the predict requests between 0 and 1 (0.2 is one in five)"
    return None
