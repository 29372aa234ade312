"""FP32 ONNX -> the pruned variant: weights removed by magnitude, searched up to the highest fraction the gate passes.

Two methods (models.toml `pruning`):

    weights  unstructured: in every MatMul, Gemm and Conv weight, that fraction of its entries with the smallest
             magnitude set to 0. The file compresses (zeros gzip well); ONNX Runtime's dense kernels multiply the
             zeros all the same, so it runs no faster (docs/pruning.md has the figures).
    units    structured: hidden units of dense layers (output channels of convolutions) removed, those whose weights
             in and out are smallest, together with the weights of the next layer that read them: the MatMuls and
             Convs get smaller, and faster.

The judge is the parity gate's `pruned` checks (export/verify.py). For weights, the search tries fractions in steps of
STEP from STEP up and stops at the first one the judge refuses: the highest fraction before it is served. For units,
it removes UNIT_MULTIPLE units at a time from the layer where that removes the most weights and still passes, until
no layer can lose more.
"""

from __future__ import annotations

import gzip
import time
from dataclasses import dataclass, replace

import numpy as np
import onnx
from onnx import numpy_helper

from core.errors import IncompatibleModelError
from export.optimize import Judge, Verdict
from export.progress import Log

WEIGHT_OPS = ("MatMul", "Gemm", "Conv")  # input 1 is the weight
STEP = 0.05
MAX_FRACTION = 0.95
# Units kept per layer come in multiples of 16: ONNX Runtime's CPU convolutions run channels in blocks of 8 (AVX2)
# or 16 (AVX-512) (its NCHWc layout). Measured on digits (AVX-512, batch 32): 24 of a convolution's 32 channels ran
# between 1 % faster and 9 % slower than all 32, 16 of 32 ran 31-33 % faster (docs/pruning.md).
UNIT_MULTIPLE = 16
# Ops between a layer and the next that act on each unit (channel) alone: a unit removed before them is removed after.
PER_UNIT_OPS = ("Relu", "LeakyRelu", "Elu", "Selu", "Sigmoid", "Tanh", "HardSigmoid", "Softplus", "Clip", "Gelu",
                "MaxPool", "AveragePool")


@dataclass(frozen=True)
class Level:
    """One pruned model the search judged."""

    what: str  # what was pruned: "25 % of each weight", "conv2d_1 32 -> 16 units"
    verdict: Verdict
    sparsity: float  # of the pruned model: Sparsity.fraction
    seconds: float
    chosen: bool = False  # units: the step each round kept (the served model has every chosen step)


@dataclass(frozen=True)
class Sparsity:
    """Zeros among the weights of MatMul, Gemm and Conv, and those weights' count against the unpruned model's."""

    zeros: int
    weights: int
    original_weights: int

    @property
    def fraction(self) -> float:
        """The share of the original weights that are gone: set to 0, or removed with their unit."""
        return (self.zeros + self.original_weights - self.weights) / self.original_weights


@dataclass(frozen=True)
class PruneSearch:
    method: str
    levels: tuple[Level, ...]  # every model judged, in order
    proto: onnx.ModelProto | None  # the served model; None when the judge refused the first step

    def failure(self) -> str:
        """Why nothing is served, in one line: the smallest step and what the gate said of it."""
        if not self.levels:
            return (f"pruning ({self.method}) has nothing to try: no prunable layer has more than {UNIT_MULTIPLE} "
                    f"units; pruning = \"weights\" prunes any MatMul, Gemm or Conv weight")
        first = min(self.levels, key=lambda lv: lv.sparsity)
        return (f"pruning ({self.method}) fails the gate already at {first.what} (sparsity {first.sparsity:.2%}): "
                f"{first.verdict.text}; loosen the pruned_* tolerances in [model.gate] or leave pruned out of "
                f"variants")


def weight_names(proto: onnx.ModelProto) -> list[str]:
    """The initializers MatMul, Gemm and Conv nodes take as their weight (input 1), each once."""
    inits = {i.name: i for i in proto.graph.initializer}
    names: list[str] = []
    for node in proto.graph.node:
        if node.op_type in WEIGHT_OPS and len(node.input) > 1 and node.input[1] in inits:
            if len(inits[node.input[1]].dims) >= 2 and node.input[1] not in names:
                names.append(node.input[1])
    return names


def sparsity(proto: onnx.ModelProto, original: onnx.ModelProto) -> Sparsity:
    inits = {i.name: i for i in proto.graph.initializer}
    arrays = [numpy_helper.to_array(inits[n]) for n in weight_names(proto)]
    originals = {i.name: i for i in original.graph.initializer}
    total = sum(int(np.prod(originals[n].dims)) for n in weight_names(original))
    return Sparsity(sum(int(np.count_nonzero(a == 0)) for a in arrays), sum(a.size for a in arrays), total)


def gzip_size(blob: bytes) -> int:
    """The model file's size after gzip (level 6): what pruned zeros save in storage and transfer."""
    return len(gzip.compress(blob, compresslevel=6, mtime=0))


