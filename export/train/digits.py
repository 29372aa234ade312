"""Reference `digits` classifier: a small CNN over the sklearn 8x8 digits in 0..255.

Only TensorRT-friendly layers (Conv, ReLU, MaxPool, Flatten, Dense, Softmax); the input is
raw 0..255 intensities and the model rescales internally, as the serving contract says.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from export.data import digits as digits_data
from export.data.split import stratified_split
from export.train import base

NAME = "digits"
EPOCHS = 40
BATCH_SIZE = 32
HELDOUT_FRACTION = 0.2
SAMPLES_DIR = "samples"  # held-out digits as PNG files: the digits_image load-test payloads


def build_model():
    import keras
    from keras import layers
    inputs = keras.Input(shape=digits_data.IMAGE_SHAPE, dtype="float32", name="image")
    x = layers.Rescaling(1.0 / digits_data.PIXEL_MAX)(inputs)
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu")(x)
    outputs = layers.Dense(10, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=NAME)


def fit(out_dir: Path, seed: int, progress: base.Progress) -> tuple[float, str, dict[str, str]]:
    base.seed_everything(seed)
    images, labels = digits_data.load_digits_images()
    train_idx, heldout_idx = stratified_split(labels, HELDOUT_FRACTION, seed)
    model = build_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(images[train_idx], labels[train_idx], epochs=EPOCHS, batch_size=BATCH_SIZE, shuffle=True,
              verbose=0, callbacks=[base.epoch_logger(NAME, EPOCHS, progress)])
    predicted = model.predict(images[heldout_idx], verbose=0).argmax(axis=1)
    accuracy = float(np.mean(predicted == labels[heldout_idx]))
    base.save_model(model, out_dir, NAME)
    base.save_arrays(out_dir, NAME, images[heldout_idx], labels[heldout_idx], images[train_idx], seed)
    base.save_image_samples(out_dir / SAMPLES_DIR, images[heldout_idx])
    description = (f"sklearn load_digits (UCI optdigits 8x8), {len(train_idx)} train / {len(heldout_idx)} held-out "
                   f"images (stratified {HELDOUT_FRACTION:.0%} split, seed {seed}); inputs 0..16 scaled by 255/16")
    return accuracy, description, {SAMPLES_DIR: SAMPLES_DIR}


RUN = base.TrainingRun(
    name=NAME,
    sources=(Path(__file__), Path(base.__file__), Path(digits_data.__file__),
             Path(__file__).parents[1] / "data" / "split.py"),
    fit=fit,
)


def train(out_dir: Path, seed: int = 0, progress: base.Progress = base.print_progress) -> base.TrainedModel:
    return base.train_cached(RUN, out_dir, seed, progress)
