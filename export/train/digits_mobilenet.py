"""Reference compute-heavy model: keras.applications MobileNetV2 fine-tuned on the sklearn digits at 64x64 RGB.

The benchmark needs a model whose compute, not HTTP, sets the serving limit (the 8x8 CNN costs ~50 µs a batch):
MobileNetV2 at 64x64 is ~25 MFLOPs per image. It is also the shape of a typical user's model: a keras.applications
backbone with a new head, fine-tuned briefly. Input: 0..255 RGB; the model rescales internally as `digits` does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from export.data import digits as digits_data
from export.data.split import stratified_split
from export.train import base, digits

NAME = "digits_mobilenet"
SIDE = 64
EPOCHS = 5
BATCH_SIZE = 32
HELDOUT_FRACTION = 0.2
# keras.applications' BatchNormalization momentum is 0.999: after a few hundred steps from random weights its moving
# statistics still sit at their init and inference collapses (every image gets the same answer). 0.9 tracks them.
BATCH_NORM_MOMENTUM = 0.9


def as_rgb(images: np.ndarray, side: int = SIDE) -> np.ndarray:
    """8x8x1 digits -> side x side x 3: each pixel repeated into a block, the gray copied to three channels."""
    scale = side // images.shape[1]
    blocks = np.repeat(np.repeat(images, scale, axis=1), scale, axis=2)
    return np.ascontiguousarray(np.repeat(blocks, 3, axis=3), dtype=np.float32)


def build_model():
    import keras
    from keras import layers
    inputs = keras.Input(shape=(SIDE, SIDE, 3), dtype="float32", name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)  # MobileNetV2's own input range, -1..1
    backbone = keras.applications.MobileNetV2(input_shape=(SIDE, SIDE, 3), weights=None, include_top=False,
                                              pooling="avg")
    for layer in backbone.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = BATCH_NORM_MOMENTUM
    x = backbone(x)
    outputs = layers.Dense(10, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=NAME)


def fit(out_dir: Path, seed: int, progress: base.Progress) -> tuple[float, str, dict[str, str]]:
    base.seed_everything(seed)
    small, labels = digits_data.load_digits_images()
    images = as_rgb(small)
    train_idx, heldout_idx = stratified_split(labels, HELDOUT_FRACTION, seed)
    model = build_model()
    accuracy = base.fit_classifier(model, images, labels, train_idx, heldout_idx, EPOCHS, BATCH_SIZE, progress)
    base.save_model(model, out_dir, NAME)
    base.save_arrays(out_dir, NAME, images[heldout_idx], labels[heldout_idx], images[train_idx], seed)
    description = (f"sklearn load_digits (UCI optdigits 8x8) upscaled to {SIDE}x{SIDE} RGB by pixel repetition, "
                   f"{len(train_idx)} train / {len(heldout_idx)} held-out images (stratified {HELDOUT_FRACTION:.0%} "
                   f"split, seed {seed}); MobileNetV2 from random weights, {EPOCHS} epochs")
    return accuracy, description, {}


# this file, then the same data and split code as the digits trainer
RUN = base.TrainingRun(name=NAME, sources=(Path(__file__), *digits.RUN.sources[1:]), fit=fit)


def train(out_dir: Path, seed: int = 0, progress: base.Progress = base.print_progress) -> base.TrainedModel:
    return base.train_cached(RUN, out_dir, seed, progress)
