"""The parity gate: every output of every variant against the source model on held-out data, at batch sizes other
than the export's, judged by what the output predicts (docs/export-gate.md):

    classification  (labels, or class ids in y)  max |diff| of the probabilities, top-1 agreement; int8: accuracy drop
    multilabel      (sigmoid, multi-hot y)        max |diff|, agreement of every label's decision at the threshold;
                                                  int8: micro-F1 drop
    regression      (unlabelled, float y)         max |diff| over the source output's p1-p99 range, mean relative error

The task's own metric against the held-out targets (accuracy, micro-F1, MAE and R²) is reported for the source and each
variant. Inputs with variable dims run in groups of equal shape, each row at its true size (Dataset.map), and the
outputs, fixed-size, are judged row by row like any other. An output the gate cannot judge fails with the reason. All
checks run before anything is judged, so one ParityError lists every failing tensor with its measured figure and its
tolerance.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from core.errors import GateFailure, ParityError
from core.heldout import Dataset
from core.spec import Gate, ModelSpec, Tensor, variant_model_name
from tritonmodels.onnxruntime_session import ort_session, threads_config

LATENCY_BATCH_SIZES = (1, 8, 32)
LATENCY_RUNS = 200
ROW_SUM_TOLERANCE = 1e-3  # softmax rows sum to 1 within float round-off; independent sigmoids do not

# Per task: (the check's name, its figure, whether the figure is a "max" or a "min", its Gate tolerance without the
# variant prefix, whether a failure is reported at every batch size or once at the worst).
CHECKS = {
    "classification": (("max |diff|", "max_abs_diff", "max", "max_abs_diff", True),
                        ("argmax agreement", "argmax_agreement", "min", "min_agreement", False),
                        ("accuracy drop (points)", "accuracy_drop", "max", "max_accuracy_drop", False)),
    "multilabel": (("max |diff|", "max_abs_diff", "max", "max_abs_diff", True),
                   ("label agreement (worst label)", "label_agreement", "min", "min_agreement", False),
                   ("micro-F1 drop (points)", "micro_f1_drop", "max", "max_accuracy_drop", False)),
    "regression": (("range error (max |diff| / source p1-p99 range)", "range_error", "max", "max_range_error", True),
                   ("mean relative error", "mean_relative_error", "max", "max_mean_relative_error", False)),
}
# Which checks each variant gets: fp32 and fp16 are compared closely; int8 and pruned by decisions and the task's
# metric.
VARIANT_CHECKS = {"fp32": ("max_abs_diff", "min_agreement", "max_range_error", "max_mean_relative_error"),
                  "fp16": ("max_abs_diff", "min_agreement", "max_range_error", "max_mean_relative_error"),
                  "int8": ("min_agreement", "max_accuracy_drop", "max_range_error", "max_mean_relative_error"),
                  "pruned": ("min_agreement", "max_accuracy_drop", "max_range_error", "max_mean_relative_error"),
                  "pruned_int8": ("min_agreement", "max_accuracy_drop", "max_range_error", "max_mean_relative_error")}


@dataclass(frozen=True)
class OutputReport:
    """One output of one variant: its task and figures (`figures`), the source's metric as source_<name>."""

    name: str
    task: str
    figures: dict[str, float]
    targets: bool  # whether the held-out set has targets for it (the task's metric is then reported)
    reason: str = ""  # why it cannot be judged, when it cannot


@dataclass(frozen=True)
class VariantReport:
    variant: str
    triton_name: str
    max_abs_diff: dict[int, float]  # batch size -> max |variant - source| over every output element
    argmax_agreement: float | None  # the first classification output's top-1 agreement with the source
    accuracy: float | None  # held-out accuracy of the variant on the first classification output with targets
    source_accuracy: float | None
    passed: bool
    outputs: tuple[OutputReport, ...] = ()
    severity: float = 0.0  # the worst measured / allowed ratio over every check: <= 1 passes (ranks int8 recipes)
    accuracy_drop: float | None = None  # points, on the output `accuracy` is of

    def summary(self) -> str:
        """One line of the figures the gate judged, output by output."""
        return "; ".join(f"{o.name}: {_describe(o)}" for o in self.outputs)


def _describe(o: OutputReport) -> str:
    f = o.figures
    if o.reason:
        return f"cannot be judged ({o.reason})"
    if o.task == "regression":
        text = f"range error {f['range_error']:.2e}, mean relative error {f['mean_relative_error']:.2e}"
        if o.targets:
            text += f", MAE {f['mae']:.4g} (source {f['source_mae']:.4g}), R² {f['r2']:.4f} (source {f['source_r2']:.4f})"
        return text
    agreement, metric = (("argmax agreement", "accuracy") if o.task == "classification"
                         else ("label agreement", "micro_f1"))
    text = f"{agreement} {f[agreement.replace(' ', '_')]:.2%}, max |diff| {f['max_abs_diff']:.2e}"
    if o.targets:
        label = "accuracy" if metric == "accuracy" else "micro-F1"
        text = f"{label} {f[metric]:.2%} (source {f['source_' + metric]:.2%}), " + text
    return text


