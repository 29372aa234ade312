"""The parity gate: every variant against the source model on held-out data, at batch sizes other than the export's.

All checks run before anything is judged, so one ParityError lists every failing tensor with its measured difference
and its tolerance.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from export.dataset import Dataset
from export.errors import GateFailure, ParityError
from export.spec import ModelSpec, variant_model_name

LATENCY_BATCH_SIZES = (1, 8, 32)
LATENCY_RUNS = 200


@dataclass(frozen=True)
class VariantReport:
    variant: str
    triton_name: str
    max_abs_diff: dict[int, float]  # batch size -> max |variant - source| over every output element
    argmax_agreement: float  # fraction of held-out samples whose top class matches the source's
    accuracy: float  # held-out accuracy of the variant
    source_accuracy: float
    passed: bool


def session(model_bytes: bytes, threads: int = 1) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def run_onnx(model_bytes: bytes | ort.InferenceSession, inputs: dict[str, np.ndarray], batch_size: int,
             output_names: list[str] | None) -> dict[str, np.ndarray]:
    """Run inputs through the model in chunks of batch_size; outputs concatenated back, keyed by output name."""
    sess = model_bytes if isinstance(model_bytes, ort.InferenceSession) else session(model_bytes)
    names = output_names or [o.name for o in sess.get_outputs()]
    n = len(next(iter(inputs.values())))
    chunks = [sess.run(names, {k: v[i:i + batch_size] for k, v in inputs.items()}) for i in range(0, n, batch_size)]
    return {name: np.concatenate([c[j] for c in chunks]) for j, name in enumerate(names)}


def _accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(outputs.reshape(len(outputs), -1).argmax(axis=1) == labels))


def check_variant(model: ModelSpec, variant: str, model_bytes: bytes, heldout: Dataset,
                  reference: dict[str, np.ndarray]) -> tuple[VariantReport, list[GateFailure]]:
    gate = model.onnx.gate
    sess = session(model_bytes)
    names = [t.name for t in model.outputs]
    first = names[0]
    tolerance = gate.fp16_max_abs_diff if variant == "fp16" else gate.fp32_max_abs_diff
    failures: list[GateFailure] = []
    diffs: dict[int, float] = {}
    outputs: dict[str, np.ndarray] = {}
    for bs in sorted({1, 7, model.max_batch_size}):
        outputs = heldout.map(lambda x: run_onnx(sess, x, bs, names))  # noqa: B023 (called at once)
        worst = 0.0
        for name in names:
            d = float(np.max(np.abs(outputs[name].astype(np.float64) - reference[name].astype(np.float64))))
            worst = max(worst, d)
            if variant != "int8" and d > tolerance:
                failures.append(GateFailure(variant, name, "max |diff|", d, tolerance, bs))
        diffs[bs] = worst
    flat = lambda a: a.reshape(len(a), -1).argmax(axis=1)  # noqa: E731
    agreement = float(np.mean(flat(outputs[first]) == flat(reference[first])))
    source_accuracy = _accuracy(reference[first], heldout.y)
    accuracy = _accuracy(outputs[first], heldout.y)
    if variant == "fp32" and agreement < gate.fp32_min_argmax_agreement:
        failures.append(GateFailure(variant, first, "argmax agreement", agreement, gate.fp32_min_argmax_agreement))
    if variant == "int8":
        drop = (source_accuracy - accuracy) * 100
        if drop > gate.int8_max_accuracy_drop:
            failures.append(GateFailure(variant, first, "accuracy drop (points)", drop, gate.int8_max_accuracy_drop))
    report = VariantReport(variant, variant_model_name(model.name, variant), diffs, agreement, accuracy,
                           source_accuracy, not failures)
    return report, failures


def check(model: ModelSpec, variants: dict[str, bytes], heldout: Dataset,
          reference: dict[str, np.ndarray]) -> tuple[list[VariantReport], list[GateFailure]]:
    """Check every variant: the reports, and every failure of every variant."""
    reports, failures = [], []
    for variant, model_bytes in variants.items():
        report, failed = check_variant(model, variant, model_bytes, heldout, reference)
        reports.append(report)
        failures += failed
    return reports, failures


def gate(model: ModelSpec, variants: dict[str, bytes], heldout: Dataset,
         reference: dict[str, np.ndarray]) -> list[VariantReport]:
    """Check every variant; raise one ParityError listing all failures, or return the reports."""
    reports, failures = check(model, variants, heldout, reference)
    if failures:
        raise ParityError(model.name, failures)
    return reports


def latency_us(model: ModelSpec, model_bytes: bytes, heldout: Dataset) -> dict[int, dict[str, float]]:
    """In-process ONNX Runtime latency (median and p99, µs) per batch size, with the spec's thread count."""
    sess = session(model_bytes, threads=max(1, model.intra_op_thread_count))
    out: dict[int, dict[str, float]] = {}
    for bs in (b for b in LATENCY_BATCH_SIZES if b <= model.max_batch_size):
        rows = heldout.commonest()  # one shape: inputs with variable dims at their commonest size
        reps = -(-bs // len(next(iter(rows.values()))))
        feed = {k: np.concatenate([v] * reps)[:bs] for k, v in rows.items()}
        for _ in range(10):
            sess.run(None, feed)
        times = []
        for _ in range(LATENCY_RUNS):
            t = time.perf_counter_ns()
            sess.run(None, feed)
            times.append((time.perf_counter_ns() - t) / 1000)
        out[bs] = {"p50": round(float(np.percentile(times, 50)), 1), "p99": round(float(np.percentile(times, 99)), 1)}
    return out
