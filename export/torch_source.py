"""PyTorch sources -> ONNX, and the PyTorch model's own outputs for the parity gate.

Three source formats (spec.TORCH_FORMATS): a Hugging Face checkpoint folder (what `save_pretrained` writes:
config.json, model.safetensors, tokenizer files), a `torch.export` ExportedProgram (.pt2) and a TorchScript file
(.pt/.ts). Each becomes one module with the spec's contract (`served_module`): inputs positional in the spec's order,
the spec's output(s), the spec's `activation` applied (a checkpoint's logits -> softmax probabilities by default).
That module is what `torch.onnx.export(dynamo=True)` exports, with a dynamic batch dimension, and what the parity gate
compares the ONNX variants with; the graph is then finalized like every other source (convert.finalize: onnxslim,
spec names, batch dim `batch`, the TensorRT op check).

Why torch.onnx.export and not optimum-onnx's exporter: optimum-onnx 0.1 requires transformers < 4.58 (no
Transformers 5), and it exports checkpoints only, not ExportedPrograms or TorchScript; the dynamo exporter is the one
PyTorch maintains and takes all three.

Needs the torch extra (`make venv EXTRAS=torch`): the pipeline imports this module only for PyTorch sources.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from core.errors import IncompatibleModelError, SourceError
from core.heldout import Dataset
from core.spec import ModelSpec
from export import convert

# The dynamo exporter's own opset: it translates to 18 and reaches 17 only through ONNX's version converter.
OPSET = 18
TORCH_DTYPES = {"TYPE_FP32": torch.float32, "TYPE_FP16": torch.float16, "TYPE_FP64": torch.float64,
                "TYPE_INT64": torch.int64, "TYPE_INT32": torch.int32, "TYPE_INT8": torch.int8,
                "TYPE_UINT8": torch.uint8, "TYPE_BOOL": torch.bool}
EXAMPLE_BATCH = 2  # torch.export specializes a dimension of size 0 or 1, so the example batch is larger
DYNAMIC_BATCH_HINT = ("a .pt2 must be exported with a dynamic batch (torch.export.export(..., dynamic_shapes={name: "
                      "{0: torch.export.Dim('batch')}})), and its inputs must be the spec's [[model.input]], in the "
                      "forward's order")


class ServedModule(torch.nn.Module):
    """The source with the spec's contract: positional inputs in spec order -> its output(s), activation applied."""

    def __init__(self, net: torch.nn.Module, input_names: tuple[str, ...], activation: str, keyword: bool):
        super().__init__()
        self.net, self.input_names, self.activation, self.keyword = net, input_names, activation, keyword

    def forward(self, *inputs: torch.Tensor):
        if self.keyword:  # a transformers model: named inputs, a ModelOutput whose logits are the output
            out = self.net(**dict(zip(self.input_names, inputs))).logits
        else:
            out = self.net(*inputs)
        outs = tuple(out) if isinstance(out, (tuple, list)) else (out,)
        outs = tuple(self._activate(o) for o in outs)
        return outs if len(outs) > 1 else outs[0]

    def _activate(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation == "softmax":
            return torch.softmax(x, dim=-1)
        if self.activation == "sigmoid":
            return torch.sigmoid(x)
        return x


def checkpoint_class(model: ModelSpec):
    """The transformers class the checkpoint's config.json names (`architectures`), and that config."""
    import transformers

    path = model.source.onnx.source
    if not (path / "config.json").is_file():
        raise SourceError(f"{model.name}: {path} is not a Hugging Face checkpoint folder (no config.json): point "
                          f"`source` at the folder save_pretrained wrote")
    with quiet():
        config = transformers.AutoConfig.from_pretrained(path)
    architecture = (config.architectures or [""])[0]
    cls = getattr(transformers, architecture, None) if architecture else None
    if cls is None:
        raise IncompatibleModelError(f"{model.name}: {path / 'config.json'} names architecture {architecture!r}, "
                                     f"which transformers {transformers.__version__} does not have")
    return cls, config


def load_checkpoint(model: ModelSpec):
    """The checkpoint with eager attention: plain MatMul/Softmax in the graph, where the default SDPA attention
    decomposes into ops (IsNaN) outside the TensorRT op check's list."""
    cls, config = checkpoint_class(model)
    check_labels(model, config)
    with quiet():
        return cls.from_pretrained(model.source.onnx.source, attn_implementation="eager").eval()


def check_labels(model: ModelSpec, config) -> None:
    """The spec's labels are the checkpoint's id2label, in id order: what the ensemble answers is what it was
    trained to mean."""
    labelled = [t for t in model.outputs if t.labels]
    if len(model.outputs) != 1:
        raise IncompatibleModelError(f"{model.name}: a Hugging Face checkpoint has one output (its logits); the spec "
                                     f"declares {len(model.outputs)}: keep one [[model.output]]")
    id2label = {int(k): v for k, v in (config.id2label or {}).items()}
    expected = [id2label[i] for i in sorted(id2label)]
    if labelled and list(labelled[0].labels) != expected:
        line = "labels = [" + ", ".join(f'"{x}"' for x in expected) + "]"
        raise IncompatibleModelError(f"{model.name}: the spec's labels {list(labelled[0].labels)} are not the "
                                     f"checkpoint's id2label {expected}: write `{line}` in its [[model.output]]")


def load_torch_file(model: ModelSpec) -> torch.nn.Module:
    path = model.source.onnx.source
    if not path.is_file():
        raise SourceError(f"{model.name}: {path} does not exist")
    if model.source.onnx.source_format == "torch_export":
        try:
            return torch.export.load(str(path)).module()
        except Exception as e:  # torch raises RuntimeError, ValueError, pickle errors... for a file it cannot read
            raise SourceError(f"{model.name}: {path} is not a torch.export ExportedProgram ({type(e).__name__}: "
                              f"{e}); save one with torch.export.save(torch.export.export(...), path)") from None
    try:
        script = torch.jit.load(str(path))
    except Exception as e:
        raise SourceError(f"{model.name}: {path} is not a TorchScript file ({type(e).__name__}: {e}); save one with "
                          f"torch.jit.save(torch.jit.trace(model, example), path), or a .pt2 with "
                          f"torch.export.save") from None
    # torch.onnx.export(dynamo=True) refuses ScriptModules, and its error names the way: "try converting your
    # ScriptModule to an ExportedProgram using TS2EPConverter(mod, args, kwargs).convert()" (a private API, torch 2.13).
    from torch._export.converter import TS2EPConverter

    try:
        with quiet():
            return TS2EPConverter(script, example_inputs(model, None)).convert().module()
    except Exception as e:  # the converter raises whatever the TorchScript graph's first unsupported op raises
        raise IncompatibleModelError(f"{model.name}: TorchScript {path} cannot be converted for the ONNX exporter "
                                     f"({type(e).__name__}: {str(e)[:500]}); export the module with torch.export "
                                     f"(a .pt2) instead") from None


def served_module(model: ModelSpec) -> ServedModule:
    fmt = model.source.onnx.source_format
    net = load_checkpoint(model) if fmt == "huggingface" else load_torch_file(model)
    # No .eval() on the wrapper: an ExportedProgram's module refuses train(False); checkpoints are put in eval mode.
    return ServedModule(net, tuple(t.name for t in model.inputs), model.source.onnx.activation, fmt == "huggingface")


def example_inputs(model: ModelSpec, heldout: Dataset | None) -> tuple[torch.Tensor, ...]:
    """EXAMPLE_BATCH held-out rows (or ones, without a held-out set) per input, in spec order."""
    if heldout is not None:
        return tuple(torch.from_numpy(np.ascontiguousarray(heldout.x[t.name][:EXAMPLE_BATCH])) for t in model.inputs)
    return tuple(torch.ones((EXAMPLE_BATCH, *t.dims), dtype=TORCH_DTYPES[t.dtype]) for t in model.inputs)


@contextlib.contextmanager
def quiet():
    """Around torch.export, the ONNX exporter and transformers' loading and saving, which print progress bars and
    warnings for every model: the export log says what runs, and a failure carries its own message. Every setting
    is put back afterwards."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    # onnxscript's constant folding logs "Evaluation failed" for every node it leaves unfolded
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "torch._export",
                                              "onnxscript")]
    levels = [x.level for x in loggers]
    try:
        hf_logging.disable_progress_bar()
        for x in loggers:
            x.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()
        for x, level in zip(loggers, levels):
            x.setLevel(level)


def to_onnx(model: ModelSpec, heldout: Dataset, work: Path) -> onnx.ModelProto:
    """The source exported to ONNX (opset OPSET, batch dim dynamic) and finalized (convert.finalize)."""
    module = served_module(model)
    batch = torch.export.Dim("batch")
    examples = example_inputs(model, heldout)
    try:
        with quiet(), torch.no_grad():
            program = torch.onnx.export(
                module, examples, input_names=[t.name for t in model.inputs],
                output_names=[t.name for t in model.outputs], dynamic_shapes=(tuple({0: batch} for _ in examples),),
                opset_version=OPSET, dynamo=True, external_data=False, verbose=False)
    except Exception as e:  # torch.onnx raises its own error types for every step (export, translate, check)
        cause = e.__cause__ or e
        raise IncompatibleModelError(f"{model.name}: torch.onnx.export could not export {model.source.onnx.source} "
                                     f"with a dynamic batch dimension: {type(cause).__name__}: "
                                     f"{str(cause).strip()[:1500]}"
                                     f"\n  {DYNAMIC_BATCH_HINT}") from None
    proto = program.model_proto
    static = [i.name for i in proto.graph.input if not i.type.tensor_type.shape.dim[0].dim_param]
    if static:
        raise IncompatibleModelError(f"{model.name}: {model.source.onnx.source} fixes the batch dimension of "
                                     f"{', '.join(static)} (the export needs a dynamic one): {DYNAMIC_BATCH_HINT}")
    onnx.save(proto, str(work / "raw.onnx"))
    return convert.finalize(model, proto)


def reference_outputs(model: ModelSpec, data: Dataset, batch_size: int = 64) -> dict[str, np.ndarray]:
    """The PyTorch model's outputs on data (the served module: activation applied), keyed by the spec's names."""
    module = served_module(model)
    n = len(data)
    chunks = []
    with torch.no_grad():
        for i in range(0, n, batch_size):
            out = module(*(torch.from_numpy(np.ascontiguousarray(data.x[t.name][i:i + batch_size]))
                           for t in model.inputs))
            chunks.append([o.numpy() for o in (out if isinstance(out, tuple) else (out,))])
    if len(chunks[0]) != len(model.outputs):
        raise IncompatibleModelError(f"{model.name}: {model.source.onnx.source} returns {len(chunks[0])} output(s), "
                                     f"the spec declares {len(model.outputs)}: fix [[model.output]]")
    return {t.name: np.concatenate([c[j] for c in chunks]) for j, t in enumerate(model.outputs)}
