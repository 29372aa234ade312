"""Friendly inputs -> the arrays a model takes: one item or a batch, and encoded bytes for BYTES inputs.

`to_batch` is what `predict` does first: it decides, per the model's metadata, whether it was given one item (shape
== the model's dims, or a single string) or a batch, and adds the batch axis to a single item. The other functions
build the contract helpers' tensors (`classify_digits`, `classify_images`, `sentiment`).
"""

from __future__ import annotations

import io
import os
from typing import Any, Mapping, Union

import numpy as np

from .errors import InvalidInput
from .metadata import TensorSpec
from .validation import Inputs, Signature, shape_matches, shape_text

_BYTES_TYPES = (bytes, bytearray, memoryview)


def _is_pil_image(value: Any) -> bool:
    return hasattr(value, "save") and hasattr(value, "mode")


def _is_scalar(value: Any) -> bool:
    """One element: a string, bytes, a path, a PIL image, a number or a 0-d array."""
    return (isinstance(value, (str, os.PathLike, int, float, bool, np.generic) + _BYTES_TYPES)
            or _is_pil_image(value) or (isinstance(value, np.ndarray) and value.ndim == 0))


def _png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _read_file(path: Union[str, os.PathLike], model: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise InvalidInput(f"{model}: cannot read file {os.fspath(path)!r}: {exc.strerror}", model=model) from exc


def encode(item: Any, model: str) -> Any:
    """One element of a BYTES tensor: str -> UTF-8, bytes as given, a path (os.PathLike) -> the file's bytes,
    a PIL image -> PNG. Anything else is returned as it is, for validation to refuse with the tensor's name."""
    if isinstance(item, str):
        return item.encode("utf-8")
    if isinstance(item, _BYTES_TYPES):
        return bytes(item)
    if isinstance(item, os.PathLike):
        return _read_file(item, model)
    if _is_pil_image(item):
        return _png(item)
    return item


def _flatten(value: Any, model: str, flat: list) -> tuple[int, ...]:
    """Append value's encoded elements to `flat`, in order; return its shape."""
    if _is_scalar(value):
        flat.append(encode(value.item() if isinstance(value, (np.ndarray, np.generic)) else value, model))
        return ()
    shapes = [_flatten(item, model, flat) for item in value]
    if len(set(shapes)) > 1:
        raise InvalidInput(f"{model}: nested lists of different lengths; give every row the same length",
                           model=model)
    return (len(shapes),) + (shapes[0] if shapes else ())


def _bytes_array(value: Any, model: str) -> np.ndarray:
    if isinstance(value, np.ndarray) and value.dtype.kind in "US":
        return value  # validation encodes numpy strings
    flat: list = []
    shape = value.shape if isinstance(value, np.ndarray) else None
    if shape is not None and value.dtype == np.object_:
        flat = [encode(item, model) for item in value.reshape(-1)]
    else:
        shape = _flatten(value, model, flat)
    array = np.empty(len(flat), dtype=object)
    for i, item in enumerate(flat):
        array[i] = item
    return array.reshape(shape)


def _array(spec: TensorSpec, value: Any, model: str) -> np.ndarray:
    if spec.datatype == "BYTES":
        return _bytes_array(value, model)
    return np.asarray(value)


def _one_or_many(model: str, spec: TensorSpec, array: np.ndarray) -> tuple[np.ndarray, bool]:
    """(array with a batch axis, whether it was one item) for an input of a batching model."""
    item = spec.shape[1:]
    one_element = all(d == 1 for d in item)
    if array.ndim == 0 and all(d in (1, -1) for d in item):
        return array.reshape((1,) + (1,) * len(item)), True
    if one_element and item and array.ndim == 1:  # a flat list of N strings or numbers: N items
        return array.reshape((len(array),) + (1,) * len(item)), False
    if shape_matches(item, array.shape):
        return array[None], True
    if shape_matches(spec.shape, array.shape):
        return array, False
    hint = ""
    if shape_matches(item, array.shape + (1,)) or shape_matches(spec.shape, array.shape + (1,)):
        hint = "; add a channel axis: x[..., None]"
    raise InvalidInput(
        f"{model}: input '{spec.name}' takes one item of shape {shape_text(item, batch_axis=False)} or a batch of "
        f"them {shape_text(spec.shape)}, got {'a single value' if array.ndim == 0 else list(array.shape)}{hint}",
        model=model)


def to_batch(signature: Signature, inputs: Inputs) -> tuple[dict[str, Any], bool]:
    """Return (input name -> array with a batch axis, whether one item was given).

    Inputs the model does not have are passed on untouched, for validation to name them.
    """
    meta = signature.metadata
    model = meta.name
    names = [t.name for t in meta.inputs]
    if not isinstance(inputs, Mapping):
        if len(names) != 1:
            raise InvalidInput(
                f"{model}: has inputs {', '.join(names)}; pass a dict by input name: "
                f"{{{', '.join(repr(n) + ': ...' for n in names)}}}", model=model)
        inputs = {names[0]: inputs}
    arrays: dict[str, Any] = {}
    single: dict[str, bool] = {}
    for name, value in inputs.items():
        spec = meta.input(name)
        if spec is None:
            arrays[name] = value
            continue
        array = _array(spec, value, model)
        if signature.batched:
            array, single[name] = _one_or_many(model, spec, array)
        arrays[name] = array
    if len(set(single.values())) > 1:
        described = ", ".join(f"'{n}' {'one item' if s else f'a batch of {len(arrays[n])}'}"
                              for n, s in single.items())
        raise InvalidInput(f"{model}: some inputs are one item and others a batch ({described}); give every input "
                           f"one item, or every input a batch of the same size", model=model)
    return arrays, (all(single.values()) if single else not signature.batched)


# The contract helpers' inputs
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
    if isinstance(item, _BYTES_TYPES):
        return bytes(item)
    if isinstance(item, (str, os.PathLike)):
        try:
            with open(item, "rb") as handle:
                return handle.read()
        except OSError as exc:
            raise InvalidInput(f"digits_image: cannot read image file {os.fspath(item)!r}: {exc.strerror}") from exc
    if _is_pil_image(item):
        return _png(item)
    raise InvalidInput(f"digits_image: expected a file path, encoded image bytes or a PIL image, got "
                       f"{type(item).__name__}")


def image_batch(items: Any) -> tuple[np.ndarray, bool]:
    """One path / bytes / PIL image, or a list of them -> BYTES tensor [N,1] of encoded images."""
    single = isinstance(items, (str, os.PathLike) + _BYTES_TYPES) or _is_pil_image(items)
    sequence = [items] if single else list(items)
    if not sequence:
        raise InvalidInput("digits_image: no images given; pass a path, bytes, or a list of them")
    encoded = np.empty((len(sequence), 1), dtype=object)
    for i, item in enumerate(sequence):
        encoded[i, 0] = _encode_image(item)
    return encoded, single


def text_batch(texts: Union[str, Any]) -> tuple[np.ndarray, bool]:
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
