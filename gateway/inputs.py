"""A parsed request body -> the arrays Triton gets, checked against the endpoint so that a wrong request is a 422
naming the field (a JSON Pointer) and the fix, and never reaches Triton."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from core.spec import Tensor
from gateway.catalogue import INTEGER_DTYPES, Endpoint
from gateway.problems import InvalidInput


@dataclass(frozen=True)
class Request:
    arrays: dict[str, np.ndarray]  # input name -> [N, *dims]
    items: int
    top: Optional[int]


def _top(value: Any, field: str = "/top") -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"top must be a positive integer (how many labels to keep), got {value!r}", field=field,
                           fix="send e.g. \"top\": 2, or leave it out for every label")
    return value


def _items_count(endpoint: Endpoint, count: int, field: str) -> None:
    if count < 1:
        raise InvalidInput(f"{endpoint.name}: no items", field=field, fix="send at least one item")
    if count > endpoint.max_items:
        raise InvalidInput(f"{endpoint.name}: {count} items in one request; it takes at most {endpoint.max_items} "
                           f"(its max_batch_size)", field=field, fix=f"split the batch into requests of at most "
                                                                       f"{endpoint.max_items} items")


def _string_item(endpoint: Endpoint, tensor: Tensor, value: Any, field: str) -> bytes:
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise InvalidInput(f"{endpoint.name}: input '{tensor.name}' has a lone surrogate "
                               f"{value[error.start]!r} at character {error.start}, which is not Unicode text",
                               field=field, fix="send valid Unicode; bytes go as {\"b64\": \"...\"}") from None
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError) as error:
            raise InvalidInput(f"{endpoint.name}: input '{tensor.name}' is not valid base64 ({error})",
                               field=f"{field}/b64", fix="encode the bytes with standard base64 (RFC 4648)") from None
    raise InvalidInput(f"{endpoint.name}: input '{tensor.name}' takes a string or {{\"b64\": \"...\"}} per item, got "
                       f"{_kind(value)}", field=field, fix='send e.g. "a moving film" or {"b64": "iVBORw0KGgo..."}')


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return "an object"


def _first_misfit(value: Any, dims: tuple[int, ...], number_ok, field: str) -> tuple[str, str]:
    """(field, what is wrong) for the first place where value is not a nested list of dims of numbers."""
    if not dims:
        return (field, "") if number_ok(value) else (field, _kind(value))
    if not isinstance(value, list) or len(value) != dims[0]:
        return field, _kind(value)
    for i, v in enumerate(value):
        where, what = _first_misfit(v, dims[1:], number_ok, f"{field}/{i}")
        if what:
            return where, what
    return field, ""


def _item_dims(endpoint: Endpoint, tensor: Tensor, items: list, field: str) -> tuple[int, ...]:
    """The dims every item of this request must have: the tensor's, with each -1 taken from the first item and
    checked against the input's range."""
    if not tensor.variable:
        return tensor.dims
    dims, value = [], items[0]
    for dim in tensor.dims:
        size = len(value) if isinstance(value, list) else 0
        if not size:
            break
        dims.append(dim if dim > 0 else size)
        value = value[0]
    low, high = endpoint.bounds(tensor)
    if len(dims) == len(tensor.dims) and all(a <= d <= b for d, a, b in zip(dims, low, high)):
        return tuple(dims)
    shape = "[" + ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in zip(low, high)) + "]"
    raise InvalidInput(f"{endpoint.name}: input '{tensor.name}' takes items of shape {shape}; item 0 has "
                       f"{'shape ' + str(dims) if len(dims) == len(tensor.dims) else _kind(items[0])}",
                       field=f"{field}/0", fix=f"send each item as a nested list of shape {shape}, the same for "
                                               f"every item of one request (cut or pad the longer ones)")


def _tensor_items(endpoint: Endpoint, tensor: Tensor, items: list, field: str) -> np.ndarray:
    dtype = np.dtype(tensor.numpy_dtype)
    integral = tensor.dtype in INTEGER_DTYPES
    if tensor.dtype == "TYPE_BOOL":
        def number_ok(v): return isinstance(v, bool)
        expected = "true/false"
    elif integral:
        def number_ok(v): return isinstance(v, int) and not isinstance(v, bool)
        expected = "integers"
    else:
        def number_ok(v): return isinstance(v, (int, float)) and not isinstance(v, bool)
        expected = "numbers"
    dims = _item_dims(endpoint, tensor, items, field)
    try:
        array = np.asarray(items)
        fits = array.shape == (len(items), *dims) and (array.dtype.kind == "b" if tensor.dtype == "TYPE_BOOL"
                                                              else array.dtype.kind in ("iu" if integral else "iuf"))
    except (ValueError, OverflowError):
        fits = False
    if not fits:
        for i, item in enumerate(items):
            where, what = _first_misfit(item, dims, number_ok, f"{field}/{i}")
            if what:
                break
        else:  # numpy made an object array of fitting lists: integers too large for any numpy type
            where, what = field, "integers out of range"
        same = " (as item 0: every item of one request has the same shape)" if tensor.variable else ""
        raise InvalidInput(f"{endpoint.name}: input '{tensor.name}' takes {expected} in nested lists of "
                           f"{list(dims)} per item{same}; at {where} got {what}", field=where,
                           fix=f"send each item as a nested list of shape {list(dims)} of {expected}")
    if integral:
        info = np.iinfo(dtype)
        if array.size and (array.min() < info.min or array.max() > info.max):
            bad = np.unravel_index(int(np.argmax((array < info.min) | (array > info.max))), array.shape)
            raise InvalidInput(f"{endpoint.name}: input '{tensor.name}' is {tensor.dtype}; {array[bad]} is out of "
                               f"its range {info.min}..{info.max}", field=field + "".join(f"/{i}" for i in bad),
                               fix=f"send integers within {info.min}..{info.max}")
    converted = array.astype(dtype)
    if dtype.kind == "f" and not np.isfinite(converted).all():
        bad = np.unravel_index(int(np.argmax(~np.isfinite(converted))), converted.shape)
        raise InvalidInput(f"{endpoint.name}: input '{tensor.name}' is {tensor.dtype}; {array[bad]!r} does not fit "
                           f"(it becomes infinite)", field=field + "".join(f"/{i}" for i in bad),
                           fix=f"send finite values within {tensor.dtype}'s range")
    return converted


