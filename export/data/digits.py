"""The sklearn 8x8 digits as images in the serving contract's scale.

sklearn stores intensities 0..16 with ink bright on a dark background (like MNIST). The
`digits` model takes 0..255, so every value is multiplied by 255/16; the model rescales
internally. Clients therefore send what an 8-bit grayscale image of the digit would hold.
"""

from __future__ import annotations

import numpy as np

SKLEARN_MAX_INTENSITY = 16.0
PIXEL_MAX = 255.0
IMAGE_SHAPE = (8, 8, 1)
CLASS_NAMES = tuple(str(d) for d in range(10))


def load_digits_images() -> tuple[np.ndarray, np.ndarray]:
    """Return (images float32 [N, 8, 8, 1] in 0..255, labels int64 [N]) for all 1,797 sklearn digits."""
    from sklearn.datasets import load_digits  # here, not at import: the export's fingerprints import this module

    bunch = load_digits()
    images = bunch.images.astype(np.float32) * np.float32(PIXEL_MAX / SKLEARN_MAX_INTENSITY)
    return images[..., np.newaxis], bunch.target.astype(np.int64)