def session(model_bytes: bytes, threads: int = 1) -> ort.InferenceSession:
    return ort_session(threads_config(threads), model_bytes)


def run_onnx(model_bytes: bytes | ort.InferenceSession, inputs: dict[str, np.ndarray], batch_size: int,
             output_names: list[str] | None) -> dict[str, np.ndarray]:
    """Run inputs through the model in chunks of batch_size; outputs concatenated back, keyed by output name."""
    sess = model_bytes if isinstance(model_bytes, ort.InferenceSession) else session(model_bytes)
    names = output_names or [o.name for o in sess.get_outputs()]
    n = len(next(iter(inputs.values())))
    chunks = [sess.run(names, {k: v[i:i + batch_size] for k, v in inputs.items()}) for i in range(0, n, batch_size)]
    return {name: np.concatenate([c[j] for c in chunks]) for j, name in enumerate(names)}


# ---- what an output predicts -----------------------------------------------------------------------------------

def _rows(a: np.ndarray) -> np.ndarray:
    return a.reshape(len(a), -1)


def task_of(t: Tensor, source: np.ndarray, y: np.ndarray | None) -> str:
    """The spec's `task`, else what the targets say (class ids, multi-hot rows, floats), else the labels (and for
    labelled scores without targets, whether rows sum to 1), else regression."""
    if t.task:
        return t.task
    width = _rows(source).shape[1]
    if y is not None:
        columns = _rows(y).shape[1]
        if y.dtype.kind == "i" and columns == 1 and width > 1:
            return "classification"
        # multi-hot rows: integers, or floats of 0 and 1 for a labelled output (unlabelled floats are values)
        if columns == width and np.isin(y, (0, 1)).all() and (t.labels or (y.dtype.kind == "i" and width > 1)):
            return "multilabel"
        if t.labels and columns == 1 and width > 1:
            return "classification"  # class ids saved as floats: _targets says whether they are whole
        return "regression"
    if not t.labels:
        return "regression"
    scores = _rows(source).astype(np.float64)
    in_unit = np.all((scores >= 0) & (scores <= 1))
    if width == 1 or (in_unit and not np.allclose(scores.sum(axis=1), 1, atol=ROW_SUM_TOLERANCE)):
        return "multilabel"
    return "classification"


def _targets(task: str, source: np.ndarray, y: np.ndarray) -> tuple[np.ndarray | None, str]:
    """The targets in the form the task needs, or a reason they do not fit it."""
    width, columns = _rows(source).shape[1], _rows(y).shape[1]
    if task == "classification":
        ids = _rows(y)[:, 0] if columns == 1 else None
        if ids is None or not np.all(np.isfinite(ids)) or not np.all(ids == np.round(ids)):
            return None, (f"its held-out targets have shape {list(y.shape)}; classification needs one class id per "
                          f"row (y as [N] integers)")
        ids = ids.astype(np.int64)
        if ids.min() < 0 or ids.max() >= width:
            return None, f"its held-out class ids run from {ids.min()} to {ids.max()}; the output has {width} classes"
        return ids, ""
    if task == "multilabel":
        if columns != width or not np.isin(y, (0, 1)).all():
            return None, (f"its held-out targets have shape {list(y.shape)}; multi-label needs multi-hot rows of 0 and 1, "
                          f"[N, {width}]")
        return _rows(y).astype(np.int64), ""
    if columns != width:
        return None, f"its held-out targets have shape {list(y.shape)}; the output has {width} value(s) per row"
    return _rows(y).astype(np.float64), ""


def _cannot_judge(task: str, source: np.ndarray) -> str:
    if source.dtype.kind not in "biuf":
        return f"its values are {source.dtype}, not numbers"
    if not np.all(np.isfinite(source)):
        return "the source model's own output holds NaN or infinity on the held-out data"
    if task == "classification" and _rows(source).shape[1] < 2:
        return ("top-1 over a single column means nothing; set `task = \"multilabel\"` (one sigmoid) or "
                "`task = \"regression\"` on the [[model.output]]")
    if task == "regression" and _scale(source) == 0:
        return "the source model's output is 0 on every held-out row, so no error can be relative to it"
    return ""


