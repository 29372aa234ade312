"""Train-or-load: make sure a model's source and data exist, read held-out data, run the source model for reference.

TensorFlow is imported inside the functions that need it, so a no-op export never pays for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export.errors import SourceError, SpecError
from export.progress import Log
from export.spec import ModelSpec, Tensor


@dataclass(frozen=True)
class Dataset:
    """Model-ready inputs by input name, and integer labels (None for calibration data)."""

    x: dict[str, np.ndarray]
    y: np.ndarray | None

    def __len__(self) -> int:
        return len(next(iter(self.x.values())))


def check_trainers(models: list[ModelSpec]) -> None:
    """Fail before any work when a spec names a trainer that does not exist."""
    wanted = [m for m in models if m.onnx is not None and m.onnx.trainer is not None]
    if not wanted:
        return
    from export.train import TRAINERS

    for m in wanted:
        if m.onnx.trainer not in TRAINERS:
            raise SpecError(m.name, "trainer", m.onnx.trainer, ", ".join(sorted(TRAINERS)) or "(none registered)")


def train_or_check(model: ModelSpec, log: Log):
    """Call the model's trainer (it reuses its own cache), or check the user's files exist.

    Returns the trainer's TrainedModel, or None for a model without a trainer.
    """
    src = model.onnx
    paths = [p for p in (src.source, src.heldout, src.calibration) if p is not None]
    if src.trainer is None:
        missing = [p for p in paths if not p.exists()]
        if missing:
            raise SourceError(f"{model.name}: missing {', '.join(map(str, missing))}: put the files there, fix the "
                              f"paths in models.toml, or set `trainer` to recreate them")
        return None
    from export.train import TRAINERS

    trained = TRAINERS[src.trainer](src.source.parent, seed=0, progress=lambda line: log(f"    {line}"))
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise SourceError(f"{model.name}: trainer {src.trainer!r} ran but {', '.join(map(str, missing))} do not exist: "
                          f"make models.toml name the files it writes in {Path(trained.keras_path).parent}")
    return trained


def load_npz(model: ModelSpec, path: Path, with_labels: bool) -> Dataset:
    """Read x (one array, or one per input name) and y; check them against the spec's inputs."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise SourceError(f"{model.name}: cannot read {path}: {e}") from None
    if len(model.inputs) == 1 and "x" in data:
        x = {model.inputs[0].name: data["x"]}
    else:
        missing = [t.name for t in model.inputs if t.name not in data]
        if missing:
            raise SourceError(f"{path}: needs an array `x` (one input) or one array per input name; "
                              f"missing {', '.join(missing)}; has {', '.join(data.files)}")
        x = {t.name: data[t.name] for t in model.inputs}
    for t in model.inputs:
        _check_array(model, path, t, x[t.name])
        x[t.name] = x[t.name].astype(t.numpy_dtype)
    y = None
    if with_labels:
        if "y" not in data:
            raise SourceError(f"{path}: needs an array `y` of integer labels for the accuracy gate")
        y = data["y"].astype(np.int64)
        if len(y) != len(x[model.inputs[0].name]):
            raise SourceError(f"{path}: {len(y)} labels for {len(x[model.inputs[0].name])} inputs")
    return Dataset(x, y)


def _check_array(model: ModelSpec, path: Path, t: Tensor, a: np.ndarray) -> None:
    if tuple(a.shape[1:]) != t.dims or len(a) == 0:
        raise SourceError(f"{path}: input {t.name!r} has shape {list(a.shape)}; the spec says "
                          f"[N, {', '.join(map(str, t.dims))}] with N >= 1 (model {model.name!r})")


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def reference_outputs(model: ModelSpec, data: Dataset) -> dict[str, np.ndarray]:
    """The source model's outputs on data, keyed by the spec's output names (positional for SavedModel/Keras)."""
    fmt = model.onnx.source_format
    if fmt == "onnx":
        from export.verify import run_onnx

        import onnx

        proto = onnx.load(str(model.onnx.source))
        inputs = {i.name: data.x[t.name] for i, t in zip(proto.graph.input, model.inputs)}
        outs = run_onnx(proto.SerializeToString(), inputs, batch_size=len(data), output_names=None)
        return {t.name: o for t, o in zip(model.outputs, outs.values())}
    _quiet_tensorflow()
    if fmt == "keras":
        import keras

        net = keras.saving.load_model(model.onnx.source, compile=False)
        feed = [data.x[t.name] for t in model.inputs]
        outs = net.predict(feed if len(feed) > 1 else feed[0], batch_size=256, verbose=0)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        return {t.name: np.asarray(o) for t, o in zip(model.outputs, outs)}
    import tensorflow as tf

    loaded = tf.saved_model.load(str(model.onnx.source))
    fn = loaded.signatures["serving_default"]
    arg_names = list(fn.structured_input_signature[1].keys())
    feed = {name: tf.constant(data.x[t.name]) for name, t in zip(sorted(arg_names), model.inputs)}
    result = fn(**feed)
    return {t.name: result[k].numpy() for t, k in zip(model.outputs, sorted(result))}


def to_saved_model(model: ModelSpec, work: Path) -> Path:
    """The SavedModel tf2onnx converts: Keras 3 models are exported first (tf2onnx.from_keras fails on Keras 3)."""
    if model.onnx.source_format == "savedmodel":
        return model.onnx.source
    _quiet_tensorflow()
    import keras

    net = keras.saving.load_model(model.onnx.source, compile=False)
    out = work / "saved_model"
    net.export(str(out), format="tf_saved_model", verbose=False)
    return out
