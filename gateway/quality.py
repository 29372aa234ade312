"""Model-quality signals: how the recent predictions are distributed against the reference, as a drift figure.

The reference is the source model's top-1 predictions on its held-out set, which the export records in the model's
state (core/state.py, `reference_predictions`). Drift is the population stability index over the last `window`
predictions: PSI = sum over labels of (actual - expected) * ln(actual / expected). By the usual reading, below 0.1 is
stable, 0.1-0.25 a moderate shift and above 0.25 a significant one.
"""

from __future__ import annotations

import math
from collections import deque
from pathlib import Path
from typing import Mapping

import numpy as np

from core.spec import Spec
from core.state import read_state

PSI_FLOOR = 1e-4  # an empty bin would make the log infinite; the common fix is a small floor


def psi(actual: np.ndarray, expected: np.ndarray, floor: float = PSI_FLOOR) -> float:
    a = np.maximum(np.asarray(actual, dtype=np.float64), floor)
    e = np.maximum(np.asarray(expected, dtype=np.float64), floor)
    return float(np.sum((a - e) * np.log(a / e)))


class DriftMonitor:
    """The last `window` top-1 labels of one output and their PSI against the reference shares."""

    def __init__(self, reference: Mapping[str, float], window: int, min_samples: int):
        self.labels = tuple(reference)
        self.expected = np.array([reference[label] for label in self.labels], dtype=np.float64)
        self._index = {label: i for i, label in enumerate(self.labels)}
        self._recent: deque[int] = deque(maxlen=window)
        self._counts = np.zeros(len(self.labels) + 1, dtype=np.int64)  # the last bin: labels the reference lacks
        self.min_samples = min_samples

    def observe(self, label: str) -> None:
        if len(self._recent) == self._recent.maxlen:
            self._counts[self._recent[0]] -= 1
        i = self._index.get(label, len(self.labels))
        self._recent.append(i)
        self._counts[i] += 1

    @property
    def samples(self) -> int:
        return len(self._recent)

    def value(self) -> float:
        if self.samples < self.min_samples:
            return math.nan
        return psi(self._counts / self.samples, np.append(self.expected, 0.0))


def reference_predictions(spec: Spec, repository: Path, triton_name: str) -> dict[str, dict[str, float]]:
    """Output name -> {label: share} for a served model. An ensemble's output takes the reference of the step model
    that produces it (its state has the figures; the ensemble's has none)."""
    found = {name: ref["shares"] for name, ref in read_state(repository / triton_name).reference_predictions.items()}
    model = spec.model(triton_name)
    if model is None or model.kind != "ensemble":
        return found
    for output in model.outputs:
        for step in model.source.steps:
            inner = next((i for i, outer in step.output_map if outer == output.name), None)
            if inner is not None and output.name not in found:
                shares = reference_predictions(spec, repository, step.model).get(inner)
                if shares:
                    found[output.name] = shares
    return found
