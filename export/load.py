"""Train or check: make sure a model's source and data files exist, running its trainer when it has one.

The trainers (and TensorFlow) are imported only when a model needs them, so a no-op export never pays for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import SourceError, SpecError
from core.spec import ModelSpec
from export.progress import Log

if TYPE_CHECKING:
    from export.train.base import TrainedModel


def check_trainers(models: list[ModelSpec]) -> None:
    """Fail before any work when a spec names a trainer that does not exist."""
    wanted = [m for m in models if m.source.onnx is not None and m.source.onnx.trainer is not None]
    if not wanted:
        return
    from export.train import TRAINERS

    for m in wanted:
        trainer = m.source.onnx.trainer
        if trainer not in TRAINERS:
            raise SpecError(m.name, "trainer", trainer, ", ".join(sorted(TRAINERS)) or "(none registered)")


def trainer_sources(model: ModelSpec) -> tuple[Path, ...]:
    """The code files whose content decides what the model's trainer produces (none without a trainer)."""
    if model.source.onnx is None or model.source.onnx.trainer is None:
        return ()
    from export.train import RUNS

    run = RUNS.get(model.source.onnx.trainer)  # an unknown name is check_trainers' to report
    return tuple(run.sources) if run is not None else ()


def train_or_check(model: ModelSpec, log: Log) -> TrainedModel | None:
    """Call the model's trainer (it reuses its own cache), or check the user's files exist.

    Returns the trainer's TrainedModel, or None for a model without a trainer.
    """
    src = model.source.onnx
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
