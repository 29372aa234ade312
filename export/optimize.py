"""FP32 ONNX -> the INT8 (static QDQ quantization) and FP16 variants. The parity gate judges them.

INT8 is a search: when the default recipe fails its judge (the gate), the other recipes `onnxruntime.quantization`
offers are tried in order, within a time budget, and the first that passes wins:

    minmax       MinMax calibration, per-channel weights (the default; per-channel is already part of it)
    entropy      Entropy calibration
    percentile   Percentile calibration (99.999th)
    compute-ops  only Conv, MatMul and Gemm quantized; inputs, normalization and activations stay float
    exclude-N    the default with the N nodes of largest measured error kept in float (N = 1, 2, 4, ...), the
                 error per node measured with onnxruntime.quantization.qdq_loss_debug on the calibration set

Every recipe is QDQ with symmetric int8 scales, the form TensorRT's explicit quantization imports.
"""

from __future__ import annotations

import contextlib
import io
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx

from core.heldout import Dataset
from export.progress import Log

CALIBRATION_BATCH = 32
COMPUTE_OPS = ("Conv", "MatMul", "Gemm")
DEFAULT_SEARCH_SECONDS = 120.0
MAX_EXCLUDED_FRACTION = 0.5  # an "int8" model with most of its nodes in float is not worth serving as int8
EXACT_DB = 100.0  # signal-to-quantization-noise ratios are capped here: float32 round-off alone is further above


@dataclass(frozen=True)
class Recipe:
    """One way to quantize: a calibration method, weight granularity, which op types, which nodes stay float."""

    name: str
    calibration: str = "MinMax"  # an onnxruntime.quantization.CalibrationMethod name
    per_channel: bool = True
    op_types: tuple[str, ...] = ()  # () = every op type onnxruntime quantizes
    exclude: tuple[str, ...] = ()  # node names kept in float

    def describe(self) -> str:
        parts = [f"{self.calibration} calibration", "per-channel" if self.per_channel else "per-tensor"]
        if self.op_types:
            parts.append(f"only {', '.join(self.op_types)}")
        if self.exclude:
            parts.append(f"{len(self.exclude)} node(s) in float: {', '.join(self.exclude)}")
        return ", ".join(parts)


DEFAULT = Recipe("minmax")
RECIPES = (DEFAULT, Recipe("entropy", calibration="Entropy"), Recipe("percentile", calibration="Percentile"),
           Recipe("compute-ops", op_types=COMPUTE_OPS))


@dataclass(frozen=True)
class Verdict:
    """The judge's answer on one quantized model: passed, its figure (lower is better) and a line for the log."""

    passed: bool
    figure: float
    text: str
    accuracy_drop: float | None = None  # points of held-out accuracy, for a model with a classification output


Judge = Callable[[bytes], Verdict]


@dataclass(frozen=True)
class Attempt:
    recipe: Recipe
    verdict: Verdict | None  # None when onnxruntime could not build the recipe (see error)
    seconds: float
    error: str = ""


@dataclass(frozen=True)
class Int8Search:
    attempts: tuple[Attempt, ...]
    proto: onnx.ModelProto | None  # the winning recipe's model; None when no recipe passed
    skipped: tuple[str, ...]  # recipes left untried because the time budget was spent
    budget_seconds: float

    @property
    def winner(self) -> Attempt | None:
        return next((a for a in self.attempts if a.verdict is not None and a.verdict.passed), None)

    @property
    def best(self) -> Attempt | None:
        judged = [a for a in self.attempts if a.verdict is not None]
        return min(judged, key=lambda a: a.verdict.figure) if judged else None


