"""Typed views of what the server says about its models, the same whichever protocol answered.

HTTP gives JSON with numbers; gRPC (through protobuf's JSON mapping) gives int64 fields as strings and leaves out
defaults. These functions take either and return the same frozen values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional


@dataclass(frozen=True)
class TensorSpec:
    """One input or output as the metadata endpoint describes it; `shape` includes the batch axis (-1) if any."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input(self, name: str) -> Optional[TensorSpec]:
        return next((t for t in self.inputs if t.name == name), None)


@dataclass(frozen=True)
class ModelInfo:
    """One model of the repository index: every version the server lists, and the model's overall state."""

    name: str
    versions: tuple[str, ...]
    state: str
    reason: str = ""


def _tensors(entries: Iterable[Mapping[str, Any]]) -> tuple[TensorSpec, ...]:
    return tuple(
        TensorSpec(name=e["name"], datatype=e["datatype"], shape=tuple(int(d) for d in e.get("shape", ())))
        for e in entries
    )


def parse_metadata(raw: Mapping[str, Any]) -> ModelMetadata:
    return ModelMetadata(
        name=raw["name"],
        versions=tuple(str(v) for v in raw.get("versions", ())),
        platform=raw.get("platform", ""),
        inputs=_tensors(raw.get("inputs", ())),
        outputs=_tensors(raw.get("outputs", ())),
    )


def parse_config(raw: Mapping[str, Any]):
    """Build Triton's own `ModelConfig` protobuf from the JSON either protocol returns."""
    from google.protobuf import json_format
    from tritonclient.grpc import model_config_pb2

    body = raw.get("config", raw) if "config" in raw and isinstance(raw["config"], Mapping) else raw
    return json_format.ParseDict(body, model_config_pb2.ModelConfig(), ignore_unknown_fields=True)


def parse_repository_index(entries: Iterable[Mapping[str, Any]]) -> tuple[ModelInfo, ...]:
    """Group the index's one-row-per-version entries by model; a model is READY when any listed version is."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for entry in entries:
        grouped.setdefault(entry["name"], []).append(entry)
    models = []
    for name, rows in sorted(grouped.items()):
        versions = tuple(sorted({str(r["version"]) for r in rows if r.get("version")}, key=_version_key))
        states = [r.get("state", "") or "UNKNOWN" for r in rows]
        state = "READY" if "READY" in states else states[0]
        reason = "; ".join(sorted({r.get("reason", "") for r in rows if r.get("reason")}))
        models.append(ModelInfo(name=name, versions=versions, state=state, reason=reason))
    return tuple(models)


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)
