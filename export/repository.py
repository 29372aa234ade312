"""Write the committed files the spec decides (config.pbtxt and labels) into the model repository, each config with
the version policy its model's lifecycle names (core/lifecycle.py: `latest 1` unless a candidate or canary is on
disk beside stable, so a model with one version keeps the config the spec alone gives)."""

from __future__ import annotations

from pathlib import Path

from core import lifecycle
from core.repository import labels_filename, model_configs, parse, render, served_variants, without_tensorrt
from core.spec import ModelSpec, Spec

CONFIG_FILE = "config.pbtxt"


def label_files(model: ModelSpec) -> dict[str, str]:
    return {labels_filename(model, t): "".join(f"{x}\n" for x in t.labels) for t in model.outputs if t.labels}


def committed_files(model: ModelSpec, variants: tuple[str, ...] | None = None,
                    no_tensorrt: frozenset[str] = frozenset()) -> dict[str, str]:
    """Relative path -> text of every committed file the spec decides for this model (configs and labels); for an
    onnx model, of `variants` only when given (served_variants), without TensorRT for `no_tensorrt`."""
    files: dict[str, str] = {}
    for config in model_configs(model, variants, no_tensorrt):
        files[f"{config.name}/{CONFIG_FILE}"] = render(config)
        for fname, text in label_files(model).items():
            files[f"{config.name}/{fname}"] = text
        if model.kind == "ensemble":
            files[f"{config.name}/1/.gitkeep"] = ""  # Triton needs a version directory even for an ensemble
    return files


def with_version_policy(text: str, directory: Path) -> str:
    """A config's text with the version policy the lifecycle in `directory` names, an ensemble's with its steps'
    versions (stable while a step serves more than its newest version); as the spec gives it where the model has no
    lifecycle file (one version, or not versioned: python models)."""
    config = parse(text)
    if config.platform == "ensemble":
        lifecycle.pin_steps(config, directory.parent)
        return render(config)
    recorded = lifecycle.read_lifecycle(directory)
    if recorded is None:
        return text
    lifecycle.version_policy(config, recorded, lifecycle.versions_on_disk(directory))
    return render(config)


def repository_files(model: ModelSpec, repository: Path) -> dict[str, str]:
    """The committed files as they belong in `repository`: the spec's, for the variants it serves, each config with
    its lifecycle's version policy."""
    files = committed_files(model, served_variants(model, repository), without_tensorrt(model, repository))
    return {rel: with_version_policy(text, repository / Path(rel).parent) if rel.endswith(f"/{CONFIG_FILE}") else text
            for rel, text in files.items()}


def write_committed_files(spec: Spec, repository: Path, models: list[ModelSpec] | None = None) -> list[Path]:
    written = []
    for model in models if models is not None else spec.models:
        for rel, text in repository_files(model, repository).items():
            path = repository / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
            written.append(path)
    return written
