"""Check a request against the model's metadata before it is sent, and say exactly how to fix it.

Conversions that keep every value are made silently: to a wider integer type, integers within the target's range,
whole-numbered floats to integers, str -> UTF-8 BYTES. To a float type, values are rounded to its precision
(float64 -> FP32 keeps about 7 significant digits: not lossless, but no value changes beyond rounding). Anything that
would change a value -- an integer outside the target's range, a fraction, NaN or inf sent to an integer type, a
finite value that would overflow to inf -- is an `InvalidInput` naming the model, the tensor, the value, where it is
and the fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from .errors import InvalidInput
from .metadata import ModelMetadata, TensorSpec

Inputs = Union[np.ndarray, Mapping[str, Any]]
SHAPE_RANGE_PARAMETER = "shape_range."


@dataclass(frozen=True)
class Signature:
    """What validation needs to know about a model.

    `max_batch_size` is the config's value: 0 means the model takes no batch axis; None means it has one but the
    limit is unknown (the config could not be read), so requests are not split.
    """

    metadata: ModelMetadata
    max_batch_size: Optional[int]
    # input -> (min shape, max shape) of an input with -1 dims, batch excluded: the sizes the model was verified
    # and profiled for (the config's `shape_range.<input>` parameters, which modelport's export writes)
    shape_ranges: Mapping[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)

    @classmethod
    def of(cls, metadata: ModelMetadata, config: Any) -> "Signature":
        """From the metadata and the ModelConfig message (None when it could not be read: no limits known)."""
        if config is None:
            return cls(metadata, None)
        ranges = {}
        for key, value in config.parameters.items():
            if key.startswith(SHAPE_RANGE_PARAMETER):
                try:
                    bounds = json.loads(value.string_value)
                    ranges[key[len(SHAPE_RANGE_PARAMETER):]] = (tuple(bounds["min"]), tuple(bounds["max"]))
                except (ValueError, KeyError, TypeError):
                    continue  # not ours to judge: the server still checks
        return cls(metadata, config.max_batch_size, ranges)

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


def shape_text(shape: Sequence[int], batch_axis: bool = True) -> str:
    """[N,8,8,1]: N is the batch axis (a leading -1 when `batch_axis`), ? any other variable dimension."""
    dims = ("N" if i == 0 and d == -1 and batch_axis else ("?" if d == -1 else str(d)) for i, d in enumerate(shape))
    return "[" + ",".join(dims) + "]"


def shape_matches(expected: Sequence[int], got: Sequence[int]) -> bool:
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


def _first(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(np.flatnonzero(mask)[0]), mask.shape))


def _changed_value(array: np.ndarray, expected: np.dtype) -> Optional[tuple[tuple[int, ...], str, str]]:
    """(index, why, fix) of the first value the cast to `expected` would change beyond float rounding, or None."""
    name = expected.name
    if expected.kind == "b":
        bad = (array != 0) & (array != 1)
        if bad.any():
            return _first(bad), "only 0 and 1 convert to BOOL", "send x != 0 if that is what you mean"
        return None
    if expected.kind == "f":
        if array.dtype.kind == "f" and array.dtype.itemsize <= expected.itemsize:
            return None
        limit = float(np.finfo(expected).max)
        with np.errstate(invalid="ignore"):
            bad = np.isfinite(array) & (np.abs(array.astype(np.float64)) > limit)
        if bad.any():
            return (_first(bad), f"it would overflow to inf (the largest finite {name} is {limit:g})",
                    "rescale the data or serve the model with a wider float type")
        return None
    info = np.iinfo(expected)
    clip = f"np.clip(x, {info.min}, {info.max}).astype(np.{name})"
    if array.dtype.kind == "f":
        with np.errstate(invalid="ignore", over="ignore"):
            bad = ~np.isfinite(array)
            if bad.any():
                return _first(bad), f"{name} has no NaN or inf", "replace NaN and inf first, e.g. np.nan_to_num(x)"
            bad = array != np.rint(array)
            if bad.any():
                return (_first(bad), "it is not a whole number",
                        f"round it deliberately if that is meant: np.rint(x).astype(np.{name})")
            # info.max + 1 is a power of two, exact in every float type; info.max itself may round up.
            bad = (array < info.min) | (array >= float(info.max + 1))
    elif array.dtype.kind in "iu":
        if int(array.min()) >= info.min and int(array.max()) <= info.max:
            return None
        bad = (array < info.min) if int(array.min()) < info.min else (array > info.max)
    else:  # bool
        return None
    if bad.any():
        return _first(bad), f"it is outside {name}'s range {info.min}..{info.max}", f"fix the data, or {clip}"
    return None


def _convert(model: str, spec: TensorSpec, value: Any) -> np.ndarray:
    if spec.datatype == "BYTES":
        return _to_bytes_array(model, spec, value)
    expected = np.dtype(_numpy_dtype(spec.datatype))
    array = np.asarray(value)
    if array.dtype == expected:
        return array
    if array.dtype.kind in "biuf" and expected.kind in "biuf":
        changed = _changed_value(array, expected) if array.size else None
        if changed is None:
            return array.astype(expected)
        index, why, fix = changed
        raise InvalidInput(
            f"{model}: input '{spec.name}' expects {spec.datatype} (numpy {expected.name}); got "
            f"{array[index].item()!r} at {list(index)} (numpy {array.dtype}): {why}, so sending it would change the "
            f"value; {fix}", model=model)
    if array.dtype.kind in "biuf" and np.can_cast(array.dtype, expected, casting="same_kind"):
        return array.astype(expected)  # e.g. BF16, which numpy knows only through ml_dtypes
    raise InvalidInput(
        f"{model}: input '{spec.name}' expects {spec.datatype} (numpy {expected.name}), got numpy {array.dtype}; "
        f"convert it: x.astype(np.{expected.name})", model=model)


def range_text(bounds: tuple[tuple[int, ...], tuple[int, ...]]) -> str:
    """[N,4..64]: each dim's size or its min..max."""
    return "[N," + ",".join(str(a) if a == b else f"{a}..{b}" for a, b in zip(*bounds)) + "]"


