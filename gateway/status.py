"""What the web page reads besides predictions: each model's form (GET /v1/forms) and the gateway's own counters per
model (GET /v1/status).

A form says, per input, which widget takes it: `image-file` (an encoded image the model decodes: upload or draw),
`text`, `pixels` (a numeric image: upload or draw, sent as pixel values 0..255), `numbers` (one field per value, or a
CSV row) or `json` (a nested list), with an example item from the model's held-out data or samples when it has them.

The status is cumulative (counts since the gateway started, the latency histogram's buckets, drift now): the page
differences two snapshots for req/s, errors/s and p50/p99 over the interval between them, so that the gateway keeps
no history and a snapshot costs one pass over its own metrics.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import numpy as np

from core.spec import Spec, Tensor
from gateway.catalogue import Endpoint
from gateway.explaining import decoding_of, is_image
from gateway.metrics import LATENCY_BUCKETS, GatewayMetrics
from gateway.shedding import ModelGate

MAX_FIELDS = 32  # inputs with more values than this take a JSON list instead of one field per value


def widget(tensor: Tensor, decodes_image: bool) -> str:
    if tensor.dtype == "TYPE_STRING":
        return "image-file" if decodes_image else "text"
    if is_image(tensor):
        return "pixels"
    if -1 not in tensor.dims and math.prod(tensor.dims) <= MAX_FIELDS:
        return "numbers"
    return "json"


def _example_texts(samples: Optional[Path]) -> Optional[str]:
    if samples is None or not samples.is_file():
        return None
    with open(samples, encoding="utf-8", errors="replace") as lines:
        return next((line.strip() for line in lines if line.strip()), None)


def _example_items(endpoint: Endpoint, wanted: list[Tensor]) -> dict[str, Any]:
    """The first held-out item of each numeric input: npz keys by input name, or `x` for a single input."""
    source = endpoint.spec.onnx.heldout if endpoint.spec.onnx is not None else None
    if source is None or not Path(source).is_file() or not wanted:
        return {}
    found = {}
    with np.load(source, allow_pickle=False) as heldout:
        for tensor in wanted:
            key = tensor.name if tensor.name in heldout.files else "x" if len(endpoint.inputs) == 1 else None
            if key in heldout.files and heldout[key].shape[1:] == tensor.dims:
                found[tensor.name] = heldout[key][0].tolist()
    return found


def form(endpoint: Endpoint, spec: Spec) -> dict:
    """GET /v1/models/<name>'s description, with each input's widget and an example item."""
    decodes_image = decoding_of(endpoint, spec) is not None
    widgets = {t.name: widget(t, decodes_image) for t in endpoint.inputs}
    examples = _example_items(endpoint, [t for t in endpoint.inputs if widgets[t.name] in ("numbers", "json")])
    text = _example_texts(endpoint.spec.samples) if "text" in widgets.values() else None
    described = endpoint.describe()
    for entry in described["inputs"]:
        entry["widget"] = widgets[entry["name"]]
        example = text if entry["widget"] == "text" else examples.get(entry["name"])
        if example is not None:
            entry["example"] = example
    described["explain"] = f"/v1/models/{endpoint.name}:explain"
    return described


def _samples(metric) -> Iterable:
    for family in metric.collect():
        yield from family.samples


def snapshot(metrics: GatewayMetrics, gates: Mapping[str, ModelGate], models: Iterable[str],
             rollout: Optional[Callable[[str], dict]] = None) -> dict:
    """Per model: predict requests and errors (status >= 400) so far, the latency histogram's cumulative bucket
    counts (over every status and version), requests in flight, each labelled output's drift (PSI; null until
    enough), and with `rollout` its versions (stable, canary, and the canary's mode and share)."""
    models = list(models)
    wanted = set(models)
    buckets = [*LATENCY_BUCKETS, math.inf]
    found = {m: {"requests": 0, "errors": 0, "buckets": [0] * len(buckets), "in_flight": 0, "drift": {}}
             for m in wanted}
    index = {bound: i for i, bound in enumerate(buckets)}
    for sample in _samples(metrics.requests):
        entry = found.get(sample.labels.get("model"))
        if entry is None:
            continue
        if sample.name.endswith("_count"):
            entry["requests"] += int(sample.value)
            if int(sample.labels["status"]) >= 400:
                entry["errors"] += int(sample.value)
        elif sample.name.endswith("_bucket"):
            entry["buckets"][index[float(sample.labels["le"])]] += int(sample.value)
    for (model, output), monitor in metrics.monitors.items():
        if model in found:
            value = monitor.value()
            found[model]["drift"][output] = None if math.isnan(value) else round(value, 4)
    for name, gate in gates.items():
        if name in found:
            found[name]["in_flight"] = gate.in_flight
    if rollout is not None:
        for name in found:
            found[name]["rollout"] = rollout(name)
    return {"time": time.time(), "buckets": [b if math.isfinite(b) else None for b in buckets],
            "models": [{"name": m, **found[m]} for m in models if m in wanted]}