def _scale(source: np.ndarray) -> float:
    """The output's scale: its p1-p99 range on the held-out data, or its largest magnitude when that range is 0."""
    values = source.astype(np.float64).ravel()
    low, high = np.percentile(values, [1, 99])
    return float(high - low) or float(np.max(np.abs(values)))


# ---- figures ---------------------------------------------------------------------------------------------------

def _micro_f1(decisions: np.ndarray, truth: np.ndarray) -> float:
    tp = int(np.sum(decisions & (truth == 1)))
    fp, fn = int(np.sum(decisions & (truth == 0))), int(np.sum(~decisions & (truth == 1)))
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def _r2(pred: np.ndarray, truth: np.ndarray) -> float:
    total = float(np.sum((truth - truth.mean(axis=0)) ** 2))
    return 1.0 - float(np.sum((pred - truth) ** 2)) / total if total else float("nan")


def figures(task: str, out: np.ndarray, ref: np.ndarray, y: np.ndarray | None, threshold: float) -> dict[str, float]:
    """The output's figures against the source's outputs (and the targets when there are any)."""
    out, ref = _rows(out).astype(np.float64), _rows(ref).astype(np.float64)
    diff = np.abs(out - ref)
    finite = bool(np.all(np.isfinite(out)))
    f = {"max_abs_diff": float(np.max(diff)) if finite else math.inf}
    if task == "classification":
        top, ref_top = out.argmax(axis=1), ref.argmax(axis=1)
        f["argmax_agreement"] = float(np.mean(top == ref_top)) if finite else 0.0
        if y is not None:
            f["accuracy"], f["source_accuracy"] = float(np.mean(top == y)), float(np.mean(ref_top == y))
            f["accuracy_drop"] = (f["source_accuracy"] - f["accuracy"]) * 100 if finite else math.inf
    elif task == "multilabel":
        decided, ref_decided = out >= threshold, ref >= threshold
        f["label_agreement"] = float(np.min(np.mean(decided == ref_decided, axis=0))) if finite else 0.0
        if y is not None:
            f["micro_f1"], f["source_micro_f1"] = _micro_f1(decided, y), _micro_f1(ref_decided, y)
            f["micro_f1_drop"] = (f["source_micro_f1"] - f["micro_f1"]) * 100 if finite else math.inf
    else:
        f["range_error"] = f["max_abs_diff"] / _scale(ref)
        magnitude = float(np.mean(np.abs(ref))) or _scale(ref)
        f["mean_relative_error"] = float(np.mean(diff)) / magnitude if finite else math.inf
        if y is not None:
            f["mae"], f["source_mae"] = float(np.mean(np.abs(out - y))), float(np.mean(np.abs(ref - y)))
            f["r2"], f["source_r2"] = _r2(out, y), _r2(ref, y)
    return f


def _tolerance(variant: str, tolerance: str) -> str:
    """The Gate field of a variant's tolerance; fp32's agreement keeps its older name; pruned_int8 is held to int8's
    (its pruning and its quantization share that one allowance)."""
    variant = "int8" if variant == "pruned_int8" else variant
    return "fp32_min_argmax_agreement" if (variant, tolerance) == ("fp32", "min_agreement") else f"{variant}_{tolerance}"


def _ratio(measured: float, limit: float, kind: str) -> float:
    """How far a figure is from its limit: <= 1 passes."""
    excess, room = (measured, limit) if kind == "max" else (1 - measured, 1 - limit)
    if not math.isfinite(excess) or excess > room:
        return math.inf if room == 0 or not math.isfinite(excess) else excess / room
    return excess / room if room else 0.0


# ---- the gate ----------------------------------------------------------------------------------------------------

