"""Held-out and calibration data: an .npz file -> model-ready arrays by input name, checked against the spec.

An input with variable dims (-1 in the spec) is stored padded: its array has the largest size of each variable dim
(any padding value), and `<name>_lengths` (`x_lengths` beside a single `x`) holds each sample's true sizes of its -1
dims, [N] for one such dim or [N, k] for k of them, in dims order. Without `<name>_lengths` every sample is full size.
Samples are run in groups of equal size (`Dataset.groups`), each cut to its true size, so no model sees padding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import SourceError
from core.spec import ModelSpec, Tensor


@dataclass(frozen=True)
class Dataset:
    """Model-ready inputs by input name, and the targets of the first output (`y`; None for calibration data) and of
    every output that has them (`targets`, by output name: class ids, multi-hot rows or float targets), one row per
    sample. `shapes` holds, for each input with variable dims, every sample's true shape [N, rank] (its array in `x`
    is padded to the largest)."""

    x: dict[str, np.ndarray]
    y: np.ndarray | None
    targets: dict[str, np.ndarray] = field(default_factory=dict)
    shapes: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(next(iter(self.x.values())))

    def groups(self) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """(sample indices, inputs cut to their true shape) for each distinct shape; one group when none varies."""
        if not self.shapes:
            return [(np.arange(len(self)), self.x)]
        names = sorted(self.shapes)
        keys = np.concatenate([self.shapes[n] for n in names], axis=1)
        distinct, inverse = np.unique(keys, axis=0, return_inverse=True)
        out = []
        for g in range(len(distinct)):
            idx = np.flatnonzero(inverse.reshape(-1) == g)
            cut = {}
            for name, a in self.x.items():
                shape = self.shapes[name][idx[0]] if name in self.shapes else a.shape[1:]
                cut[name] = a[idx][(slice(None), *(slice(0, int(d)) for d in shape))]
            out.append((idx, cut))
        return out

    def map(self, run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """run(inputs) on each group of equal shape; its (fixed-size) outputs put back in sample order."""
        parts = [(idx, run(x)) for idx, x in self.groups()]
        if len(parts) == 1:
            return parts[0][1]
        order = np.argsort(np.concatenate([idx for idx, _ in parts]), kind="stable")
        return {name: np.concatenate([np.asarray(out[name]) for _, out in parts])[order] for name in parts[0][1]}

    def row(self, i: int) -> dict[str, np.ndarray]:
        """Sample i as a batch of one, [1, ...], each input cut to its true shape."""
        return {name: a[i:i + 1][(slice(None), *(slice(0, int(d)) for d in self.shapes[name][i]))]
                if name in self.shapes else a[i:i + 1] for name, a in self.x.items()}

    def commonest(self) -> dict[str, np.ndarray]:
        """The inputs of the largest group of equal shape (all of them when none varies)."""
        return max(self.groups(), key=lambda group: len(group[0]))[1]

    def shape_range(self, t: Tensor) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) shapes of input t over the samples: opt is the median size (rounded up) of each dim."""
        if t.name not in self.shapes:
            shape = tuple(int(d) for d in self.x[t.name].shape[1:])
            return shape, shape, shape
        s = self.shapes[t.name]
        return (tuple(int(d) for d in s.min(axis=0)), tuple(int(np.ceil(d)) for d in np.median(s, axis=0)),
                tuple(int(d) for d in s.max(axis=0)))


def load_npz(model: ModelSpec, path: Path, with_labels: bool) -> Dataset:
    """Read x (one array, or one per input name), their lengths and y; check them against the spec's inputs."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise SourceError(f"{model.name}: cannot read {path}: {e}") from None
    if len(model.inputs) == 1 and "x" in data:
        keys = {model.inputs[0].name: "x"}
    else:
        missing = [t.name for t in model.inputs if t.name not in data]
        if missing:
            raise SourceError(f"{path}: needs an array `x` (one input) or one array per input name; "
                              f"missing {', '.join(missing)}; has {', '.join(data.files)}")
        keys = {t.name: t.name for t in model.inputs}
    x = {t.name: data[keys[t.name]] for t in model.inputs}
    shapes = {}
    for t in model.inputs:
        _check_array(model, path, t, x[t.name])
        x[t.name] = x[t.name].astype(t.numpy_dtype)
        lengths = f"{keys[t.name]}_lengths"
        if t.variable and lengths in data:
            shapes[t.name] = _true_shapes(path, t, x[t.name], lengths, data[lengths])
    sizes = {len(a) for a in x.values()}
    if len(sizes) > 1:
        raise SourceError(f"{path}: the inputs have different numbers of samples: "
                          f"{', '.join(f'{n} {len(a)}' for n, a in x.items())}")
    if not with_labels:
        return Dataset(x, None, shapes=shapes)
    targets = _targets(model, path, data, len(x[model.inputs[0].name]), set(keys.values()))
    return Dataset(x, targets.get(model.outputs[0].name), targets, shapes)


def _targets(model: ModelSpec, path: Path, data, rows: int, inputs: set[str]) -> dict[str, np.ndarray]:
    """`y` holds the first output's targets, `y_<output>` any output's: integers (class ids, multi-hot rows) as
    int64, floats (regression targets) as float64. One row per sample, also for padded inputs of variable dims.
    `inputs` are the arrays read as inputs (their `_lengths` beside them), never targets."""
    first = model.outputs[0].name
    if "y" in data and f"y_{first}" in data:
        raise SourceError(f"{path}: both `y` and `y_{first}` hold targets of output {first!r}; keep one")
    keys = {first: "y"} if "y" in data else {}
    keys |= {t.name: f"y_{t.name}" for t in model.outputs if f"y_{t.name}" in data}
    taken = inputs | {f"{k}_lengths" for k in inputs}
    stray = sorted(k for k in data.files
                   if k.startswith("y_") and k not in taken and k[2:] not in {t.name for t in model.outputs})
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
    fits = a.ndim == len(t.dims) + 1 and all(d == -1 or d == n for d, n in zip(t.dims, a.shape[1:]))
    if not fits or len(a) == 0 or 0 in a.shape:
        raise SourceError(f"{path}: input {t.name!r} has shape {list(a.shape)}; the spec says "
                          f"[N, {', '.join(map(str, t.dims))}] with N >= 1 (model {model.name!r}"
                          + (", -1: any size, the array padded to the largest" if t.variable else "") + ")")


def _true_shapes(path: Path, t: Tensor, a: np.ndarray, key: str, lengths: np.ndarray) -> np.ndarray:
    """[N, rank]: each sample's true shape, from the padded array and its lengths of the -1 dims."""
    axes = [i for i, d in enumerate(t.dims) if d == -1]
    lengths = lengths.reshape(len(lengths), -1) if lengths.ndim == 1 else lengths
    padded = np.array(a.shape[1:])[axes]
    if (lengths.dtype.kind not in "iu" or lengths.shape != (len(a), len(axes))
            or (lengths < 1).any() or (lengths > padded).any()):
        raise SourceError(f"{path}: `{key}` must hold each sample's sizes of the -1 dims of {t.name!r}: integers "
                          f"between 1 and the padded size {padded.tolist()}, shape [{len(a)}"
                          f"{'' if len(axes) == 1 else f', {len(axes)}'}]; got {lengths.dtype} {list(lengths.shape)}"
                          + (f" from {lengths.min()} to {lengths.max()}" if lengths.size and lengths.dtype.kind in "iuf"
                             else ""))
    shapes = np.tile(np.array(a.shape[1:], dtype=np.int64), (len(a), 1))
    shapes[:, axes] = lengths
    return shapes