class _Reader:
    """Calibration batches for onnxruntime. Histogram methods (Entropy, Percentile) need batches of one size
    (microsoft/onnxruntime#18792): they get full batches only, the remainder dropped."""

    def __init__(self, calibration: Dataset, equal_batches: bool) -> None:
        n = len(calibration)
        stop = n - n % CALIBRATION_BATCH if equal_batches and n > CALIBRATION_BATCH else n
        self._batches = iter([{k: v[i:i + CALIBRATION_BATCH] for k, v in calibration.x.items()}
                              for i in range(0, stop, CALIBRATION_BATCH)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return iter(self.get_next, None)


def _prepare(fp32: onnx.ModelProto, tmp: Path) -> Path:
    """Shape inference and ORT's own fusions first, as onnxruntime.quantization recommends; every node named, so
    recipes can keep nodes in float by name."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, pre = tmp / "fp32.onnx", tmp / "pre.onnx"
    onnx.save(fp32, str(src))
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    proto = onnx.load(str(pre))
    taken = {n.name for n in proto.graph.node}
    for i, node in enumerate(proto.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"
            while node.name in taken:
                node.name += "_"
            taken.add(node.name)
    onnx.save(proto, str(pre))
    return pre


def _quantize(pre: Path, out: Path, calibration: Dataset, recipe: Recipe) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    method = CalibrationMethod[recipe.calibration]
    # onnxruntime prints calibration progress to stdout; the export's log says what is being done.
    with contextlib.redirect_stdout(io.StringIO()):
        quantize_static(str(pre), str(out), _Reader(calibration, method != CalibrationMethod.MinMax),
                        quant_format=QuantFormat.QDQ, per_channel=recipe.per_channel,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, calibrate_method=method,
                        op_types_to_quantize=list(recipe.op_types) or None,
                        nodes_to_exclude=list(recipe.exclude) or None,
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})


def quantize_int8(fp32: onnx.ModelProto, calibration: Dataset, recipe: Recipe = DEFAULT) -> onnx.ModelProto:
    """Static INT8 in QDQ form with symmetric scales, by one recipe."""
    with tempfile.TemporaryDirectory(prefix="modelport-int8-") as tmp:
        pre = _prepare(fp32, Path(tmp))
        _quantize(pre, Path(tmp, "int8.onnx"), calibration, recipe)
        return onnx.load(str(Path(tmp, "int8.onnx")))


def node_errors(pre: Path, qdq: Path, calibration: Dataset, tmp: Path) -> list[tuple[str, float]]:
    """(node name, dB of signal-to-quantization-noise the node loses), worst first, for the nodes that lose any.

    qdq_loss_debug records every float tensor of both models on the calibration set; a node's loss is the SQNR
    (float model vs quantized model) of its inputs minus that of its outputs, so the error it adds itself (the
    quantization of its inputs, weights and output) is charged to it, not the error it inherits."""
    from onnxruntime.quantization.qdq_loss_debug import (collect_activations,
                                                         compute_signal_to_quantization_noice_ratio,
                                                         modify_model_output_intermediate_tensors)

    activations = []
    for path in (pre, qdq):
        augmented = tmp / f"{path.stem}.augmented.onnx"
        modify_model_output_intermediate_tensors(str(path), str(augmented))
        activations.append(collect_activations(str(augmented), _Reader(calibration, equal_batches=False)))
    reference, quantized = activations
    sqnr = {name: min(EXACT_DB, compute_signal_to_quantization_noice_ratio(reference[name], quantized[name]))
            for name in reference if name in quantized}
    losses = []
    for node in onnx.load(str(pre)).graph.node:
        outputs = [sqnr[o] for o in node.output if o in sqnr]
        if not outputs:
            continue
        before = min((sqnr.get(i, EXACT_DB) for i in node.input if i in reference), default=EXACT_DB)
        loss = before - min(outputs)
        if loss > 0 and math.isfinite(loss):
            losses.append((node.name, loss))
    return sorted(losses, key=lambda item: -item[1])


def search_int8(fp32: onnx.ModelProto, calibration: Dataset, judge: Judge, log: Log,
                budget_seconds: float = DEFAULT_SEARCH_SECONDS) -> Int8Search:
    """Try the recipes in order until one passes the judge, or the budget is spent (the default always runs)."""
    start = time.perf_counter()
    attempts: list[Attempt] = []
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="modelport-int8-") as tmpdir:
        tmp = Path(tmpdir)
        pre = _prepare(fp32, tmp)

        def attempt(recipe: Recipe) -> onnx.ModelProto | None:
            if attempts and time.perf_counter() - start > budget_seconds:
                skipped.append(recipe.name)
                return None
            began = time.perf_counter()
            out = tmp / f"{recipe.name}.onnx"
            try:
                _quantize(pre, out, calibration, recipe)
                verdict = judge(out.read_bytes())
            except Exception as e:  # onnxruntime raises anything from ValueError to RuntimeError per recipe
                attempts.append(Attempt(recipe, None, time.perf_counter() - began, f"{type(e).__name__}: {e}"))
                log(f"    int8 recipe {recipe.name} ({recipe.describe()}): could not be built: {attempts[-1].error}")
                return None
            attempts.append(Attempt(recipe, verdict, time.perf_counter() - began))
            log(f"    int8 recipe {recipe.name} ({recipe.describe()}): {verdict.text}: "
                f"{'passes' if verdict.passed else 'fails'} ({attempts[-1].seconds:.1f} s)")
            return onnx.load(str(out)) if verdict.passed else None

        for recipe in RECIPES:
            if (proto := attempt(recipe)) is not None:
                return Int8Search(tuple(attempts), proto, tuple(skipped), budget_seconds)
        if time.perf_counter() - start > budget_seconds:
            skipped.append("exclude-N")
            return Int8Search(tuple(attempts), None, tuple(skipped), budget_seconds)
        ranked = _ranked_nodes(pre, tmp / f"{DEFAULT.name}.onnx", calibration, tmp, log)
        limit = min(len(ranked), max(1, int(len(onnx.load(str(pre)).graph.node) * MAX_EXCLUDED_FRACTION)))
        for count in sorted({min(2 ** i, limit) for i in range(limit.bit_length() + 1)}) if limit else ():
            recipe = replace(DEFAULT, name=f"exclude-{count}", exclude=tuple(name for name, _ in ranked[:count]))
            if (proto := attempt(recipe)) is not None:
                return Int8Search(tuple(attempts), proto, tuple(skipped), budget_seconds)
    return Int8Search(tuple(attempts), None, tuple(skipped), budget_seconds)


def _ranked_nodes(pre: Path, default_qdq: Path, calibration: Dataset, tmp: Path, log: Log) -> list[tuple[str, float]]:
    if not default_qdq.is_file():
        return []
    try:
        ranked = node_errors(pre, default_qdq, calibration, tmp)
    except Exception as e:  # a debugging aid of onnxruntime's: a model it cannot instrument skips this recipe
        log(f"    int8: per-node error could not be measured ({type(e).__name__}: {e}); no node exclusion tried")
        return []
    worst = ", ".join(f"{name} ({loss:.1f} dB)" for name, loss in ranked[:3])
    log(f"    int8: nodes adding the most quantization error (SQNR lost; {EXACT_DB:g} dB = all): {worst or 'none'}")
    return ranked


def convert_fp16(fp32: onnx.ModelProto) -> onnx.ModelProto:
    """FP16 weights and compute, FP32 inputs and outputs, so the variant keeps the FP32 serving contract."""
    from onnxconverter_common import float16

    return float16.convert_float_to_float16(fp32, keep_io_types=True)