def check_variant(model: ModelSpec, variant: str, model_bytes: bytes, heldout: Dataset,
                  reference: dict[str, np.ndarray]) -> tuple[VariantReport, list[GateFailure]]:
    gate: Gate = model.source.onnx.gate
    names = [t.name for t in model.outputs]
    step = "loading in ONNX Runtime"
    try:  # a variant ONNX Runtime cannot load or run is a gate failure of its own, never a traceback
        sess = session(model_bytes)
        step = "running in ONNX Runtime"
        # inputs with variable dims run in groups of equal shape; the (fixed-size) outputs come back in sample order
        runs = {bs: heldout.map(lambda x: run_onnx(sess, x, bs, names))  # noqa: B023 (called at once)
                for bs in sorted({1, 7, model.batching.max_batch_size})}
    except Exception as e:  # onnxruntime's pybind exceptions (Fail, InvalidGraph, ...) share no base but Exception
        failure = conversion_failure(model, variant, step, e)
        return VariantReport(variant, variant_model_name(model.name, variant), {}, None, None, None, False,
                             severity=math.inf), [failure]
    failures: list[GateFailure] = []
    reports: list[OutputReport] = []
    severity = 0.0
    # a Dataset built with `y` alone holds the first output's targets
    targets = heldout.targets or ({names[0]: heldout.y} if heldout.y is not None else {})
    for t in model.outputs:
        ref, raw_y = reference[t.name], targets.get(t.name)
        task = task_of(t, ref, raw_y)
        reason = _cannot_judge(task, ref)
        y = None
        if not reason and raw_y is not None:
            y, reason = _targets(task, ref, raw_y)
        if reason:
            failures.append(GateFailure(variant, t.name, "cannot be judged", math.nan, math.nan, reason=reason))
            reports.append(OutputReport(t.name, task, {}, raw_y is not None, reason))
            severity = math.inf
            continue
        threshold = gate.limit(t.name, "multilabel_threshold")
        per_batch = {bs: figures(task, outs[t.name], ref, y, threshold) for bs, outs in runs.items()}
        worst: dict[str, float] = {}
        for label, figure, kind, tolerance, each_batch in CHECKS[task]:
            if tolerance not in VARIANT_CHECKS[variant] or figure not in per_batch[min(per_batch)]:
                continue
            limit = gate.limit(t.name, _tolerance(variant, tolerance))
            values = {bs: f[figure] for bs, f in per_batch.items()}
            for bs, value in values.items():
                severity = max(severity, _ratio(value, limit, kind))
            failed = {bs: v for bs, v in values.items() if _ratio(v, limit, kind) > 1}
            if each_batch:
                failures += [GateFailure(variant, t.name, label, v, limit, bs) for bs, v in failed.items()]
            elif failed:
                value = max(failed.values()) if kind == "max" else min(failed.values())
                failures.append(GateFailure(variant, t.name, label, value, limit))
        for f in per_batch.values():
            for k, v in f.items():
                worse = max if not k.endswith(("agreement", "accuracy", "micro_f1", "r2")) else min
                worst[k] = worse(worst.get(k, v), v) if not k.startswith("source_") else v
        reports.append(OutputReport(t.name, task, worst, y is not None))
    numeric = [n for n in names if reference[n].dtype.kind in "biuf" and _numeric(runs, n)]
    diffs = {bs: max((float(np.max(np.abs(_rows(outs[n]).astype(np.float64) - _rows(reference[n]))))
                      for n in numeric), default=0.0) for bs, outs in runs.items()}
    first = next((o for o in reports if o.task == "classification" and not o.reason), None)
    scored = next((o for o in reports if o.task == "classification" and o.targets and not o.reason), None)
    report = VariantReport(variant, variant_model_name(model.name, variant), diffs,
                           first.figures["argmax_agreement"] if first else None,
                           scored.figures["accuracy"] if scored else None,
                           scored.figures["source_accuracy"] if scored else None, not failures, tuple(reports),
                           severity, scored.figures["accuracy_drop"] if scored else None)
    return report, failures


def _numeric(runs: dict[int, dict[str, np.ndarray]], name: str) -> bool:
    return all(outs[name].dtype.kind in "biuf" for outs in runs.values())


def conversion_failure(model: ModelSpec, variant: str, step: str, error: Exception) -> GateFailure:
    """A variant that could not be built or loaded, as one gate failure: the variant, the step, the op."""
    text = " ".join(str(error).split())
    op = re.search(r"Op \((\w+)\)", text) or re.search(r"\bop(?:_type)?[ =:]+'?(\w+)", text, re.I)
    node = re.search(r"Node \(([^)]+)\)", text)
    where = f" at op {op.group(1)}" + (f" (node {node.group(1)})" if node else "") if op else ""
    detail = text[op.end():].strip(" :") if op and op.re.pattern.startswith("Op") else text  # said once, above
    detail = detail[:240] + ("..." if len(detail) > 240 else "")
    return GateFailure(variant, "", step, math.nan, math.nan,
                       reason=f"{variant_model_name(model.name, variant)}: {step} failed{where}: {detail}")


def brief(failures: list[GateFailure]) -> str:
    """The failures in one line: each output's check once, at its worst batch size."""
    worst: dict[tuple[str, str, str], GateFailure] = {}
    for f in failures:
        key = (f.variant, f.tensor, f.check)
        if key not in worst or abs(f.measured - f.tolerance) > abs(worst[key].measured - worst[key].tolerance):
            worst[key] = f
    return "; ".join(str(f) for f in worst.values())


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
    sess = session(model_bytes, threads=max(1, model.runtime.intra_op_thread_count))
    out: dict[int, dict[str, float]] = {}
    for bs in (b for b in LATENCY_BATCH_SIZES if b <= model.batching.max_batch_size):
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
