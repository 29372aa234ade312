"""Check the model repository before Triton sees it, so a missing export is one clear message, not a load error."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from core.errors import RepositoryError
from core.repository import parse

EXPORT_HINT = "run `make export` to write the model repository"
# Model files a backend loads from <model>/<version>/ when the config names none.
DEFAULT_MODEL_FILENAMES = {"onnxruntime": "model.onnx", "python": "model.py", "tensorrt": "model.plan"}


@dataclasses.dataclass(frozen=True)
class RepositoryModel:
    name: str
    config: model_config_pb2.ModelConfig
    directory: Path


def read_config(config_path: Path) -> model_config_pb2.ModelConfig:
    try:
        return parse(config_path.read_text())
    except text_format.ParseError as error:
        raise RepositoryError(f"{config_path} is not a valid Triton model config: {error}; {EXPORT_HINT} again") from None


def backend_of(config: model_config_pb2.ModelConfig) -> str:
    if config.platform == "ensemble":
        return "ensemble"
    if config.backend:
        return config.backend
    return {"onnxruntime_onnx": "onnxruntime", "tensorrt_plan": "tensorrt"}.get(config.platform, config.platform)


def version_dirs(directory: Path) -> list[Path]:
    return sorted((p for p in directory.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def missing_files(model: RepositoryModel) -> list[str]:
    """What the model's backend needs on disk that is not there (relative to the repository)."""
    versions = version_dirs(model.directory)
    if not versions:
        # An ensemble too needs an (empty) version directory.
        return [f"{model.name}/1/"]
    backend = backend_of(model.config)
    filename = model.config.default_model_filename or DEFAULT_MODEL_FILENAMES.get(backend)
    if filename is None or backend == "ensemble":
        return []
    latest = versions[-1]
    if (latest / filename).exists():
        return []
    # A Python-based backend (ours: onnxruntime) runs its model.py from the backend dir, not from the model.
    return [f"{model.name}/{latest.name}/{filename}"]


def scan(repository: Path) -> list[RepositoryModel]:
    if not repository.is_dir():
        raise RepositoryError(f"model repository {repository} does not exist: {EXPORT_HINT}, or pass --repository DIR")
    models = [
        RepositoryModel(config_path.parent.name, read_config(config_path), config_path.parent)
        for config_path in sorted(repository.glob("*/config.pbtxt"))
    ]
    if not models:
        raise RepositoryError(f"model repository {repository} holds no models (no */config.pbtxt): {EXPORT_HINT}")
    missing = [path for model in models for path in missing_files(model)]
    if missing:
        raise RepositoryError(
            f"model repository {repository} is not exported: missing {', '.join(missing)}; {EXPORT_HINT}"
        )
    return models
