"""A changed model is exported as a new numbered version beside the old ones, a candidate that stable keeps the
traffic from; the same model rewrites its version; old versions beyond keep_versions go, stable and canary never."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from core import lifecycle, repository
from core.spec import load_spec
from core.state import read_state
from export import pipeline
from tests.export.conftest import tiny_spec
from tests.specs import write_spec

VARIANTS = ["fp32", "int8"]
NAMES = ("tiny", "tiny_int8")


def export(spec_path: Path, repo: Path, force: bool = False) -> tuple[pipeline.Outcome, str]:
    lines: list[str] = []
    outcome = pipeline.run(load_spec(spec_path), pipeline.Options(repo, force=force, int8_search_seconds=5),
                           lines.append)
    return outcome, "\n".join(lines)


def changed_copy(source: Path, target: Path, scale: float) -> Path:
    """The ONNX model with its weights scaled: another model with the same contract."""
    model = onnx.load(source)
    for init in model.graph.initializer:
        values = numpy_helper.to_array(init)
        if values.dtype == np.float32 and values.size > 3:
            init.CopyFrom(numpy_helper.from_array(values * np.float32(scale), init.name))
    onnx.save(model, target)
    return target


def policy(directory: Path):
    return repository.parse((directory / "config.pbtxt").read_text()).version_policy


@pytest.fixture(scope="module")
def first(tmp_path_factory, tiny_model):
    """The tiny model exported once from an ONNX file (version 1), and a changed copy of that file."""
    work = tmp_path_factory.mktemp("versions")
    keras_spec = write_spec(work / "keras", tiny_spec(tiny_model, variants=VARIANTS))
    export(keras_spec, work / "seed")
    source = work / "tiny.onnx"
    shutil.copy2(work / "seed" / "tiny" / "1" / "model.onnx", source)
    changed = changed_copy(source, work / "tiny_changed.onnx", 1.5)
    spec_path = write_spec(work, tiny_spec(tiny_model, variants=VARIANTS, source=source))
    repo = work / "model_repository"
    outcome, log = export(spec_path, repo)
    assert outcome.built == ("tiny",), log
    return work, spec_path, changed, repo


def spec_with(work: Path, tiny_model, source: Path, name: str, **fields) -> Path:
    return write_spec(work / name, tiny_spec(tiny_model, variants=VARIANTS, source=source, **fields))


def test_a_first_export_is_version_1_with_the_config_the_spec_gives_and_no_lifecycle(first):
    _, spec_path, _, repo = first
    model = load_spec(spec_path).models[0]
    for name, variant in zip(NAMES, VARIANTS):
        assert lifecycle.versions_on_disk(repo / name) == (1,)
        assert lifecycle.read_lifecycle(repo / name) is None
        assert repository.parse((repo / name / "config.pbtxt").read_text()) == repository.onnx_config(model, variant)
        assert set(read_state(repo / name).versions) == {"1"}


def test_a_changed_model_is_a_candidate_version_beside_stable_in_every_variant(first, tiny_model, tmp_path):
    work, _, changed, repo = first
    copy = tmp_path / "model_repository"
    shutil.copytree(repo, copy)
    outcome, log = export(spec_with(tmp_path, tiny_model, changed, "changed"), copy)

    assert outcome.candidates == {"tiny": 2}, log
    for name in NAMES:
        assert lifecycle.versions_on_disk(copy / name) == (1, 2)
        assert (copy / name / "1" / "model.onnx").read_bytes() == (repo / name / "1" / "model.onnx").read_bytes()
        assert (copy / name / "2" / "model.onnx").read_bytes() != (repo / name / "1" / "model.onnx").read_bytes()
        assert lifecycle.read_lifecycle(copy / name) == lifecycle.Lifecycle(stable=1)
        assert list(policy(copy / name).specific.versions) == [1], "Triton serves stable only until a rollout"
        versions = read_state(copy / name).versions
        assert set(versions) == {"1", "2"} and versions["1"] == read_state(repo / name).versions["1"]
        assert set(versions["2"]["reference_predictions"]["scores"]["shares"]) == {"cat", "dog", "owl"}
    assert "version 2 written (tiny/2, tiny_int8/2) beside stable version 1" in log
    assert f"`python -m operate rollout start tiny --percent 10 --repository {copy.resolve()}`" in log


def test_the_same_model_exported_again_rewrites_its_version_instead_of_adding_one(first):
    _, spec_path, _, repo = first
    outcome, log = export(spec_path, repo, force=True)
    assert outcome.built == ("tiny",) and outcome.candidates == {}, log
    assert lifecycle.versions_on_disk(repo / "tiny") == (1,)
    assert policy(repo / "tiny").latest.num_versions == 1


def renamed_copy(source: Path, target: Path) -> Path:
    """The same model with other names for its weights (as tf2onnx names folded constants differently per run)."""
    model = onnx.load(source)
    renames = {init.name: f"renamed_{i}" for i, init in enumerate(model.graph.initializer)}
    for init in model.graph.initializer:
        init.name = renames[init.name]
    for node in model.graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
    onnx.save(model, target)
    return target


def test_other_bytes_with_the_same_outputs_are_the_same_model_not_a_new_version(first, tiny_model, tmp_path):
    work, spec_path, _, repo = first
    copy = tmp_path / "model_repository"
    shutil.copytree(repo, copy)
    renamed = renamed_copy(load_spec(spec_path).models[0].onnx.source, tmp_path / "renamed.onnx")
    outcome, log = export(spec_with(tmp_path, tiny_model, renamed, "renamed"), copy)
    assert outcome.built == ("tiny",) and outcome.candidates == {}, log
    assert lifecycle.versions_on_disk(copy / "tiny") == (1,)
    assert (copy / "tiny" / "1" / "model.onnx").read_bytes() != (repo / "tiny" / "1" / "model.onnx").read_bytes()


def test_old_versions_beyond_keep_versions_go_but_stable_stays(first, tiny_model, tmp_path):
    work, _, changed, repo = first
    copy = tmp_path / "model_repository"
    shutil.copytree(repo, copy)
    keep = {"lifecycle": {"keep_versions": 1}}
    export(spec_with(tmp_path, tiny_model, changed, "v2", **keep), copy)
    # stable 1 is kept although keep_versions is 1; a third version, with 2 promoted, removes 1
    assert lifecycle.versions_on_disk(copy / "tiny") == (1, 2)
    lifecycle.update(copy / "tiny", lambda lc: lifecycle.promote(lc, version=2, on_disk=(1, 2)))
    third = changed_copy(changed, tmp_path / "third.onnx", 0.5)
    outcome, log = export(spec_with(tmp_path, tiny_model, third, "v3", **keep), copy)

    assert lifecycle.versions_on_disk(copy / "tiny") == (2, 3), log
    assert lifecycle.versions_on_disk(copy / "tiny_int8") == (1, 3), "tiny_int8's own stable (1) stays"
    assert "removed versions beyond keep_versions ([model.lifecycle]): tiny/1" in log
    assert set(read_state(copy / "tiny").versions) == {"2", "3"}
    assert list(policy(copy / "tiny").specific.versions) == [2]


def test_a_config_only_change_rewrites_the_config_and_keeps_the_version_and_the_policy(first, tiny_model, tmp_path):
    work, _, changed, repo = first
    copy = tmp_path / "model_repository"
    shutil.copytree(repo, copy)
    export(spec_with(tmp_path, tiny_model, changed, "v2"), copy)
    outcome, log = export(spec_with(tmp_path, tiny_model, changed, "batching", max_queue_delay_microseconds=700), copy)
    assert outcome.built == ("tiny",) and outcome.candidates == {}, log
    assert lifecycle.versions_on_disk(copy / "tiny") == (1, 2)
    config = repository.parse((copy / "tiny" / "config.pbtxt").read_text())
    assert config.dynamic_batching.max_queue_delay_microseconds == 700
    assert list(config.version_policy.specific.versions) == [1]


def test_rollout_limits_are_not_part_of_the_fingerprint(first, tiny_model, tmp_path):
    work, spec_path, _, repo = first
    source = load_spec(spec_path).models[0].onnx.source
    plain = load_spec(spec_with(tmp_path, tiny_model, source, "plain")).models[0]
    limits = load_spec(spec_with(tmp_path, tiny_model, source, "limits",
                                 lifecycle={"max_error_rate": 0.5, "keep_versions": 7})).models[0]
    batching = load_spec(spec_with(tmp_path, tiny_model, source, "batching", max_queue_delay_microseconds=9)).models[0]
    assert pipeline.fingerprint(plain) == pipeline.fingerprint(limits) != pipeline.fingerprint(batching)


def test_an_action_taken_during_an_export_survives_its_swap(first, tiny_model, tmp_path, monkeypatch):
    work, _, changed, repo = first
    copy = tmp_path / "model_repository"
    shutil.copytree(repo, copy)
    export(spec_with(tmp_path, tiny_model, changed, "v2"), copy)
    real = pipeline.build_onnx

    def build_while_a_canary_starts(model, staging, options, log):
        lifecycle.update(copy / "tiny", lambda lc: lifecycle.start(lc, 2, (1, 2), percent=30))
        return real(model, staging, options, log)

    monkeypatch.setattr(pipeline, "build_onnx", build_while_a_canary_starts)
    export(spec_with(tmp_path, tiny_model, changed, "again", max_queue_delay_microseconds=800), copy)
    lc = lifecycle.read_lifecycle(copy / "tiny")
    assert (lc.stable, lc.canary, lc.percent) == (1, 2, 30.0)
    assert list(policy(copy / "tiny").specific.versions) == [1, 2]


def test_clean_keeps_older_versions_and_says_so(first, tiny_model, tmp_path):
    work, _, changed, repo = first
    copy = tmp_path / "model_repository"
    shutil.copytree(repo, copy)
    spec_path = spec_with(tmp_path, tiny_model, changed, "v2")
    export(spec_path, copy)
    lines: list[str] = []
    pipeline.clean(load_spec(spec_path), copy, lines.append)
    assert (copy / "tiny" / "1" / "model.onnx").is_file() and not (copy / "tiny" / "2" / "model.onnx").exists()
    assert "kept older versions, which the current sources cannot rebuild: tiny/1, tiny_int8/1" in "\n".join(lines)
    outcome, log = export(spec_path, copy)  # the newest is rebuilt as the same version, not a third
    assert outcome.candidates == {} and lifecycle.versions_on_disk(copy / "tiny") == (1, 2), log
    assert json.loads((copy / "tiny" / "lifecycle.json").read_text())["stable"] == 1