def _replace(proto: onnx.ModelProto, arrays: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of the model with these initializers' values (and shapes) replaced."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    for init in out.graph.initializer:
        if init.name in arrays:
            init.CopyFrom(numpy_helper.from_array(arrays[init.name].astype(numpy_helper.to_array(init).dtype),
                                                  init.name))
    # models of IR version < 4 also list initializers as graph inputs, with their shapes
    for value in out.graph.input:
        if value.name in arrays and value.type.HasField("tensor_type"):
            value.type.tensor_type.shape.CopyFrom(onnx.helper.make_tensor_type_proto(
                value.type.tensor_type.elem_type, arrays[value.name].shape).tensor_type.shape)
    return out


def prune_weights(proto: onnx.ModelProto, fraction: float) -> onnx.ModelProto:
    """In each weight, the `fraction` of entries with the smallest magnitude set to 0 (each layer alike, so no
    layer is emptied)."""
    inits = {i.name: i for i in proto.graph.initializer}
    arrays = {}
    for name in weight_names(proto):
        w = numpy_helper.to_array(inits[name]).copy()
        k = int(round(fraction * w.size))
        if k:
            flat = w.reshape(-1)
            flat[np.argpartition(np.abs(flat), k - 1)[:k]] = 0
        arrays[name] = w
    return _replace(proto, arrays)


@dataclass(frozen=True)
class _Chain:
    """A layer whose units feed the next layer only through per-unit ops: units can go from both."""

    producer: onnx.NodeProto  # MatMul (weight [in, units]) or Conv (weight [units, in/group, ...])
    bias: str | None  # Conv input 2, or the initializer of the Add that follows a MatMul: [units]
    consumer: onnx.NodeProto  # MatMul (weight [units, out]) or Conv (weight [out, units, ...], group 1)
    through: tuple[str, ...]  # tensors between the two, whose shapes change


def _group(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "group"), 1)


def chains(proto: onnx.ModelProto) -> list[_Chain]:
    """Every MatMul -> [Add bias] -> per-unit ops -> MatMul, and Conv -> per-unit ops -> Conv, whose tensors go
    nowhere else, with weights (and biases) used by no other node."""
    g = proto.graph
    inits = {i.name: i for i in g.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in g.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in g.output}

    def used_once(name: str) -> bool:
        return name in inits and len(consumers.get(name, [])) == 1

    found = []
    for node in g.node:
        if node.op_type not in ("MatMul", "Conv") or len(node.input) < 2 or not used_once(node.input[1]):
            continue
        if len(inits[node.input[1]].dims) != (2 if node.op_type == "MatMul" else 4) or _group(node) != 1:
            continue
        bias = node.input[2] if node.op_type == "Conv" and len(node.input) > 2 and node.input[2] else None
        if bias is not None and not used_once(bias):
            continue
        tensor, through = node.output[0], [node.output[0]]
        consumer = None
        while tensor not in outputs and len(consumers.get(tensor, [])) == 1:
            nxt = consumers[tensor][0]
            if nxt.op_type == node.op_type and nxt.input[0] == tensor and len(nxt.input) > 1 \
                    and used_once(nxt.input[1]) and _group(nxt) == 1:
                consumer = nxt
                break
            if nxt.op_type == "Add" and node.op_type == "MatMul" and bias is None:
                other = [i for i in nxt.input if i != tensor]
                units = inits[node.input[1]].dims[1]
                if len(other) != 1 or not used_once(other[0]) or list(inits[other[0]].dims) != [units]:
                    break  # a bias of one value per unit only (a broadcast scalar is not sliced)
                bias = other[0]
            elif nxt.op_type not in PER_UNIT_OPS or nxt.input[0] != tensor:
                break
            tensor = nxt.output[0]
            through.append(tensor)
        if consumer is not None:
            found.append(_Chain(node, bias, consumer, tuple(through)))
    return found


def layer_units(proto: onnx.ModelProto, c: _Chain) -> int:
    dims = next(i.dims for i in proto.graph.initializer if i.name == c.producer.input[1])
    return dims[0] if c.producer.op_type == "Conv" else dims[1]


def prune_units(proto: onnx.ModelProto, found: list[_Chain], kept: tuple[int, ...]) -> onnx.ModelProto:
    """In each chain, its `kept` units with the largest |weights in| x |weights out| kept, the others removed."""
    names = {n for c in found for n in (c.producer.input[1], c.consumer.input[1], c.bias) if n}
    # one layer's weight is the next chain's producer and this one's consumer: chains apply one after the other
    arrays = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer if i.name in names}
    for c, count in zip(found, kept):
        w_in, w_out = arrays[c.producer.input[1]], arrays[c.consumer.input[1]]
        conv = c.producer.op_type == "Conv"
        if conv:
            saliency = np.linalg.norm(w_in.reshape(len(w_in), -1), axis=1) * np.linalg.norm(
                np.moveaxis(w_out, 1, 0).reshape(w_out.shape[1], -1), axis=1)
        else:
            saliency = np.linalg.norm(w_in, axis=0) * np.linalg.norm(w_out, axis=1)
        keep = np.sort(np.argsort(-saliency, kind="stable")[:count])
        arrays[c.producer.input[1]] = w_in[keep] if conv else w_in[:, keep]
        arrays[c.consumer.input[1]] = w_out[:, keep] if conv else w_out[keep]
        if c.bias is not None:
            arrays[c.bias] = arrays[c.bias][keep]
    out = _replace(proto, arrays)  # `arrays` holds the chains' weights only, now with fewer units
    # shapes recorded for the tensors between the layers are stale now; ONNX Runtime infers them again
    stale = {t for c in found for t in c.through}
    kept_info = [v for v in out.graph.value_info if v.name not in stale]
    del out.graph.value_info[:]
    out.graph.value_info.extend(kept_info)
    return out


