import numpy as np

from export.train import digits_mobilenet


def test_digits_become_64x64_rgb_blocks_keeping_every_pixel_value():
    small = np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8, 1)

    rgb = digits_mobilenet.as_rgb(small)

    assert rgb.shape == (2, 64, 64, 3) and rgb.dtype == np.float32
    assert np.array_equal(rgb[:, ::8, ::8, 0], small[..., 0])  # each pixel opens its 8x8 block
    assert np.array_equal(rgb[:, 7::8, 7::8, 2], small[..., 0])  # ... fills it, in every channel


def test_the_backbone_tracks_batch_statistics_fast_enough_for_a_short_fine_tune():
    model = digits_mobilenet.build_model()
    norms = [layer for layer in model.get_layer(index=2).layers if type(layer).__name__ == "BatchNormalization"]

    assert norms and {layer.momentum for layer in norms} == {digits_mobilenet.BATCH_NORM_MOMENTUM}
    assert model.input_shape == (None, 64, 64, 3) and model.output_shape == (None, 10)
    assert model.get_layer("probabilities").activation.__name__ == "softmax"
