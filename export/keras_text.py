"""A Keras model that takes raw strings through a `TextVectorization` (or `StringLookup`) layer, split for serving: the layer becomes the
generated python step (tritonmodels/keras_text_step.py, settings and vocabulary from the layer itself, spec.keras_text_models),
the rest is the numeric model exported to ONNX. Held-out data stays what the Keras model takes (`x`: the raw texts,
`y`: labels); the numeric model is verified on the layer's own ids for them, and the whole served path end to end:

    texts -> text_vectorization.py (what the step runs) -> ONNX    vs    texts -> the Keras model itself

tokens identical for every text, outputs within the fp32 gate (max |diff| <= fp32_max_abs_diff, argmax agreement).
TensorFlow is imported only here, inside the functions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import GateFailure, IncompatibleModelError, SourceError
from core.heldout import Dataset
from core.spec import ModelSpec
from export.verify import run_onnx, session

VARIANT = "end-to-end"
# keras/src/layers/preprocessing/text_vectorization.py strips this class for "strip_punctuation" (not exported by
# Keras as a name); the end-to-end check fails if a Keras release changes it.
STRIP_REGEX = r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']'


@dataclass(frozen=True)
class KerasTextParity:
    texts: int
    token_agreement: float
    argmax_agreement: float
    max_abs_diff: float
    reference: str

    def as_dict(self) -> dict:
        return {"texts": self.texts, "token_agreement": self.token_agreement,
                "argmax_agreement": self.argmax_agreement, "max_abs_diff": self.max_abs_diff,
                "reference": self.reference}


def served_encoding():
    """tritonmodels/text_vectorization.py, the module the generated step deploys and imports."""
    from tritonmodels import text_vectorization

    return text_vectorization


def split(model: ModelSpec):
    """(the full Keras model, its TextVectorization layer, the numeric rest as a Keras model: ids in)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    net = keras.saving.load_model(model.source.onnx.source, compile=False)
    layer = net.get_layer(model.source.onnx.keras_text_layer)
    try:
        rest = keras.Model(layer.output, net.outputs)
    except ValueError as e:
        raise IncompatibleModelError(
            f"{model.name}: the layers after {layer.name!r} also use the raw strings, so it cannot be split off: {e}"
        ) from None
    return net, layer, rest


def settings(layer) -> dict:
    """What text_vectorization.py needs to reproduce the layer: its kind, config and vocabulary."""
    config = layer.get_config()
    vocabulary = [str(t) for t in layer.get_vocabulary()]
    oov = config.get("oov_token", "[UNK]")
    common = {"layer": type(layer).__name__, "vocabulary": vocabulary,
              "oov_index": vocabulary.index(oov) if oov in vocabulary else 1}
    if common["layer"] == "StringLookup":
        return common
    ngrams = config["ngrams"]
    return {**common, "standardize": config["standardize"], "split": config["split"], "strip_regex": STRIP_REGEX,
            "ngrams": list(range(1, ngrams + 1)) if isinstance(ngrams, int) else list(ngrams or ()),
            "output_sequence_length": config["output_sequence_length"]}


def heldout_texts(model: ModelSpec, path: Path, with_labels: bool = True) -> tuple[list[str], np.ndarray | None]:
    """The raw texts of an .npz (`x`, a str array [N] or [N, 1]) and, with_labels, their labels `y`."""
    try:
        with np.load(path, allow_pickle=False) as data:
            x, y = data["x"], data["y"] if with_labels else None
    except (OSError, KeyError, ValueError) as e:
        raise SourceError(f"{model.name}: {path} needs `x` (the raw texts, a numpy str array)"
                          f"{' and `y` (labels)' if with_labels else ''}: {e}") from None
    if x.dtype.kind not in "US" or len(x) == 0 or x.reshape(len(x), -1).shape[1] != 1 or (
            y is not None and len(x) != len(y)):
        raise SourceError(f"{model.name}: {path}: `x` must be the raw texts, a numpy str array [N] or [N, 1]"
                          f"{' with one label in `y` each' if with_labels else ''}; got {x.dtype} {list(x.shape)}")
    return [str(t) for t in x.reshape(-1)], None if y is None else y.astype(np.int64)


def _strings(net, texts: list[str]):
    import tensorflow as tf

    return tf.constant(np.array(texts, dtype=object).reshape((len(texts), *([1] * (len(net.inputs[0].shape) - 1)))))


def _first_output(net, strings) -> np.ndarray:
    out = net(strings)
    return np.asarray(out[0] if isinstance(out, (list, tuple)) else out)


def token_dataset(model: ModelSpec, path: Path, with_labels: bool) -> Dataset:
    """Held-out (or calibration) data as the numeric model takes it: the layer's own ids for the file's texts."""
    texts, y = heldout_texts(model, path, with_labels)
    net, layer, _ = split(model)
    ids = np.asarray(layer(_strings(net, texts))).astype(np.int64)
    return Dataset({model.inputs[0].name: ids}, y)


def check(model: ModelSpec, fp32: bytes, step: dict) -> tuple[KerasTextParity, list[GateFailure]]:
    """The served path (the step's encoding of `step` settings, then the ONNX model) against the Keras model."""
    import keras

    texts, _ = heldout_texts(model, model.source.onnx.heldout)
    net, layer, _ = split(model)
    served_ids = served_encoding().from_settings(step).encode(texts)
    keras_ids = np.asarray(layer(_strings(net, texts))).astype(np.int64)
    name = model.outputs[0].name
    served = run_onnx(session(fp32), {model.inputs[0].name: served_ids}, model.batching.max_batch_size, [name])[name]
    reference = np.concatenate([_first_output(net, _strings(net, texts[i:i + 256])) for i in range(0, len(texts), 256)])
    same = np.all(served_ids == keras_ids, axis=1)
    diff = float(np.max(np.abs(served.astype(np.float64) - reference.astype(np.float64))))
    flat = lambda a: a.reshape(len(a), -1).argmax(axis=1)  # noqa: E731
    agreement = float(np.mean(flat(served) == flat(reference)))
    report = KerasTextParity(len(texts), float(np.mean(same)), agreement, diff,
                             f"Keras {keras.__version__} model {model.source.onnx.source.name} on the raw texts")
    gate, failures = model.source.onnx.gate, []
    if not same.all():
        first = texts[int(np.flatnonzero(~same)[0])]
        failures.append(GateFailure(VARIANT, model.inputs[0].name,
                                    f"texts encoded differently from the Keras layer (first: {first[:60]!r})",
                                    int(np.sum(~same)), 0))
    least, most = gate.limit(name, "fp32_min_argmax_agreement"), gate.limit(name, "fp32_max_abs_diff")
    if agreement < least:
        failures.append(GateFailure(VARIANT, name, "argmax agreement", agreement, least))
    if diff > most:
        failures.append(GateFailure(VARIANT, name, "max |diff|", diff, most))
    return report, failures
