"""Export state: what the export records about each model directory it writes, for programs to read back.

The card beside it (card.json, card.md) is documentation and stays the same across re-exports of the same
models.toml; this file holds what changes between runs or what code decides on: the fingerprint that makes a second
export a no-op, the optional variants left out, the variants served without TensorRT, the drift reference the
gateway compares served predictions with, and the run's measurements. It is generated and git-ignored; Triton
ignores it (only config.pbtxt and numbered version folders are its own).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

STATE_FILE = "state.json"


@dataclass(frozen=True)
class ModelState:
    fingerprint: str | None = None  # spec entry, sources, export code and tool versions the files were built from
    # Optional variants that failed their gate, by variant: {triton_name, reason}. Retried when the fingerprint changes.
    left_out: dict[str, dict] = field(default_factory=dict)
    # Triton name -> the ops TensorRT's ONNX parser cannot import: the config asks for no TensorRT accelerator.
    without_tensorrt: dict[str, list[str]] = field(default_factory=dict)
    # The source model's top-1 predictions on the held-out set, by labelled output: {samples, shares: {label: share}}.
    reference_predictions: dict[str, dict] = field(default_factory=dict)
    # This run's figures: {"latency_us": {triton name: {batch: {p50, p99}}}, "size_bytes": {triton name: bytes},
    # "int8_recipe_seconds": {recipe: seconds}}.
    measurements: dict = field(default_factory=dict)
    # Per numbered version on disk ("1", "2", ...): {accuracy, reference_predictions, onnx_sha256, exported}, so a
    # canary is judged against its own held-out figures and drift reference, not the newest version's.
    versions: dict[str, dict] = field(default_factory=dict)


def read_state(directory: Path) -> ModelState:
    """The state recorded in a model directory; an empty one where there is none (never exported, or unreadable):
    the export then rebuilds the model and the gateway has no drift reference for it."""
    try:
        raw = json.loads((Path(directory) / STATE_FILE).read_text(encoding="utf-8"))
        return ModelState(**{f.name: raw[f.name] for f in fields(ModelState) if f.name in raw})
    except (OSError, ValueError, TypeError):
        return ModelState()


def write_state(state: ModelState, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / STATE_FILE).write_text(json.dumps(asdict(state), indent=2) + "\n", encoding="utf-8")
