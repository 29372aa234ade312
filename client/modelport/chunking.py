"""Split a batch larger than the model's max_batch_size into chunks, and put the answers back in order."""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np


def split(arrays: Mapping[str, np.ndarray], batch_size: Optional[int],
          max_batch_size: Optional[int]) -> list[dict[str, np.ndarray]]:
    """Cut every input along axis 0 into consecutive chunks of at most `max_batch_size` items.

    Nothing is cut when the model takes no batch axis (batch_size None) or the limit is unknown (None/0).
    Slices are views: no input data is copied here.
    """
    if batch_size is None or not max_batch_size or batch_size <= max_batch_size:
        return [dict(arrays)]
    return [
        {name: array[start:start + max_batch_size] for name, array in arrays.items()}
        for start in range(0, batch_size, max_batch_size)
    ]


def join(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate the chunks' outputs along axis 0, in the order the chunks were cut."""
    if len(parts) == 1:
        return dict(parts[0])
    return {name: np.concatenate([part[name] for part in parts], axis=0) for name in parts[0]}
