"""Held-out and calibration data: an .npz file -> model-ready arrays by input name, checked against the spec."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from export.errors import SourceError
from export.spec import ModelSpec, Tensor


@dataclass(frozen=True)
class Dataset:
    """Model-ready inputs by input name, and the targets of the first output (`y`; None for calibration data) and of
    every output that has them (`targets`, by output name: class ids, multi-hot rows or float targets)."""

    x: dict[str, np.ndarray]
    y: np.ndarray | None
    targets: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(next(iter(self.x.values())))


def load_npz(model: ModelSpec, path: Path, with_labels: bool) -> Dataset:
    """Read x (one array, or one per input name) and y; check them against the spec's inputs."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise SourceError(f"{model.name}: cannot read {path}: {e}") from None
    if len(model.inputs) == 1 and "x" in data:
        x = {model.inputs[0].name: data["x"]}
    else:
        missing = [t.name for t in model.inputs if t.name not in data]
        if missing:
            raise SourceError(f"{path}: needs an array `x` (one input) or one array per input name; "
                              f"missing {', '.join(missing)}; has {', '.join(data.files)}")
        x = {t.name: data[t.name] for t in model.inputs}
    for t in model.inputs:
        _check_array(model, path, t, x[t.name])
        x[t.name] = x[t.name].astype(t.numpy_dtype)
    if not with_labels:
        return Dataset(x, None)
    targets = _targets(model, path, data, len(x[model.inputs[0].name]))
    return Dataset(x, targets.get(model.outputs[0].name), targets)


def _targets(model: ModelSpec, path: Path, data, rows: int) -> dict[str, np.ndarray]:
    """`y` holds the first output's targets, `y_<output>` any output's: integers (class ids, multi-hot rows) as
    int64, floats (regression targets) as float64."""
    first = model.outputs[0].name
    if "y" in data and f"y_{first}" in data:
        raise SourceError(f"{path}: both `y` and `y_{first}` hold targets of output {first!r}; keep one")
    keys = {first: "y"} if "y" in data else {}
    keys |= {t.name: f"y_{t.name}" for t in model.outputs if f"y_{t.name}" in data}
    stray = sorted(k for k in data.files if k.startswith("y_") and k[2:] not in {t.name for t in model.outputs})
    if stray:
        raise SourceError(f"{path}: {', '.join(stray)} name no output of model {model.name!r}; targets are `y` (first "
                          f"output) or y_<output> for {', '.join(t.name for t in model.outputs)}")
    targets = {}
    for name, key in keys.items():
        a = data[key]
        if len(a) != rows:
            raise SourceError(f"{path}: {len(a)} rows in `{key}` for {rows} inputs")
        if a.dtype.kind not in "biuf":
            raise SourceError(f"{path}: `{key}` is {a.dtype}; targets are numbers: class ids, multi-hot rows or floats")
        targets[name] = a.astype(np.int64) if a.dtype.kind in "biu" else a.astype(np.float64)
    return targets


def _check_array(model: ModelSpec, path: Path, t: Tensor, a: np.ndarray) -> None:
    if tuple(a.shape[1:]) != t.dims or len(a) == 0:
        raise SourceError(f"{path}: input {t.name!r} has shape {list(a.shape)}; the spec says "
                          f"[N, {', '.join(map(str, t.dims))}] with N >= 1 (model {model.name!r})")
