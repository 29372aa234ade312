"""Triton's side of a run: counters scraped from the Prometheus metrics endpoint before and after, as deltas per model.

Triton counts, per model, requests (nv_inference_request_success), inferences (nv_inference_count: samples, a batch of
8 counts 8) and executions (nv_inference_exec_count: one per batch the scheduler formed), plus cumulative queue and
compute microseconds summed over requests. The deltas tell what the dynamic batcher did under the load:
average batch formed = inferences / executions. https://github.com/triton-inference-server/server/blob/main/docs/user_guide/metrics.md
"""

from __future__ import annotations

import re
import urllib.request
from dataclasses import dataclass, fields

from core.spec import ModelSpec, Spec

# metric name in Triton -> field of ModelCounters
_METRICS = {
    "nv_inference_request_success": "request_success",
    "nv_inference_request_failure": "request_failure",
    "nv_inference_count": "inference_count",
    "nv_inference_exec_count": "exec_count",
    "nv_inference_queue_duration_us": "queue_us",
    "nv_inference_compute_infer_duration_us": "compute_infer_us",
}
_LINE = re.compile(r'^(?P<metric>nv_[a-z_]+)\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)$')
_MODEL_LABEL = re.compile(r'model="(?P<model>[^"]+)"')


@dataclass(frozen=True)
class ModelCounters:
    request_success: float = 0.0
    request_failure: float = 0.0
    inference_count: float = 0.0
    exec_count: float = 0.0
    queue_us: float = 0.0
    compute_infer_us: float = 0.0

    def __sub__(self, other: ModelCounters) -> ModelCounters:
        return ModelCounters(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)})

    def __add__(self, other: ModelCounters) -> ModelCounters:
        return ModelCounters(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})


@dataclass(frozen=True)
class ModelActivity:
    """What one model did between two scrapes."""

    model: str
    requests: int
    failures: int
    inferences: int
    executions: int

    avg_batch: float
    queue_us_per_request: float
    compute_us_per_request: float

    @classmethod
    def from_delta(cls, model: str, delta: ModelCounters) -> ModelActivity:
        requests = int(delta.request_success)
        return cls(
            model=model,
            requests=requests,
            failures=int(delta.request_failure),
            inferences=int(delta.inference_count),
            executions=int(delta.exec_count),
            avg_batch=delta.inference_count / delta.exec_count if delta.exec_count else 0.0,
            queue_us_per_request=delta.queue_us / requests if requests else 0.0,
            compute_us_per_request=delta.compute_infer_us / requests if requests else 0.0,
        )


def onnx_steps(spec: Spec, model: ModelSpec) -> list[str]:
    return [s.model for s in model.source.steps
            if spec.model(s.model) is not None and spec.model(s.model).kind == "onnx"]


def batching_model(spec: Spec, name: str) -> str:
    """The model whose executions show the batch formed: for an ensemble, its (first) ONNX step."""
    model = spec.model(name)
    if model is not None and model.kind == "ensemble":
        return next(iter(onnx_steps(spec, model)), name)
    return name


def parse(text: str) -> dict[str, ModelCounters]:
    """Counters per model (summed over versions) from Prometheus text exposition."""
    per_model: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if not match or match["metric"] not in _METRICS:
            continue
        model = _MODEL_LABEL.search(match["labels"])
        if not model:
            continue
        values = per_model.setdefault(model["model"], {})
        key = _METRICS[match["metric"]]
        values[key] = values.get(key, 0.0) + float(match["value"])
    return {model: ModelCounters(**values) for model, values in per_model.items()}


def metrics_endpoint(url: str) -> str:
    """Accept "host:port", "http://host:port" or the full ".../metrics" address."""
    if not url.startswith(("http://", "https://")):
        url = "http://" + url
    return url if url.rstrip("/").endswith("/metrics") else url.rstrip("/") + "/metrics"


def scrape(url: str, timeout_s: float = 5.0) -> dict[str, ModelCounters]:
    with urllib.request.urlopen(metrics_endpoint(url), timeout=timeout_s) as response:
        return parse(response.read().decode("utf-8"))


def activity(before: dict[str, ModelCounters], after: dict[str, ModelCounters]) -> list[ModelActivity]:
    """Per model that served requests in between, sorted by name."""
    rows = []
    for model in sorted(after):
        delta = after[model] - before.get(model, ModelCounters())
        if delta.request_success or delta.request_failure:
            rows.append(ModelActivity.from_delta(model, delta))
    return rows


def format_activity(rows: list[ModelActivity]) -> str:
    lines = [
        "| model | requests | failures | executions | avg batch formed | queue µs/request | compute µs/request |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.model} | {row.requests} | {row.failures} | {row.executions} | {row.avg_batch:.2f} "
            f"| {row.queue_us_per_request:.0f} | {row.compute_us_per_request:.0f} |"
        )
    if not rows:
        lines.append("| (no model served requests) | | | | | | |")
    return "\n".join(lines)
