"""A tiny user model (Keras file + held-out + calibration data) and its models.toml entry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests import specs

LABELS = ["cat", "dog", "owl"]


@dataclass(frozen=True)
class TinyModel:
    directory: Path
    keras_path: Path
    heldout: Path
    calibration: Path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> TinyModel:
    """A 3-class Keras CNN on 6x6x1 inputs; its held-out labels are its own predictions, so accuracy is 100 %."""
    import keras

    directory = tmp_path_factory.mktemp("user_model")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 1), name="pixels")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.save(directory / "tiny.keras")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (40, 6, 6, 1)).astype("float32")
    np.savez(directory / "heldout.npz", x=x, y=model.predict(x, verbose=0).argmax(axis=1))
    np.savez(directory / "calibration.npz", x=rng.uniform(0, 255, (32, 6, 6, 1)).astype("float32"))
    return TinyModel(directory, directory / "tiny.keras", directory / "heldout.npz", directory / "calibration.npz")


def tiny_spec(model: TinyModel, *, gate: dict | None = None, max_batch_size: int = 16, **fields) -> dict:
    """The models.toml entry a user adds for the tiny model; `fields` override or (None) leave out its fields, `gate`
    adds tolerances to its [model.gate]."""
    entry = {"source": model.keras_path, "heldout": model.heldout, "calibration": model.calibration,
             "variants": ["fp32", "int8", "fp16"], "preferred_batch_size": [4, 16], "warmup_batch_sizes": [1], **fields}
    # random weights on random pixels: int8 only has to run, not to be good
    entry["gate"] = {"int8_max_accuracy_drop": 25.0, **(gate or {})}
    return specs.model("tiny", max_batch_size=max_batch_size,
                       inputs=[specs.tensor("pixels", [6, 6, 1], format="FORMAT_NHWC")],
                       outputs=[specs.tensor("scores", [3], labels=LABELS)], **entry)
