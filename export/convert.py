"""Keras / SavedModel / ONNX source -> a clean ONNX graph: opset 17, spec tensor names, dynamic batch, TensorRT ops."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from collections.abc import Iterator
from typing import TYPE_CHECKING

import onnx
import onnxslim

from core.errors import IncompatibleModelError, SourceError
from core.spec import ModelSpec, Tensor

if TYPE_CHECKING:
    from export.train.base import TrainedModel

OPSET = 17
BATCH_DIM = "batch"

ONNX_DTYPES = {"TYPE_FP32": onnx.TensorProto.FLOAT, "TYPE_FP16": onnx.TensorProto.FLOAT16,
               "TYPE_FP64": onnx.TensorProto.DOUBLE, "TYPE_INT64": onnx.TensorProto.INT64,
               "TYPE_INT32": onnx.TensorProto.INT32, "TYPE_INT8": onnx.TensorProto.INT8,
               "TYPE_UINT8": onnx.TensorProto.UINT8, "TYPE_BOOL": onnx.TensorProto.BOOL,
               "TYPE_STRING": onnx.TensorProto.STRING, "TYPE_INT16": onnx.TensorProto.INT16,
               "TYPE_UINT16": onnx.TensorProto.UINT16, "TYPE_UINT32": onnx.TensorProto.UINT32,
               "TYPE_UINT64": onnx.TensorProto.UINT64, "TYPE_BF16": onnx.TensorProto.BFLOAT16}
SPEC_DTYPES = {onnx_type: spec for spec, onnx_type in ONNX_DTYPES.items()}

# Operators the TensorRT ONNX parser (onnx-tensorrt, TensorRT 10) imports, following its support matrix, control flow
# (If, Loop, Scan) included: their bodies are checked op by op too. A model with other ops is still exported and served,
# without the TensorRT accelerator (repository.onnx_config); the card and the export's log say so.
# https://github.com/onnx/onnx-tensorrt/blob/main/docs/operators.md
TENSORRT_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil Celu Clip Concat
Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal
Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool
GlobalMaxPool Greater GreaterOrEqual GroupNormalization GRU HardSigmoid HardSwish Identity If InstanceNormalization
IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LpNormalization LpPool LRN LSTM MatMul
Max MaxPool Mean Min Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu
QuantizeLinear RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2
ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize
ReverseSequence RNN Round Scan Scatter ScatterElements ScatterND Selu Shape Sigmoid Sign Sin Sinh Size Slice Softmax
Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze
Upsample Where Xor
""".split())


def to_onnx(model: ModelSpec, trained: TrainedModel | None, work: Path) -> onnx.ModelProto:
    """The model's source as a finalized ONNX graph (see `finalize`); work is a scratch directory."""
    if model.source.onnx.source_format == "onnx":
        return finalize(model, load_onnx(model.source.onnx.source))
    return finalize(model, tf2onnx_convert(saved_model(model, trained, work), work / "raw.onnx"))


def saved_model(model: ModelSpec, trained: TrainedModel | None, work: Path) -> Path:
    """The SavedModel tf2onnx converts: the source itself, the one its trainer wrote beside the Keras file, or else
    the Keras file exported into work (tf2onnx's from_keras fails on Keras 3)."""
    src = model.source.onnx.source
    if model.source.onnx.keras_text_layer:  # the numeric rest of a raw-strings model (export/keras_text.py)
        from export import keras_text

        out = work / "saved_model"
        keras_text.split(model)[2].export(str(out), format="tf_saved_model", verbose=False)
        return out
    if model.source.onnx.source_format == "savedmodel":
        return src
    if (trained is not None and trained.keras_path.resolve() == src.resolve()
            and (trained.saved_model_dir / "saved_model.pb").is_file()):
        return trained.saved_model_dir
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    out = work / "saved_model"
    keras.saving.load_model(src, compile=False).export(str(out), format="tf_saved_model", verbose=False)
    return out


def tf2onnx_convert(saved_model: Path, out: Path) -> onnx.ModelProto:
    """Run tf2onnx's saved-model conversion in a child process: it keeps TensorFlow's graph state out of ours."""
    cmd = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved_model), "--output", str(out),
           "--opset", str(OPSET), "--signature_def", "serving_default"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_child_env())
    if proc.returncode != 0 or not out.exists():
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
        raise IncompatibleModelError(f"tf2onnx could not convert {saved_model} (exit {proc.returncode}):\n{tail}")
    return onnx.load(str(out))


def _child_env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def load_onnx(path: Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(path))
    except Exception as e:  # onnx raises DecodeError, OSError, ... for a bad file
        raise SourceError(f"cannot read ONNX file {path}: {e}") from None


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    if old == new:
        return
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        if vi.name == old:
            vi.name = new


