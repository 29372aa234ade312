"""Write the committed files the spec decides (config.pbtxt and labels) into the model repository."""

from __future__ import annotations

from pathlib import Path

from core.repository import labels_filename, model_configs, render, served_variants, without_tensorrt
from core.spec import ModelSpec, Spec


def label_files(model: ModelSpec) -> dict[str, str]:
    return {labels_filename(model, t): "".join(f"{x}\n" for x in t.labels) for t in model.outputs if t.labels}


def committed_files(model: ModelSpec, variants: tuple[str, ...] | None = None,
                    no_tensorrt: frozenset[str] = frozenset()) -> dict[str, str]:
    """Relative path -> text of every committed file the spec decides for this model (configs and labels); for an
    onnx model, of `variants` only when given (served_variants), without TensorRT for `no_tensorrt`."""
    files: dict[str, str] = {}
    for config in model_configs(model, variants, no_tensorrt):
        files[f"{config.name}/config.pbtxt"] = render(config)
        for fname, text in label_files(model).items():
            files[f"{config.name}/{fname}"] = text
        if model.kind == "ensemble":
            files[f"{config.name}/1/.gitkeep"] = ""  # Triton needs a version directory even for an ensemble
    return files


def write_committed_files(spec: Spec, repository: Path, models: list[ModelSpec] | None = None) -> list[Path]:
    written = []
    for model in models if models is not None else spec.models:
        for rel, text in committed_files(model, served_variants(model, repository),
                                         without_tensorrt(model, repository)).items():
            path = repository / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
            written.append(path)
    return written
