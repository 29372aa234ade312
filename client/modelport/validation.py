"""Check a request against the model's metadata before it is sent, and say exactly how to fix it.

Safe conversions are made silently (float64 -> FP32, str -> BYTES); anything that would change meaning is an
`InvalidInput` naming the model, the tensor, what was expected, what was given and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from .errors import InvalidInput
from .metadata import ModelMetadata, TensorSpec

Inputs = Union[np.ndarray, Mapping[str, Any]]


@dataclass(frozen=True)
class Signature:
    """What validation needs to know about a model.

    `max_batch_size` is the config's value: 0 means the model takes no batch axis; None means it has one but the
    limit is unknown (the config could not be read), so requests are not split.
    """

    metadata: ModelMetadata
    max_batch_size: Optional[int]

    @property
    def batched(self) -> bool:
        return self.max_batch_size != 0 and all(t.shape[:1] == (-1,) for t in self.metadata.inputs)


@dataclass(frozen=True)
class PreparedInputs:
    arrays: Mapping[str, np.ndarray]
    datatypes: Mapping[str, str]
    batch_size: Optional[int]  # None when the model takes no batch axis


def _numpy_dtype(datatype: str):
    if datatype == "BYTES":
        return np.object_
    from tritonclient.utils import triton_to_np_dtype

    dtype = triton_to_np_dtype(datatype)
    if dtype is None:
        raise InvalidInput(f"the client cannot send tensors of type {datatype}")
    return dtype


def _shape_text(shape: Sequence[int]) -> str:
    dims = ("N" if i == 0 and d == -1 else ("?" if d == -1 else str(d)) for i, d in enumerate(shape))
    return "[" + ",".join(dims) + "]"


def _matches(expected: Sequence[int], got: Sequence[int]) -> bool:
    return len(expected) == len(got) and all(e == -1 or e == g for e, g in zip(expected, got))


def _to_bytes_array(model: str, spec: TensorSpec, value: Any) -> np.ndarray:
    array = np.asarray(value, dtype=object) if not isinstance(value, np.ndarray) else value
    if array.dtype.kind in "US":
        array = array.astype(object)
    if array.dtype != np.object_:
        raise InvalidInput(
            f"{model}: input '{spec.name}' expects BYTES (str or bytes), got numpy {array.dtype}; "
            f"pass strings, e.g. np.array(['text'], dtype=object)", model=model)
    flat = array.reshape(-1)
    out = np.empty(flat.shape, dtype=object)
    for i, item in enumerate(flat):
        if isinstance(item, str):
            out[i] = item.encode("utf-8")
        elif isinstance(item, (bytes, bytearray, memoryview)):
            out[i] = bytes(item)
        else:
            raise InvalidInput(
                f"{model}: input '{spec.name}' expects BYTES (str or bytes), got an element of type "
                f"{type(item).__name__}", model=model)
    return out.reshape(array.shape)


def _convert(model: str, spec: TensorSpec, value: Any) -> np.ndarray:
    if spec.datatype == "BYTES":
        return _to_bytes_array(model, spec, value)
    expected = np.dtype(_numpy_dtype(spec.datatype))
    array = np.asarray(value)
    if array.dtype == expected:
        return array
    if array.dtype.kind in "biuf" and np.can_cast(array.dtype, expected, casting="same_kind"):
        return array.astype(expected)
    raise InvalidInput(
        f"{model}: input '{spec.name}' expects {spec.datatype} (numpy {expected.name}), got numpy {array.dtype}; "
        f"convert it: x.astype(np.{expected.name})", model=model)


def _check_shape(model: str, spec: TensorSpec, array: np.ndarray, batched: bool) -> None:
    got, expected = tuple(array.shape), spec.shape
    if _matches(expected, got):
        if batched and got[0] == 0:
            raise InvalidInput(f"{model}: input '{spec.name}' has an empty batch (shape {list(got)}); send at least "
                               f"one item", model=model)
        return
    fix = ""
    if batched and _matches(expected[1:], got):
        fix = "; add a batch axis: x[None]"
    elif len(expected) >= 2 and expected[-1] == 1 and _matches(expected[:-1], got):
        fix = "; add a channel axis: x[..., None]"
    elif batched and len(expected) >= 2 and expected[-1] == 1 and _matches(expected[1:-1], got):
        fix = "; add a batch and a channel axis: x[None, ..., None]"
    raise InvalidInput(
        f"{model}: input '{spec.name}' expects shape {_shape_text(expected)}"
        f"{' (N = batch size)' if batched else ''}, got {list(got)}{fix}", model=model)


def prepare_inputs(signature: Signature, inputs: Inputs) -> PreparedInputs:
    """Return the inputs as arrays of the model's dtypes, or raise InvalidInput saying what to change."""
    meta = signature.metadata
    model = meta.name
    names = [t.name for t in meta.inputs]
    if not isinstance(inputs, Mapping):
        if len(meta.inputs) != 1:
            raise InvalidInput(
                f"{model}: takes {len(names)} inputs ({', '.join(names)}); pass a mapping of name -> array",
                model=model)
        inputs = {names[0]: inputs}
    unknown = [n for n in inputs if meta.input(n) is None]
    if unknown:
        raise InvalidInput(f"{model}: has no input {', '.join(repr(n) for n in unknown)}; its inputs are: "
                           f"{', '.join(names)}", model=model)
    missing = [t for t in meta.inputs if t.name not in inputs]
    if missing:
        described = ", ".join(f"'{t.name}' ({t.datatype} {_shape_text(t.shape)})" for t in missing)
        raise InvalidInput(f"{model}: missing input {described}", model=model)

    arrays: dict[str, np.ndarray] = {}
    for spec in meta.inputs:
        array = _convert(model, spec, inputs[spec.name])
        _check_shape(model, spec, array, signature.batched)
        arrays[spec.name] = array

    batch_size = None
    if signature.batched:
        sizes = {name: a.shape[0] for name, a in arrays.items()}
        if len(set(sizes.values())) > 1:
            raise InvalidInput(f"{model}: inputs disagree on the batch size (first axis): {sizes}; give every "
                               f"input the same number of items", model=model)
        batch_size = next(iter(sizes.values()))
    return PreparedInputs(arrays=arrays, datatypes={t.name: t.datatype for t in meta.inputs}, batch_size=batch_size)


def check_outputs(metadata: ModelMetadata, outputs: Optional[Sequence[str]],
                  class_count: Optional[int]) -> tuple[str, ...]:
    """Return the output names to request (all of them when `outputs` is None)."""
    known = [t.name for t in metadata.outputs]
    if isinstance(outputs, str):
        outputs = [outputs]
    chosen = tuple(outputs) if outputs is not None else tuple(known)
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise InvalidInput(f"{metadata.name}: has no output {', '.join(repr(n) for n in unknown)}; its outputs are: "
                           f"{', '.join(known)}", model=metadata.name)
    if not chosen:
        raise InvalidInput(f"{metadata.name}: no output requested; choose from {', '.join(known)}",
                           model=metadata.name)
    if class_count is not None and (isinstance(class_count, bool) or not isinstance(class_count, int)
                                    or class_count < 1):
        raise InvalidInput(f"{metadata.name}: class_count must be a positive integer, got {class_count!r}",
                           model=metadata.name)
    return chosen
