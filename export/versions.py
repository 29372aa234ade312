"""Numbered versions of an exported onnx model: which number the export writes, which old versions stay on disk, and
the per-version figures the gateway judges each version with.

A model's fp32 ONNX decides for all its variants (they are built from it): the same model as the newest version's
rewrites that version in place; a changed one becomes the next number in every variant's Triton model (digits/2,
digits_int8/2, ...). Same means the same bytes, or the same outputs bit for bit on the held-out set: tf2onnx names
the constants it folds differently from one run to the next (Python's string hashing), so the bytes of an unchanged
model may differ. The newest `keep_versions` ([model.lifecycle]) stay, and the stable and canary versions always
do. A new version beside old ones is a candidate: stable stays what it was (core/lifecycle.py writes it down, and
config.pbtxt's version policy serves only it) until `python -m operate rollout` moves it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from core import lifecycle
from core.repository import ONNX_FILENAME
from core.spec import Rollout, ModelSpec
from core.heldout import Dataset
from core.state import read_state
from export import verify


@dataclass(frozen=True)
class Written:
    version: int
    candidate: bool  # a new version beside older ones: stable stays, a rollout starts it
    stable: int | None  # the stable version of the fp32 model after the export
    removed: tuple[str, ...]  # "<triton name>/<version>" folders removed beyond keep_versions
    records: dict[str, dict[str, dict]]  # triton name -> the state's `versions` for that model directory


def sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def outputs_digest(blob: bytes, heldout: Dataset, batch_size: int) -> str:
    """A hash of the model's outputs on the held-out set, bit for bit (one thread, one batch size: reproducible)."""
    session = verify.session(blob)
    outputs = heldout.map(lambda x: verify.run_onnx(session, x, batch_size, None))
    digest = hashlib.sha256()
    for name in sorted(outputs):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(outputs[name]).tobytes())
    return digest.hexdigest()


def version_to_write(directory: Path, fp32: bytes, digest: Callable[[bytes], str]) -> tuple[int, bool]:
    """(version, new) for the fp32 model's directory. The newest version's outputs digest comes from its state, else
    from its ONNX file; with neither (removed by hand), the newest version is rewritten."""
    on_disk = lifecycle.versions_on_disk(directory)
    if not on_disk:
        return 1, True
    newest = on_disk[-1]
    path = directory / str(newest) / ONNX_FILENAME
    if path.is_file() and path.read_bytes() == fp32:
        return newest, False
    recorded = read_state(directory).versions.get(str(newest), {}).get("outputs_sha256")
    if recorded is None and path.is_file():
        try:
            recorded = digest(path.read_bytes())
        except Exception:  # noqa: BLE001 (an old file ONNX Runtime cannot run is not the same model)
            recorded = ""
    same = recorded is None or recorded == digest(fp32)
    return (newest, False) if same else (newest + 1, True)


def kept(directory: Path, keep: int) -> tuple[int, ...]:
    """The versions that stay: the newest `keep`, and whatever the lifecycle serves."""
    on_disk = lifecycle.versions_on_disk(directory)
    current = lifecycle.current(directory)
    return tuple(v for v in on_disk if v in set(on_disk[-keep:]) | set(current.served if current else ()))


def recorded(directory: Path, stable: int | None) -> dict[str, dict]:
    """The per-version figures a model directory's state holds. A repository exported before versions were
    recorded has the figures of its one version at the top of the state and in the card: they become its record."""
    state = read_state(directory)
    if state.versions or stable is None:
        return state.versions
    try:
        card = json.loads((directory / "card.json").read_text(encoding="utf-8"))
        accuracy = next(v.get("accuracy") for v in card["variants"] if v.get("triton_name") == directory.name)
    except (OSError, ValueError, KeyError, TypeError, StopIteration):
        accuracy = None
    return {str(stable): {"accuracy": accuracy, "reference_predictions": state.reference_predictions}}


def write(model: ModelSpec, staging: Path, blobs: dict[str, bytes], accuracy: dict[str, float | None],
          reference_predictions: dict[str, dict], heldout: Dataset) -> Written:
    """Write each variant's ONNX (Triton name -> bytes, the fp32 model's among them) as the version its fp32 model
    decides, record a candidate's stable, and remove versions beyond keep_versions."""
    keep = (model.rollout or Rollout(model.name)).keep_versions
    digests: dict[bytes, str] = {}

    def digest(blob: bytes) -> str:
        if blob not in digests:
            digests[blob] = outputs_digest(blob, heldout, model.max_batch_size)
        return digests[blob]

    version, new = version_to_write(staging / model.name, blobs[model.name], digest)
    removed: list[str] = []
    records: dict[str, dict[str, dict]] = {}
    stable = None
    for name, blob in blobs.items():
        directory = staging / name
        before = lifecycle.current(directory)  # stable = the newest version when no lifecycle file says otherwise
        (directory / str(version)).mkdir(parents=True, exist_ok=True)
        (directory / str(version) / ONNX_FILENAME).write_bytes(blob)
        if new and before is not None and lifecycle.read_lifecycle(directory) is None:
            lifecycle.write_lifecycle(lifecycle.Lifecycle(stable=before.stable), directory)
        stays = kept(directory, keep)
        for old in lifecycle.versions_on_disk(directory):
            if old not in stays:
                shutil.rmtree(directory / str(old))
                removed.append(f"{name}/{old}")
        previous = recorded(directory, before.stable if before else None)
        records[name] = {**{v: r for v, r in previous.items() if v.isdigit() and int(v) in stays},
                         str(version): {"accuracy": accuracy.get(name), "reference_predictions": reference_predictions,
                                        "onnx_sha256": sha256(blob),
                                        **({"outputs_sha256": digest(blob)} if name == model.name else {}),
                                        "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}
        if name == model.name:
            stable = lifecycle.current(directory).stable
    return Written(version, new and stable != version, stable, tuple(removed), records)
