"""Reference `digits` classifier: a small CNN over the sklearn 8x8 digits in 0..255.

Only TensorRT-friendly layers (Conv, ReLU, MaxPool, Flatten, Dense, Softmax); the input is
raw 0..255 intensities and the model rescales internally, as the serving contract says.
"""

from __future__ import annotations

from pathlib import Path

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
    accuracy = base.fit_classifier(model, images, labels, train_idx, heldout_idx, EPOCHS, BATCH_SIZE, progress)
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
