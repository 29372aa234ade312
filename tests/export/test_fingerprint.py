"""Fingerprints notice what changes an export's result: trainer and data code, and the converting tools' versions."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from core.spec import load_spec
from export import pipeline
from export.train import RUNS
from tests import specs
from tests.export.conftest import tiny_spec

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def models(tmp_path, tiny_model):
    """The tiny model from a Keras file and from an ONNX file (any bytes do: only hashes are taken here)."""
    onnx_file = tmp_path / "tiny.onnx"
    onnx_file.write_bytes(b"onnx")
    keras_model = specs.load(tmp_path, tiny_spec(tiny_model)).models[0]
    onnx_model = specs.load(tmp_path, tiny_spec(tiny_model, source=onnx_file)).models[0]
    return keras_model, onnx_model


def bumped(package: str):
    real = pipeline.package_version
    return lambda name: real(name) + ".post1" if name == package else real(name)


@pytest.mark.parametrize("package, keras_changes, onnx_changes", [
    ("tensorflow", True, False), ("keras", True, False), ("tf2onnx", True, False),
    ("onnx", True, True), ("onnxruntime", True, True), ("onnxconverter-common", True, True),
])
def test_a_new_version_of_a_converting_tool_changes_the_fingerprints_of_the_models_it_converts(
        models, monkeypatch, package, keras_changes, onnx_changes):
    keras_model, onnx_model = models
    before = pipeline.fingerprint(keras_model), pipeline.fingerprint(onnx_model)
    monkeypatch.setattr(pipeline, "package_version", bumped(package))
    after = pipeline.fingerprint(keras_model), pipeline.fingerprint(onnx_model)
    assert (before[0] != after[0], before[1] != after[1]) == (keras_changes, onnx_changes)


def test_the_installed_tensorflow_is_found_under_its_distribution_name():
    assert pipeline.package_version("tensorflow") != "not installed"  # tensorflow-cpu here
    assert pipeline.package_version("no-such-package-modelport") == "not installed"


def trainer_model(tmp_path: Path, trainer: str):
    """A model with a trainer whose output files exist (any bytes: only hashes are taken)."""
    directory = tmp_path / trainer
    directory.mkdir(exist_ok=True)
    for name in ("m.keras", "heldout.npz"):
        (directory / name).write_bytes(b"x")
    entry = specs.model(f"{trainer}_model", source=directory / "m.keras", heldout=directory / "heldout.npz",
                        trainer=trainer, max_batch_size=4)
    return specs.load(directory, entry).models[0]


@pytest.mark.parametrize("changed", ["export/train/digits.py", "export/data/digits.py", "export/data/split.py",
                                     "export/train/base.py"])
def test_a_change_in_trainer_or_data_code_rebuilds_the_models_that_trainer_makes(tmp_path, monkeypatch, changed):
    digits, sentiment = trainer_model(tmp_path, "digits"), trainer_model(tmp_path, "sentiment")
    before = pipeline.fingerprint(digits), pipeline.fingerprint(sentiment)
    copy = tmp_path / "code" / changed
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / changed, copy)
    run = RUNS["digits"]
    sources = tuple(copy if p.resolve() == (ROOT / changed).resolve() else p for p in run.sources)
    assert copy in sources, f"{changed} is not among the digits trainer's fingerprinted sources"
    monkeypatch.setitem(RUNS, "digits", dataclasses.replace(run, sources=sources))
    assert pipeline.fingerprint(digits) == before[0], "a copy with the same content is the same code"
    copy.write_text(copy.read_text() + "\n# changed\n")
    assert pipeline.fingerprint(digits) != before[0]
    if changed.endswith("digits.py"):
        assert pipeline.fingerprint(sentiment) == before[1], "the other trainer's models are not affected"


def test_every_trainer_fingerprints_its_own_module_and_the_data_modules_it_reads():
    for name, run in RUNS.items():
        files = {p.resolve().relative_to(ROOT).as_posix() for p in run.sources}
        assert {f"export/train/{name}.py", "export/train/base.py", "export/data/split.py"} <= files, name
        assert any(f.startswith("export/data/") and f != "export/data/split.py" for f in files), name
