import numpy as np
from sklearn.datasets import load_digits

from export.data.digits import load_digits_images


def test_digits_are_8x8x1_float32_images_with_int64_labels():
    images, labels = load_digits_images()
    assert images.shape == (1797, 8, 8, 1)
    assert images.dtype == np.float32
    assert labels.shape == (1797,)
    assert labels.dtype == np.int64
    assert set(labels.tolist()) == set(range(10))


def test_digit_intensities_are_sklearn_values_scaled_by_255_over_16():
    images, _ = load_digits_images()
    original = load_digits().images
    np.testing.assert_allclose(images[..., 0], original * 255.0 / 16.0, rtol=1e-6)
    assert images.min() == 0.0
    assert images.max() == 255.0


def test_digit_ink_is_bright_on_a_dark_background():
    images, _ = load_digits_images()
    corners = images[:, [0, 0, -1, -1], [0, -1, 0, -1], 0]
    assert corners.mean() < 10.0
    assert images[:, 2:6, 2:6, 0].mean() > 4 * corners.mean()
