"""End-to-end parity of a [model.text] model: raw held-out text -> the generated tokenizer step (the very
hf_tokenization.py the served model runs) -> the ONNX model, against `transformers`' own tokenizer
(AutoTokenizer, padding and truncation to the max length) -> the PyTorch model as a user loads it (the class its
config.json names, default attention).

The fp32 gate's tolerances apply: argmax agreement (fp32_min_argmax_agreement, 100 % by default) and max |diff|
(fp32_max_abs_diff, 1e-4). Texts the two tokenizers encode differently are a failure of their own, so a tokenizer
that does not match the checkpoint is named as the cause, not only its effect on the outputs.

Needs the torch extra; the pipeline imports this module only for models with a [model.text] table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.errors import GateFailure, SourceError
from core.spec import ModelSpec
from export import torch_source
from export.verify import run_onnx, session

VARIANT = "end-to-end"  # how its failures are listed in the ParityError


@dataclass(frozen=True)
class TextParity:
    texts: int
    token_agreement: float  # fraction of texts both tokenizers encode identically (every input tensor)
    argmax_agreement: float
    max_abs_diff: float
    reference: str  # what the served path was compared with

    def as_dict(self) -> dict:
        return {"texts": self.texts, "token_agreement": self.token_agreement,
                "argmax_agreement": self.argmax_agreement, "max_abs_diff": self.max_abs_diff,
                "reference": self.reference}


def generated_encoding():
    """tritonmodels/hf_tokenization.py, the module the generated tokenizer model deploys and imports."""
    from tritonmodels import hf_tokenization

    return hf_tokenization


def heldout_texts(model: ModelSpec) -> list[str]:
    with np.load(model.source.onnx.heldout, allow_pickle=False) as data:
        if "text" not in data:
            raise SourceError(f"{model.name}: {model.source.onnx.heldout} needs an array `text` (the raw held-out "
                              f"texts, a numpy str array) for the end-to-end parity check of its [model.text] table")
        return [str(t) for t in data["text"]]


def check(model: ModelSpec, fp32: bytes, texts: list[str],
          tokenizer_dir: Path | None = None) -> tuple[TextParity, list[GateFailure]]:
    """Compare the served path with transformers + PyTorch on `texts`. tokenizer_dir: where the served path's
    tokenizer.json and tokenizer_config.json are (default: the checkpoint, which the export deploys)."""
    import transformers

    checkpoint = model.source.onnx.source
    names = [t.name for t in model.inputs]
    length = model.inputs[0].dims[0]
    encoding = generated_encoding()
    served_ids = encoding.encode(encoding.load(tokenizer_dir or checkpoint, length), texts, names)
    served = run_onnx(session(fp32), served_ids, model.batching.max_batch_size, [t.name for t in model.outputs])

    cls, _ = torch_source.checkpoint_class(model)
    with torch_source.quiet():  # as a user runs the checkpoint: AutoTokenizer, its class, the default attention
        tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint)
        net = cls.from_pretrained(checkpoint).eval()
    batch = tokenizer(texts, padding="max_length", truncation=True, max_length=length, return_tensors="np")
    reference_ids = {n: batch[n].astype(np.int64) for n in names}
    module = torch_source.ServedModule(net, tuple(names), model.source.onnx.activation, keyword=True)
    with torch.no_grad():
        reference = np.concatenate([module(*(torch.from_numpy(reference_ids[n][i:i + 64]) for n in names)).numpy()
                                    for i in range(0, len(texts), 64)])

    gate = model.source.onnx.gate
    first = model.outputs[0].name
    same_tokens = np.all([np.all(served_ids[n] == reference_ids[n], axis=1) for n in names], axis=0)
    diff = float(np.max(np.abs(served[first].astype(np.float64) - reference.astype(np.float64))))
    agreement = float(np.mean(served[first].argmax(axis=1) == reference.argmax(axis=1)))
    report = TextParity(len(texts), float(np.mean(same_tokens)), agreement, diff,
                        f"transformers {transformers.__version__} AutoTokenizer + {type(net).__name__} "
                        f"(PyTorch {torch.__version__})")
    failures = []
    if report.token_agreement < 1.0:
        failures.append(GateFailure(VARIANT, ", ".join(names), "texts tokenized differently from transformers",
                                    int(np.sum(~same_tokens)), 0))
    if agreement < gate.fp32_min_argmax_agreement:
        failures.append(GateFailure(VARIANT, first, "argmax agreement", agreement, gate.fp32_min_argmax_agreement))
    if diff > gate.fp32_max_abs_diff:
        failures.append(GateFailure(VARIANT, first, "max |diff|", diff, gate.fp32_max_abs_diff))
    return report, failures
