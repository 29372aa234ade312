"""Deterministic stratified train / held-out split shared by every reference dataset."""

from __future__ import annotations

import numpy as np


def stratified_split(labels: np.ndarray, heldout_fraction: float = 0.2,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return (train_indices, heldout_indices), sorted, with each class split in the same proportion.

    The same labels, fraction and seed always give the same indices, so a cached model and a
    fresh run evaluate on identical held-out examples.
    """
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, heldout = [], []
    for value in np.unique(labels):
        members = np.flatnonzero(labels == value)
        rng.shuffle(members)
        n_heldout = max(1, round(len(members) * heldout_fraction))
        heldout.append(members[:n_heldout])
        train.append(members[n_heldout:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(heldout))
