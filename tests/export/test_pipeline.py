"""`python -m export` end to end on a user's tiny Keras model, added through a spec entry alone."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from core import repository
from core.spec import load_spec
from core.state import STATE_FILE, read_state
from export import pipeline
from export.train import TRAINERS
from tests import specs
from tests.export.conftest import tiny_spec
from tests.specs import write_spec

ROOT = Path(__file__).resolve().parents[2]


def export_cli(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "export", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    proc.tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])  # shown when an assertion fails
    return proc


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_model):
    """The tiny model exported once into a fresh repository (module-scoped: conversion takes seconds)."""
    work = tmp_path_factory.mktemp("export")
    spec_path = write_spec(work, tiny_spec(tiny_model))
    repo = work / "model_repository"
    proc = export_cli("--spec", str(spec_path), "--repository", str(repo))
    assert proc.returncode == 0, proc.tail
    return spec_path, repo, proc


def test_a_users_keras_model_becomes_three_verified_triton_models(exported):
    spec_path, repo, proc = exported
    model = load_spec(spec_path).models[0]
    for name, variant in (("tiny", "fp32"), ("tiny_int8", "int8"), ("tiny_fp16", "fp16")):
        config = repository.parse((repo / name / "config.pbtxt").read_text())
        assert config == repository.onnx_config(model, variant)
        assert (repo / name / "labels.txt").read_text() == "cat\ndog\nowl\n"
        session = ort.InferenceSession(str(repo / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
        (inp,), (out,) = session.get_inputs(), session.get_outputs()
        assert (inp.name, inp.shape, out.name, out.shape) == ("pixels", ["batch", 6, 6, 1], "scores", ["batch", 3])
        scores = session.run(None, {"pixels": np.zeros((3, 6, 6, 1), np.float32)})[0]
        assert scores.shape == (3, 3) and scores.dtype == np.float32
    assert "parity gate" in proc.stdout and "done in" in proc.stdout, "long steps report progress with timings"


def test_the_card_carries_parity_figures_accuracy_size_and_ops_and_the_state_the_runs_figures(exported):
    spec_path, repo, _ = exported
    card = json.loads((repo / "tiny_int8" / "card.json").read_text())
    assert [v["variant"] for v in card["variants"]] == ["fp32", "int8", "fp16"]
    fp32 = card["variants"][0]
    assert max(fp32["max_abs_diff"].values()) <= 1e-4 and fp32["argmax_agreement"] == 1.0
    assert fp32["size_kib"] > 0 and "Conv" in fp32["ops"]
    assert card["source_accuracy"] == 1.0 and card["heldout_samples"] == 40
    markdown = (repo / "tiny" / "card.md").read_text()
    assert "| `tiny_fp16` | fp16 |" in markdown and "QuantizeLinear" in markdown
    state = read_state(repo / "tiny_int8")
    assert state.fingerprint == pipeline.fingerprint(load_spec(spec_path).models[0])
    assert set(state.measurements["latency_us"]["tiny_int8"]) == {"1", "8"}
    assert set(state.reference_predictions["scores"]["shares"]) == {"cat", "dog", "owl"}
    assert "fingerprint" not in card and "latency_us" not in fp32, "the card is documentation, not run state"


def test_a_forced_re_export_rewrites_the_state_but_leaves_the_cards_byte_for_byte(exported, tmp_path):
    spec_path, repo, _ = exported
    copy = tmp_path / "model_repository"
    shutil.copytree(repo, copy)
    cards = {p: p.read_bytes() for p in copy.glob("*/card.*")}
    (copy / "tiny" / STATE_FILE).write_text("{}")

    proc = export_cli("--spec", str(spec_path), "--repository", str(copy), "--force")

    assert proc.returncode == 0, proc.tail
    assert {p: p.read_bytes() for p in copy.glob("*/card.*")} == cards
    assert read_state(copy / "tiny").fingerprint is not None


def test_a_second_export_with_nothing_changed_does_no_work_and_says_so(exported):
    spec_path, repo, _ = exported
    before = {p: p.stat().st_mtime_ns for p in repo.rglob("*")}
    proc = export_cli("--spec", str(spec_path), "--repository", str(repo))
    assert proc.returncode == 0, proc.tail
    assert "nothing to do" in proc.stdout, proc.tail
    assert {p: p.stat().st_mtime_ns for p in repo.rglob("*")} == before


def test_a_failing_gate_fails_the_export_and_leaves_the_previous_repository_untouched(exported, tiny_model, tmp_path):
    _, repo, _ = exported
    previous = tmp_path / "model_repository"
    shutil.copytree(repo, previous)
    before = snapshot(previous)
    # fp16 weights always differ from fp32 a little, so a zero tolerance must fail the gate.
    spec_path = write_spec(tmp_path, tiny_spec(tiny_model, source=repo / "tiny" / "1" / "model.onnx",
                                               gate={"fp16_max_abs_diff": 0.0}))
    proc = export_cli("--spec", str(spec_path), "--repository", str(previous))
    assert proc.returncode == 1, proc.tail
    assert "fp16 'scores': max |diff|" in proc.stderr and "tolerance 0" in proc.stderr, proc.tail
    assert snapshot(previous) == before
    assert not list(tmp_path.glob(".staging*")), "the staging copy is removed after a failure"


def test_a_wrong_spec_exits_2_before_any_work(tmp_path, tiny_model):
    spec_path = write_spec(tmp_path, tiny_spec(tiny_model, max_batch_size=-4))
    proc = export_cli("--spec", str(spec_path), "--repository", str(tmp_path / "repo"))
    assert proc.returncode == 2, proc.tail
    assert "model 'tiny', field 'max_batch_size': got -4; allowed: an integer >= 1" in proc.stderr
    assert not (tmp_path / "repo").exists()


def test_an_unknown_only_name_lists_the_models_of_the_spec(exported):
    spec_path, repo, _ = exported
    proc = export_cli("--spec", str(spec_path), "--repository", str(repo), "--only", "tinny")
    assert proc.returncode == 2 and "tiny, tiny_fp16, tiny_int8" in proc.stderr, proc.tail


def test_clean_removes_generated_models_and_keeps_committed_files(exported, tmp_path):
    spec_path, repo, _ = exported
    copy = tmp_path / "model_repository"
    shutil.copytree(repo, copy)
    proc = export_cli("--spec", str(spec_path), "--repository", str(copy), "--clean")
    assert proc.returncode == 0, proc.tail
    assert not list(copy.rglob("*.onnx"))
    assert (copy / "tiny" / "config.pbtxt").is_file() and (copy / "tiny" / "card.md").is_file()


def test_help_explains_the_steps_and_the_flags():
    proc = export_cli("--help")
    assert proc.returncode == 0
    for text in ("--only NAME", "--force", "--clean", "--spec PATH", "--repository PATH", "parity gate", "examples:"):
        assert text in proc.stdout


def test_an_export_refuses_to_run_while_another_writes_the_same_repository(exported):
    import fcntl

    spec_path, repo, _ = exported
    with open(repo.parent / f".export-{repo.name}.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc = export_cli("--spec", str(spec_path), "--repository", str(repo))
    assert proc.returncode == 1 and "another export is writing" in proc.stderr, proc.tail


def test_an_unknown_trainer_is_a_spec_error_naming_the_trainers_there_are(tmp_path, tiny_model):
    missing = tmp_path / "not_there.keras"
    spec_path = write_spec(tmp_path, tiny_spec(tiny_model, source=missing, trainer="digitz"))
    proc = export_cli("--spec", str(spec_path), "--repository", str(tmp_path / "repo"))
    assert proc.returncode == 2, proc.tail
    assert f"field 'trainer': got 'digitz'; allowed: {', '.join(sorted(TRAINERS))}" in proc.stderr


def test_a_missing_source_without_a_trainer_says_what_is_missing_and_how_to_fix_it(tmp_path, tiny_model):
    missing = tmp_path / "not_there.keras"
    spec_path = write_spec(tmp_path, tiny_spec(tiny_model, source=missing))
    proc = export_cli("--spec", str(spec_path), "--repository", str(tmp_path / "repo"))
    assert proc.returncode == 1, proc.tail
    assert f"missing {missing}" in proc.stderr and "set `trainer`" in proc.stderr
    assert not (tmp_path / "repo").exists()


def test_a_variant_dropped_from_the_spec_is_removed_from_the_repository(exported, tiny_model, tmp_path):
    _, repo, _ = exported
    copy = tmp_path / "model_repository"
    shutil.copytree(repo, copy)
    source = tmp_path / "tiny.onnx"
    shutil.copy2(repo / "tiny" / "1" / "model.onnx", source)
    spec_path = write_spec(tmp_path, tiny_spec(tiny_model, source=source, variants=["fp32", "int8"]))
    proc = export_cli("--spec", str(spec_path), "--repository", str(copy))
    assert proc.returncode == 0, proc.tail
    assert "removing tiny_fp16 (no longer in models.toml)" in proc.stdout
    assert sorted(p.name for p in copy.iterdir()) == ["tiny", "tiny_int8"]


def test_an_exported_model_is_out_of_date_once_onnxruntime_is_upgraded(exported, monkeypatch):
    from export import pipeline

    spec_path, repo, _ = exported
    model = load_spec(spec_path).models[0]
    assert pipeline.is_current(model, repo)
    real = pipeline.package_version
    monkeypatch.setattr(pipeline, "package_version", lambda name: "99.0" if name == "onnxruntime" else real(name))
    assert not pipeline.is_current(model, repo)


def test_an_optional_variant_that_fails_its_gate_is_left_out_and_the_others_are_exported(exported, tiny_model,
                                                                                         tmp_path):
    from export import pipeline

    _, repo, _ = exported
    spec = specs.load(tmp_path, tiny_spec(tiny_model, source=repo / "tiny" / "1" / "model.onnx",
                                                    optional_variants=["fp16"],
                                                    gate={"fp16_max_abs_diff": 0.0}))
    lines = []
    target = tmp_path / "model_repository"
    pipeline.run(spec, pipeline.Options(target), lines.append)
    assert sorted(p.name for p in target.iterdir()) == ["tiny", "tiny_int8"]
    reason = read_state(target / "tiny").left_out["fp16"]["reason"]
    assert "left_out" not in json.loads((target / "tiny" / "card.json").read_text()), "state, not documentation"
    assert f"**Left out: `tiny_fp16` (fp16).** {reason}" in (target / "tiny" / "card.md").read_text()
    assert "fp16 'scores': max |diff|" in reason and "tolerance 0" in reason
    assert any("warning: tiny_fp16 is left out" in line for line in lines), lines
    assert pipeline.is_current(spec.models[0], target), "a second export has nothing to do"


def test_a_model_with_ops_tensorrt_cannot_run_is_served_without_the_accelerator_and_says_so(tiny_model, tmp_path):
    from onnx import TensorProto, helper, numpy_helper, save

    from export import pipeline

    graph = helper.make_graph(  # Hardmax: ONNX Runtime runs it, TensorRT's ONNX parser does not import it
        [helper.make_node("Flatten", ["pixels"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["logits"]),
         helper.make_node("Hardmax", ["logits"], ["scores"])], "hardmax",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 6, 6, 1])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(np.random.default_rng(0).normal(0, 1, (36, 3)).astype(np.float32), "w")])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "hardmax.onnx")
    spec = specs.load(tmp_path, tiny_spec(tiny_model, source=tmp_path / "hardmax.onnx",
                                                    variants=["fp32"]))
    lines = []
    target = tmp_path / "model_repository"
    pipeline.run(spec, pipeline.Options(target), lines.append)
    config = repository.parse((target / "tiny" / "config.pbtxt").read_text())
    assert config == repository.onnx_config(spec.models[0], "fp32", tensorrt=False)
    assert not config.optimization.execution_accelerators.gpu_execution_accelerator
    assert "without_tensorrt" not in json.loads((target / "tiny" / "card.json").read_text())
    assert read_state(target / "tiny").without_tensorrt == {"tiny": ["Hardmax"]}
    assert "**Without TensorRT: `tiny`.** Ops TensorRT's ONNX parser cannot import: Hardmax" in (
        target / "tiny" / "card.md").read_text()
    assert any("warning: tiny: ops TensorRT cannot run: Hardmax; served without the TensorRT" in line
               for line in lines), lines
    assert pipeline.is_current(spec.models[0], target), "the config without TensorRT is what a second export expects"