def _layer(c: _Chain) -> str:
    """A readable name for a chain's layer: the Keras/PyTorch layer in the node's name where there is one."""
    parts = c.producer.name.split("/")
    return parts[-2] if len(parts) > 1 else c.producer.name


def search(fp32: onnx.ModelProto, method: str, judge: Judge, log: Log, name: str) -> PruneSearch:
    """The pruned model with the most weights gone that the judge passes. `name` is the variant's Triton name, for
    the error when there is nothing to prune."""
    if not weight_names(fp32):
        raise IncompatibleModelError(f"{name}: no MatMul, Gemm or Conv weight to prune; leave pruned out of variants")
    if method == "weights":
        return _search_weights(fp32, judge, log)
    found = chains(fp32)
    if not found:
        raise IncompatibleModelError(
            f"{name}: pruning = \"units\" finds no layer whose units feed only the next MatMul or Conv; "
            f"pruning = \"weights\" prunes any MatMul, Gemm or Conv weight")
    return _search_units(fp32, found, judge, log)


def _judged(proto: onnx.ModelProto, fp32: onnx.ModelProto, what: str, judge: Judge, log: Log,
            method: str) -> Level:
    began = time.perf_counter()
    verdict = judge(proto.SerializeToString())
    level = Level(what, verdict, sparsity(proto, fp32).fraction, time.perf_counter() - began)
    log(f"    pruned ({method}) {what}: sparsity {level.sparsity:.2%}: {verdict.text}: "
        f"{'passes' if verdict.passed else 'fails'}")
    return level


def _search_weights(fp32: onnx.ModelProto, judge: Judge, log: Log) -> PruneSearch:
    """Fractions STEP, 2 STEP, ... MAX_FRACTION of every weight, until the judge refuses one."""
    levels: list[Level] = []
    best = None
    for i in range(1, int(round(MAX_FRACTION / STEP)) + 1):
        proto = prune_weights(fp32, round(i * STEP, 4))
        levels.append(_judged(proto, fp32, f"{i * STEP:.0%} of each weight", judge, log, "weights"))
        if not levels[-1].verdict.passed:
            break
        best = proto
    return PruneSearch("weights", tuple(levels), best)


def _search_units(fp32: onnx.ModelProto, found: list[_Chain], judge: Judge, log: Log) -> PruneSearch:
    """Greedy: each round tries every layer with UNIT_MULTIPLE units fewer and keeps, of those the judge passes, the
    one that removes the most weights; it stops when none passes. A layer keeps UNIT_MULTIPLE units at least."""
    kept = tuple(layer_units(fp32, c) for c in found)
    levels: list[Level] = []
    best = None
    while True:
        passed = []
        for i, c in enumerate(found):
            if kept[i] - UNIT_MULTIPLE < UNIT_MULTIPLE:
                continue
            trial = kept[:i] + (kept[i] - UNIT_MULTIPLE,) + kept[i + 1:]
            proto = prune_units(fp32, found, trial)
            level = _judged(proto, fp32, f"{_layer(c)} {kept[i]} -> {trial[i]} units", judge, log, "units")
            levels.append(level)
            if level.verdict.passed:
                passed.append((level.sparsity, -level.verdict.figure, trial, proto, len(levels) - 1))
        if not passed:
            break
        _, _, kept, best, index = max(passed, key=lambda p: p[:2])
        levels[index] = replace(levels[index], chosen=True)
    return PruneSearch("units", tuple(levels), best)


def card_record(result: PruneSearch, fp32: onnx.ModelProto, served: dict[str, bytes],
                latency_us: dict[str, dict]) -> dict:
    """What the model card says of the pruned model: sparsity, zeros counted, sizes raw and gzipped (of fp32 and the
    served pruned variants, `served` by variant), and every step the search judged."""
    counted = sparsity(result.proto, fp32)
    blobs = {v: b for v, b in served.items() if v in ("fp32", "pruned", "pruned_int8")}
    return {"method": result.method, "sparsity": round(counted.fraction, 6), "zeros": counted.zeros,
            "weights": counted.weights, "original_weights": counted.original_weights,
            "bytes": {k: len(b) for k, b in blobs.items()}, "gzip_bytes": {k: gzip_size(b) for k, b in blobs.items()},
            "latency_us": {k: latency_us[k] for k in blobs if k in latency_us},
            "steps": [{"what": lv.what, "sparsity": round(lv.sparsity, 6),
                       "result": "passes" if lv.verdict.passed else "fails", "gate": lv.verdict.text,
                       "chosen": lv.chosen} for lv in result.levels]}
