"""Typed helpers for the contract models: turn friendly inputs into tensors, and probabilities into Predictions.

The labels are part of the serving contract (the models' label files); the integration tests check that the server's
classification extension reports the same ones.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Union

import numpy as np

from .errors import InvalidInput

DIGIT_LABELS = tuple(str(d) for d in range(10))
SENTIMENT_LABELS = ("negative", "positive")
PROBABILITIES = "probabilities"


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float
    scores: Mapping[str, float]  # every label's probability, in the model's label order


def to_predictions(probabilities: np.ndarray, labels: Sequence[str], single: bool):
    """One Prediction per row; a single item in gives a single Prediction out, a batch gives a list."""
    if probabilities.ndim != 2 or probabilities.shape[1] != len(labels):
        raise InvalidInput(f"expected probabilities of shape [N,{len(labels)}], got {list(probabilities.shape)}")
    predictions = [
        Prediction(label=labels[int(np.argmax(row))], score=float(np.max(row)),
                   scores={label: float(p) for label, p in zip(labels, row)})
        for row in probabilities
    ]
    return predictions[0] if single else predictions


def digits_batch(images: Any) -> tuple[np.ndarray, bool]:
    """[8,8] or [8,8,1] is one image; [N,8,8] or [N,8,8,1] a batch. Intensities 0..255, ink bright on dark."""
    array = np.asarray(images)
    if array.dtype.kind not in "biuf":
        raise InvalidInput(f"digits: images must be numeric 8x8 arrays, got numpy {array.dtype}")
    shape = array.shape
    if shape in ((8, 8), (8, 8, 1)):
        batch, single = array.reshape(1, 8, 8, 1), True
    elif len(shape) in (3, 4) and shape[1:3] == (8, 8) and (len(shape) == 3 or shape[3] == 1) and shape[0] > 0:
        batch, single = array.reshape(shape[0], 8, 8, 1), False
    else:
        raise InvalidInput(f"digits: expected one 8x8 image ([8,8] or [8,8,1]) or a batch ([N,8,8] or [N,8,8,1]), "
                           f"got shape {list(shape)}")
    low, high = float(batch.min()), float(batch.max())
    if low < 0 or high > 255:
        raise InvalidInput(f"digits: pixel intensities must be within 0..255 (ink bright on dark), got "
                           f"{low:g}..{high:g}; rescale, e.g. x * 255 / x.max()")
    return batch.astype(np.float32), single


def _encode_image(item: Any) -> bytes:
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    if isinstance(item, (str, os.PathLike)):
        try:
            with open(item, "rb") as handle:
                return handle.read()
        except OSError as exc:
            raise InvalidInput(f"digits_image: cannot read image file {os.fspath(item)!r}: {exc.strerror}") from exc
    if hasattr(item, "save") and hasattr(item, "mode"):  # a PIL image: Pillow is only needed on this path
        try:
            import PIL.Image  # noqa: F401
        except ImportError as exc:  # pragma: no cover - PIL objects imply Pillow is installed
            raise InvalidInput("encoding PIL images needs Pillow: pip install 'modelport[images]'") from exc
        buffer = io.BytesIO()
        item.save(buffer, format="PNG")
        return buffer.getvalue()
    raise InvalidInput(f"digits_image: expected a file path, encoded image bytes or a PIL image, got "
                       f"{type(item).__name__}")


def image_batch(items: Any) -> tuple[np.ndarray, bool]:
    """One path / bytes / PIL image, or a list of them -> BYTES tensor [N,1] of encoded images."""
    single = isinstance(items, (str, os.PathLike, bytes, bytearray, memoryview)) or hasattr(items, "save")
    sequence = [items] if single else list(items)
    if not sequence:
        raise InvalidInput("digits_image: no images given; pass a path, bytes, or a list of them")
    encoded = np.empty((len(sequence), 1), dtype=object)
    for i, item in enumerate(sequence):
        encoded[i, 0] = _encode_image(item)
    return encoded, single


def text_batch(texts: Union[str, Sequence[str]]) -> tuple[np.ndarray, bool]:
    """One string or a list of strings -> BYTES tensor [N,1] of UTF-8 text."""
    single = isinstance(texts, (str, bytes))
    sequence = [texts] if single else list(texts)
    if not sequence:
        raise InvalidInput("sentiment: no texts given; pass a string or a list of strings")
    encoded = np.empty((len(sequence), 1), dtype=object)
    for i, text in enumerate(sequence):
        if not isinstance(text, (str, bytes)):
            raise InvalidInput(f"sentiment: texts must be strings, got {type(text).__name__} at position {i}")
        encoded[i, 0] = text.encode("utf-8") if isinstance(text, str) else text
    return encoded, single