def _graph_io(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    initializers = {i.name for i in graph.initializer}
    return [i for i in graph.input if i.name not in initializers]


def pair(model: ModelSpec, kind: str, wanted: tuple[Tensor, ...], actual: list[str],
         source: str) -> list[tuple[Tensor, str]]:
    """The spec's tensors paired with the source's names: by name; one tensor, or an ONNX file's own order, by
    position; Keras' positional output names (output_0, output_1, ... output_10) by their number. Anything else
    would be a guess (a signature's names have no order), so it fails, listing both sides."""
    if len(actual) != len(wanted):
        raise IncompatibleModelError(
            f"{model.name}: {source} has {len(actual)} {kind}(s) ({', '.join(actual)}), the spec declares "
            f"{len(wanted)} ({', '.join(t.name for t in wanted)}): fix [[model.{kind}]]")
    if all(t.name in actual for t in wanted):
        return [(t, t.name) for t in wanted]
    if len(wanted) == 1 or model.source.onnx.source_format == "onnx":
        return list(zip(wanted, actual))
    numbered = [re.fullmatch(r"output_(\d+)", a) for a in actual]
    if all(numbered):
        return list(zip(wanted, sorted(actual, key=lambda a: int(a.split("_")[1]))))
    names = ", ".join(sorted(actual))
    raise IncompatibleModelError(
        f"{model.name}: the spec's {kind}s ({', '.join(t.name for t in wanted)}) do not match the names of "
        f"{source} ({names}); with more than one {kind} they are matched by name: rename the "
        f"[[model.{kind}]] tables to {names}")


def _conform(model: ModelSpec, proto: onnx.ModelProto) -> None:
    """Rename tensors to the spec (see `pair`), name the batch dim, check dtypes and static dims."""
    graph = proto.graph
    batch_params: set[str] = set()
    sides = (("input", _graph_io(graph), model.inputs), ("output", list(graph.output), model.outputs))
    for kind, actual, wanted in sides:
        by_name = {a.name: a for a in actual}
        pairs = pair(model, kind, wanted, [a.name for a in actual], "the converted model")
        renamed = [(by_name[name], t) for t, name in pairs]
        for i, (vi, _) in enumerate(renamed):  # via unique names first, so swapped names cannot collide
            _rename(graph, vi.name, f"modelport_{kind}_{i}")
        for vi, t in renamed:
            _rename(graph, vi.name, t.name)
            _check_tensor(model, kind, vi, t, batch_params)
    for vi in graph.value_info:
        for d in vi.type.tensor_type.shape.dim:
            if d.dim_param in batch_params:
                d.dim_param = BATCH_DIM


def _check_tensor(model: ModelSpec, kind: str, vi: onnx.ValueInfoProto, t: Tensor, batch_params: set[str]) -> None:
    tt = vi.type.tensor_type
    if tt.elem_type == onnx.TensorProto.STRING:
        raise IncompatibleModelError(
            f"{model.name}: {kind} {t.name!r} takes strings inside the graph (a preprocessing layer such as "
            f"TextVectorization, StringLookup or Hashing): the export serves numeric graphs. A .keras source whose "
            f"input feeds TextVectorization is split automatically when the file exists as models.toml is read (run "
            f"the export again once its trainer wrote it); otherwise export the model from its first numeric layer "
            f"on (token ids in, `dims = [-1]` for any length) and serve the preprocessing as a python step before it")
    if tt.elem_type != ONNX_DTYPES.get(t.dtype):
        onnx_name = onnx.TensorProto.DataType.Name(tt.elem_type)
        actual = SPEC_DTYPES.get(tt.elem_type, f"{onnx_name} (no Triton dtype)")
        raise IncompatibleModelError(f"{model.name}: {kind} {t.name!r} is {actual} in the model, the spec says "
                                     f"{t.dtype}: change the spec's dtype or the model's {kind} dtype")
    dims = list(tt.shape.dim)
    if len(dims) != len(t.dims) + 1:
        raise IncompatibleModelError(f"{model.name}: {kind} {t.name!r} has rank {len(dims)} in the model; the spec "
                                     f"says [batch, {', '.join(map(str, t.dims))}]")
    if dims[0].dim_param:
        batch_params.add(dims[0].dim_param)
    dims[0].Clear()
    dims[0].dim_param = BATCH_DIM
    for d, want in zip(dims[1:], t.dims):
        symbolic = bool(d.dim_param) or d.dim_value <= 0
        if symbolic != (want == -1) or (not symbolic and d.dim_value != want):
            actual = ", ".join(x.dim_param or str(x.dim_value) if x.dim_value > 0 or x.dim_param else "?"
                               for x in dims[1:])
            raise IncompatibleModelError(
                f"{model.name}: {kind} {t.name!r} has shape [batch, {actual}] in the model, the spec says "
                f"[batch, {', '.join(map(str, t.dims))}]: a dim is -1 in the spec exactly where the model takes any "
                f"size (Keras: None in its Input shape); fix the model's Input shape or the spec's dims")


def _nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node, those in If / Loop / Scan bodies included."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for body in (*([attr.g] if attr.HasField("g") else []), *attr.graphs):
                yield from _nodes(body)


def unsupported_ops(proto: onnx.ModelProto) -> list[str]:
    """The ops, at any depth, that TensorRT's ONNX parser cannot import (custom domains always count)."""
    ops = {(n.domain or "ai.onnx", n.op_type) for n in _nodes(proto.graph)}
    return sorted(op if d == "ai.onnx" else f"{d}.{op}" for d, op in ops if d != "ai.onnx" or op not in TENSORRT_OPS)


def op_counts(proto: onnx.ModelProto) -> dict[str, int]:
    counts: dict[str, int] = {}
    for n in proto.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return dict(sorted(counts.items()))


def finalize(model: ModelSpec, proto: onnx.ModelProto) -> onnx.ModelProto:
    """Simplify (constant folding, dead code), conform names and shapes. Ops TensorRT cannot run are the pipeline's
    to report (unsupported_ops): such a model is served without the TensorRT accelerator, not refused."""
    proto = onnxslim.slim(proto)
    _conform(model, proto)
    onnx.checker.check_model(proto, full_check=True)
    return proto