def _batch(endpoint: Endpoint, tensor: Tensor, items: Any, field: str) -> np.ndarray:
    if not isinstance(items, list):
        raise InvalidInput(f"{endpoint.name}: input '{tensor.name}' takes a list of items, got {_kind(items)}",
                           field=field, fix=f"send a list, one item per prediction: [{_example(tensor)}]")
    _items_count(endpoint, len(items), field)
    if tensor.dtype == "TYPE_STRING":
        if tensor.dims != (1,):
            raise InvalidInput(f"{endpoint.name}: input '{tensor.name}' has dims {list(tensor.dims)}; the gateway "
                               f"sends one string per item", field=field)
        array = np.empty((len(items), 1), dtype=object)
        array[:, 0] = [_string_item(endpoint, tensor, v, f"{field}/{i}") for i, v in enumerate(items)]
        return array
    return _tensor_items(endpoint, tensor, items, field)


def _example(tensor: Tensor) -> str:
    if tensor.dtype == "TYPE_STRING":
        return '"text" or {"b64": "..."}'
    return "[" * len(tensor.dims) + "..." + "]" * len(tensor.dims)


def from_json(endpoint: Endpoint, document: Any) -> Request:
    if not isinstance(document, dict):
        raise InvalidInput(f"the body must be a JSON object with `inputs`, got {_kind(document)}", field="",
                           fix='send {"inputs": [...]}')
    unknown = sorted(set(document) - {"inputs", "top"})
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]!r}; the body has `inputs` and, optionally, `top`",
                           field=f"/{unknown[0]}", fix=f"remove {unknown[0]!r}")
    if "inputs" not in document:
        raise InvalidInput("the body has no `inputs`", field="/inputs", fix='send {"inputs": [...]}')
    top = _top(document.get("top"))
    inputs = document["inputs"]
    names = [t.name for t in endpoint.inputs]
    if isinstance(inputs, list) and len(endpoint.inputs) == 1:
        inputs = {names[0]: inputs}
        fields = {names[0]: "/inputs"}
    elif isinstance(inputs, dict):
        fields = {name: f"/inputs/{name}" for name in inputs}
    else:
        shape = "a list of items or " if len(names) == 1 else ""
        raise InvalidInput(f"{endpoint.name}: `inputs` takes {shape}an object of item lists by input name "
                           f"({', '.join(names)}), got {_kind(inputs)}", field="/inputs",
                           fix="send {" + ", ".join(f'"{n}": [...]' for n in names) + "}")
    unknown = sorted(set(inputs) - set(names))
    missing = [n for n in names if n not in inputs]
    if unknown or missing:
        problem = f"unknown input {unknown[0]!r}" if unknown else f"missing input {missing[0]!r}"
        raise InvalidInput(f"{endpoint.name}: {problem}; its inputs are {', '.join(names)}",
                           field=fields.get(unknown[0], "/inputs") if unknown else "/inputs",
                           fix="send every input by name: " + ", ".join(names))
    arrays = {t.name: _batch(endpoint, t, inputs[t.name], fields[t.name]) for t in endpoint.inputs}
    counts = {name: len(a) for name, a in arrays.items()}
    if len(set(counts.values())) > 1:
        raise InvalidInput(f"{endpoint.name}: inputs have different numbers of items: "
                           + ", ".join(f"{n} {c}" for n, c in counts.items()), field="/inputs",
                           fix="send the same number of items for every input")
    return Request(arrays, next(iter(counts.values())), top)


def from_files(endpoint: Endpoint, files: list[bytes], top: Any) -> Request:
    """A multipart upload: every file part (and every `inputs` text field) is one item of the model's one input."""
    tensor = endpoint.inputs[0]
    _items_count(endpoint, len(files), "/inputs")
    array = np.empty((len(files), 1), dtype=object)
    array[:, 0] = files
    return Request({tensor.name: array}, len(files), _top(top))
