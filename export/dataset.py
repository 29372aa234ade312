"""Held-out and calibration data: an .npz file -> model-ready arrays by input name, checked against the spec."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export.errors import SourceError
from export.spec import ModelSpec, Tensor


@dataclass(frozen=True)
class Dataset:
    """Model-ready inputs by input name, and integer labels (None for calibration data)."""

    x: dict[str, np.ndarray]
    y: np.ndarray | None

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
    y = None
    if with_labels:
        if "y" not in data:
            raise SourceError(f"{path}: needs an array `y` of integer labels for the accuracy gate")
        y = data["y"].astype(np.int64)
        if len(y) != len(x[model.inputs[0].name]):
            raise SourceError(f"{path}: {len(y)} labels for {len(x[model.inputs[0].name])} inputs")
    return Dataset(x, y)


def _check_array(model: ModelSpec, path: Path, t: Tensor, a: np.ndarray) -> None:
    if tuple(a.shape[1:]) != t.dims or len(a) == 0:
        raise SourceError(f"{path}: input {t.name!r} has shape {list(a.shape)}; the spec says "
                          f"[N, {', '.join(map(str, t.dims))}] with N >= 1 (model {model.name!r})")
