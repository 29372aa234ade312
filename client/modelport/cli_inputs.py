"""`modelport predict`'s arguments -> the requests to send: arrays from .npy / .npz / JSON files, bytes from other
files, and texts, checked against the model's inputs with an error that names the input and the fix.

Each .npy, .npz or JSON file is one request (one item or a batch, as `Client.predict` reads it). The other arguments
-- files, sent as their bytes, and texts -- form one batch for a model whose only input is TYPE_STRING.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, Union

from .metadata import ModelMetadata
from .validation import shape_text

ARRAY_FILES = (".npy", ".npz", ".json")


class UsageError(Exception):
    pass


@dataclass(frozen=True)
class Argument:
    text: str
    kind: str  # "array" (.npy/.npz/.json file), "file" (any other file: its bytes) or "text"


@dataclass(frozen=True)
class Request:
    name: str  # what the output calls it: the file, or the argument for a batch of loose ones
    inputs: Any  # what Client.predict takes
    names: Sequence[str] = ()  # one name per item, for a batch of loose arguments


def _looks_like_a_path(text: str) -> bool:
    return not any(c.isspace() for c in text) and (os.sep in text or bool(os.path.splitext(text)[1]))


def classify(arguments: Sequence[str], as_text: bool) -> list[Argument]:
    """Decide what each argument is before any call to the server; a missing file is a usage error here."""
    found = []
    for text in arguments:
        if Path(text).suffix.lower() in ARRAY_FILES:
            kind = "array"
        elif as_text:
            kind = "text"
        elif os.path.isfile(text):
            kind = "file"
        elif _looks_like_a_path(text):
            raise UsageError(f"no such file: {text} (to send it as text, pass --text)")
        else:
            kind = "text"
        if kind == "array" and not os.path.isfile(text):
            raise UsageError(f"no such file: {text}")
        found.append(Argument(text, kind))
    return found


def _how_to_pass(meta: ModelMetadata) -> str:
    names = [t.name for t in meta.inputs]
    if len(names) == 1:
        spec = meta.inputs[0]
        return (f"pass a .npy file (one item {shape_text(spec.shape[1:], batch_axis=False)} or a batch "
                f"{shape_text(spec.shape)}) or a JSON file {{\"{spec.name}\": nested list}}")
    arrays = ", ".join(names)
    example = ", ".join(f'"{n}": ...' for n in names)
    return f"pass an .npz with arrays {arrays} or a JSON file {{{example}}}"


def _described(meta: ModelMetadata) -> str:
    inputs = ", ".join(f"{t.name} ({t.datatype} {shape_text(t.shape)})" for t in meta.inputs)
    return f"model {meta.name} has input{'s' if len(meta.inputs) > 1 else ''} {inputs}"


def _load(path: str, meta: ModelMetadata) -> Any:
    import numpy as np

    suffix = Path(path).suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return {name: archive[name] for name in archive.files}
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        else:
            with open(path, encoding="utf-8") as handle:
                array = json.load(handle)
            if isinstance(array, dict):
                return array
    except (OSError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        raise UsageError(f"{path}: cannot read it as {suffix[1:]} ({exc})") from exc
    if len(meta.inputs) != 1:
        raise UsageError(f"{_described(meta)}: {path} holds one array; {_how_to_pass(meta)}")
    return array


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc


def requests(arguments: Sequence[Argument], meta: ModelMetadata) -> list[Request]:
    found = [Request(a.text, _load(a.text, meta)) for a in arguments if a.kind == "array"]
    loose = [a for a in arguments if a.kind != "array"]
    if loose:
        spec = meta.inputs[0] if len(meta.inputs) == 1 else None
        if spec is None or spec.datatype != "BYTES":
            what = "a file" if loose[0].kind == "file" else "text"
            raise UsageError(f"{_described(meta)}; {loose[0].text!r} is {what}, which goes only to a model with one "
                             f"TYPE_STRING input: {_how_to_pass(meta)}")
        values: list[Union[str, bytes]] = [_read(a.text) if a.kind == "file" else a.text for a in loose]
        found.append(Request(loose[0].text, values, names=[a.text for a in loose]))
    return found
