"""What a trainer hands to the pipeline, and the seeded, cached way every trainer runs.

A trainer writes into `out_dir`:
    <name>.keras          the Keras model
    saved_model/          `model.export()` SavedModel, the input of tf2onnx
    heldout.npz           x = model-ready inputs exactly as the ONNX model takes them, y = int labels
    calibration.npz       x = training inputs for INT8 calibration
    fingerprint.json      written last; a later run with the same fingerprint reuses everything
plus any artifacts a python model deploys (for example tokenizer.json).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

Progress = Callable[[str], None]
FINGERPRINT_NAME = "fingerprint.json"
CALIBRATION_SIZE = 300


def print_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class TrainedModel:
    name: str
    keras_path: Path
    saved_model_dir: Path
    heldout_path: Path
    calibration_path: Path
    heldout_accuracy: float
    data_description: str
    artifacts: dict[str, Path] = field(default_factory=dict)
    reused: bool = False


@dataclass(frozen=True)
class TrainingRun:
    """One trainer's identity: the files whose content defines the result, and how to produce it."""
    name: str
    sources: tuple[Path, ...]
    fit: Callable[[Path, int, Progress], tuple[float, str, dict[str, str]]]
    """fit(out_dir, seed, progress) writes the files above and returns
    (heldout_accuracy, data_description, {artifact name: file name inside out_dir})."""


def artifact_paths(out_dir: Path, name: str) -> dict[str, Path]:
    return {
        "keras_path": out_dir / f"{name}.keras",
        "saved_model_dir": out_dir / "saved_model",
        "heldout_path": out_dir / "heldout.npz",
        "calibration_path": out_dir / "calibration.npz",
    }


def fingerprint(run: TrainingRun, seed: int) -> str:
    """Hash of everything that decides the trained weights: source code, seed, library versions."""
    import keras
    import tensorflow as tf
    digest = hashlib.sha256()
    digest.update(f"{run.name}|seed={seed}|tf={tf.__version__}|keras={keras.__version__}".encode())
    for source in sorted(run.sources):
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()


def load_cached(run: TrainingRun, out_dir: Path, expected_fingerprint: str) -> TrainedModel | None:
    """The TrainedModel recorded in out_dir when its fingerprint matches and every file is there."""
    record_path = out_dir / FINGERPRINT_NAME
    if not record_path.is_file():
        return None
    try:
        record = json.loads(record_path.read_text())
        if record["fingerprint"] != expected_fingerprint:
            return None
        model = TrainedModel(
            name=run.name,
            **artifact_paths(out_dir, run.name),
            heldout_accuracy=float(record["heldout_accuracy"]),
            data_description=str(record["data_description"]),
            artifacts={name: out_dir / file for name, file in record["artifacts"].items()},
            reused=True,
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # unreadable record: train again rather than trust it
    files = [model.keras_path, model.heldout_path, model.calibration_path,
             model.saved_model_dir / "saved_model.pb", *model.artifacts.values()]
    return model if all(path.exists() for path in files) else None


def train_cached(run: TrainingRun, out_dir: Path, seed: int = 0,
                 progress: Progress = print_progress) -> TrainedModel:
    """Reuse out_dir when it already holds this exact run, otherwise fit and record it."""
    out_dir = Path(out_dir)
    expected = fingerprint(run, seed)
    cached = load_cached(run, out_dir, expected)
    if cached is not None:
        progress(f"{run.name}: reusing {out_dir} (fingerprint {expected[:12]} unchanged, "
                 f"held-out accuracy {cached.heldout_accuracy:.4f})")
        return cached
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / FINGERPRINT_NAME).unlink(missing_ok=True)  # a half-finished run must never look reusable
    progress(f"{run.name}: training into {out_dir} (seed {seed})")
    started = time.perf_counter()
    accuracy, description, artifacts = run.fit(out_dir, seed, progress)
    record = {"fingerprint": expected, "seed": seed, "heldout_accuracy": accuracy,
              "data_description": description, "artifacts": artifacts,
              "training_seconds": round(time.perf_counter() - started, 1)}
    (out_dir / FINGERPRINT_NAME).write_text(json.dumps(record, indent=2) + "\n")
    progress(f"{run.name}: held-out accuracy {accuracy:.4f} after {record['training_seconds']} s")
    return TrainedModel(name=run.name, **artifact_paths(out_dir, run.name), heldout_accuracy=accuracy,
                        data_description=description,
                        artifacts={name: out_dir / file for name, file in artifacts.items()}, reused=False)


