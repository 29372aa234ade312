"""models.toml entries for tests, built from keyword overrides and written as TOML.

A test names only the fields it is about; `model()` fills in a small valid onnx entry (model.onnx, input `x`, output
`y`, two floats each, batches of 8). Entries are the plain tables a user writes, so the spec parser under test reads
them as it reads models.toml; a field given as None is left out. Tests whose point is the text itself (parse errors,
a user's file verbatim) write their TOML by hand.
"""

from __future__ import annotations

from pathlib import Path

import tomlkit

from core.spec import Spec, load_spec


def tensor(name: str, dims: tuple[int, ...] | list[int] = (2,), dtype: str = "TYPE_FP32", **fields) -> dict:
    """A [[model.input]] or [[model.output]] table."""
    return _table({"name": name, "dtype": dtype, "dims": dims, **fields})


def model(name: str = "m", kind: str = "onnx", *, inputs: tuple[dict, ...] = (), outputs: tuple[dict, ...] = (),
          max_batch_size: int = 8, **fields) -> dict:
    """A [[model]] table; `inputs`/`outputs` default to one FP32 tensor of 2 values each (`x`, `y`), an onnx model's
    files to model.onnx and heldout.npz beside models.toml. Sub-tables (gate, text, step) follow the tensors, as in
    models.toml."""
    if kind == "onnx":
        fields = {"source": "model.onnx", "heldout": "heldout.npz", **fields}
    tables = {k: v for k, v in fields.items() if isinstance(v, dict) or k == "step"}
    scalars = {k: v for k, v in fields.items() if k not in tables}
    return _table({"name": name, "kind": kind, "max_batch_size": max_batch_size, **scalars,
                   "input": list(inputs or (tensor("x"),)), "output": list(outputs or (tensor("y"),)), **tables})


def step(model_name: str, input_map: dict[str, str], output_map: dict[str, str]) -> dict:
    """A [[model.step]] table of an ensemble: maps from the step model's tensor names to the ensemble's."""
    return {"model": model_name, "input_map": input_map, "output_map": output_map}


def bench(**roles: str) -> str:
    """The [bench] table: the models the benchmark's reference plan checks its targets on, by role."""
    return tomlkit.dumps({"bench": roles})


def spec_text(*entries: dict | str) -> str:
    """models.toml text of these entries, in order: built tables, or TOML a test wrote by hand."""
    return "\n".join(e if isinstance(e, str) else tomlkit.dumps({"model": [e]}) for e in entries)


def write_spec(directory: Path, *entries: dict | str, filename: str = "models.toml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    path.write_text(spec_text(*entries))
    return path


def load(directory: Path, *entries: dict | str, extras: frozenset[str] | None = None) -> Spec:
    """The Spec the export reads from these entries (written to directory/models.toml)."""
    return load_spec(write_spec(directory, *entries), extras)


def _table(fields: dict) -> dict:
    return {key: _toml_value(value) for key, value in fields.items() if value is not None}


def _toml_value(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [_toml_value(v) for v in value]
    if isinstance(value, dict):
        return _table(value)
    return value