def _check_shape(model: str, spec: TensorSpec, array: np.ndarray, batched: bool,
                 bounds: Optional[tuple[tuple[int, ...], tuple[int, ...]]] = None) -> None:
    got, expected = tuple(array.shape), spec.shape
    if shape_matches(expected, got):
        if batched and got[0] == 0:
            raise InvalidInput(f"{model}: input '{spec.name}' has an empty batch (shape {list(got)}); send at least "
                               f"one item", model=model)
        item = got[1:] if batched else got
        if bounds is not None and not all(low <= d <= high for d, low, high in zip(item, *bounds)):
            raise InvalidInput(
                f"{model}: input '{spec.name}' has shape {list(got)}; the model takes {range_text(bounds)} "
                f"(N = batch size): cut or pad each item to a size within that range", model=model)
        return
    fix = ""
    if batched and shape_matches(expected[1:], got):
        fix = "; add a batch axis: x[None]"
    elif len(expected) >= 2 and expected[-1] == 1 and shape_matches(expected[:-1], got):
        fix = "; add a channel axis: x[..., None]"
    elif batched and len(expected) >= 2 and expected[-1] == 1 and shape_matches(expected[1:-1], got):
        fix = "; add a batch and a channel axis: x[None, ..., None]"
    raise InvalidInput(
        f"{model}: input '{spec.name}' expects shape {shape_text(expected)}"
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
        described = ", ".join(f"'{t.name}' ({t.datatype} {shape_text(t.shape)})" for t in missing)
        raise InvalidInput(f"{model}: missing input {described}", model=model)

    arrays: dict[str, np.ndarray] = {}
    for spec in meta.inputs:
        array = _convert(model, spec, inputs[spec.name])
        _check_shape(model, spec, array, signature.batched, signature.shape_ranges.get(spec.name))
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