def seed_everything(seed: int) -> None:
    """Make a fit reproducible: seeds Python/NumPy/TF and asks TF for deterministic kernels.

    Op determinism is process-wide in TensorFlow; training runs in the export process only,
    where nothing else depends on the faster nondeterministic kernels.
    """
    import keras
    import tensorflow as tf
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def save_arrays(out_dir: Path, name: str, x_heldout: np.ndarray, y_heldout: np.ndarray,
                x_train: np.ndarray, seed: int) -> None:
    """Write heldout.npz (all held-out inputs) and calibration.npz (a seeded sample of training inputs)."""
    paths = artifact_paths(out_dir, name)
    np.savez(paths["heldout_path"], x=x_heldout, y=y_heldout.astype(np.int64))
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(x_train), size=min(CALIBRATION_SIZE, len(x_train)), replace=False))
    np.savez(paths["calibration_path"], x=x_train[pick])


def save_image_samples(folder: Path, images: np.ndarray, sides: tuple[int, ...] = (8, 28, 64, 128)) -> None:
    """Held-out 8x8x1 0..255 images as PNG files of several sizes, every other one dark ink on light paper (as a
    scanned digit would be): load tests send them, so the decode step's resize and auto-invert both run."""
    from PIL import Image

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        pixels = np.clip(image[..., 0], 0, 255).astype(np.uint8)
        if i % 2:
            pixels = 255 - pixels
        side = sides[i % len(sides)]
        Image.fromarray(pixels, mode="L").resize((side, side), Image.Resampling.BILINEAR).save(
            folder / f"{i:04d}.png", format="PNG")


def save_text_samples(path: Path, texts: list[str], limit: int = 256) -> None:
    """Held-out texts, one per line, picked evenly across the length range with short and long ones alternating."""
    by_length = sorted((" ".join(t.split()) for t in texts), key=len)
    picked = by_length[::max(1, len(by_length) // limit)][:limit]
    mixed = [t for pair in zip(picked[::2], reversed(picked[1::2])) for t in pair] or picked
    path.write_text("".join(f"{t}\n" for t in mixed), encoding="utf-8")


def fit_classifier(model, x: np.ndarray, y: np.ndarray, train_idx: np.ndarray, heldout_idx: np.ndarray, epochs: int,
                   batch_size: int, progress: Progress) -> float:
    """Fit a softmax classifier (Adam, sparse cross-entropy) on the training rows; its held-out accuracy."""
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[train_idx], y[train_idx], epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0,
              callbacks=[epoch_logger(model.name, epochs, progress)])
    predicted = model.predict(x[heldout_idx], verbose=0).argmax(axis=1)
    return float(np.mean(predicted == y[heldout_idx]))


def epoch_logger(name: str, epochs: int, progress: Progress):
    """A Keras callback that reports one line per epoch through `progress`."""
    import keras

    class EpochLine(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            metrics = " ".join(f"{key}={value:.4f}" for key, value in (logs or {}).items())
            progress(f"{name}: epoch {epoch + 1}/{epochs} {metrics}")

    return EpochLine()


def save_model(model, out_dir: Path, name: str) -> None:
    """Save the .keras file and the SavedModel that tf2onnx converts (Keras 3 `from_keras` is broken)."""
    paths = artifact_paths(out_dir, name)
    model.save(paths["keras_path"])
    shutil.rmtree(paths["saved_model_dir"], ignore_errors=True)
    model.export(str(paths["saved_model_dir"]), verbose=False)
