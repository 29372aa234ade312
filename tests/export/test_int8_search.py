"""INT8 searches for a recipe that passes its gate; an optional variant no recipe passes is left out, a required one
fails the export. The tabular model is the one from issue 8: a Normalization layer adapted on scikit-learn's
load_breast_cancer (30 features of very different scales), Dense, Dropout, Dense softmax, trained here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from core import repository
from core.heldout import load_npz
from export import optimize, pipeline, reference
from export.repository import committed_files
from core.errors import ParityError
from core.spec import load_spec
from core.state import read_state
from tests import specs
from tests.export.test_pipeline import export_cli, snapshot

LIMIT = 1.0  # the default int8_max_accuracy_drop, in points


def cancer_spec(directory: Path, source: Path, optional: bool) -> Path:
    entry = specs.model("cancer", source=source, heldout=directory / "heldout.npz",
                        calibration=directory / "calibration.npz", variants=["fp32", "int8"],
                        optional_variants=["int8"] if optional else None, max_batch_size=32,
                        inputs=[specs.tensor("features", [30])],
                        outputs=[specs.tensor("probabilities", [2], labels=["malignant", "benign"])])
    return specs.write_spec(directory, entry,
                            filename=f"models-{source.suffix[1:]}-{'optional' if optional else 'required'}.toml")


@pytest.fixture(scope="module")
def cancer(tmp_path_factory):
    """The tabular Keras model trained on load_breast_cancer, exported once through the CLI (int8 optional)."""
    import keras
    from sklearn.datasets import load_breast_cancer

    from export.data.split import stratified_split

    directory = tmp_path_factory.mktemp("cancer")
    data = load_breast_cancer()
    x, y = data.data.astype(np.float32), data.target.astype(np.int64)
    train, heldout = stratified_split(y, 0.25, seed=0)
    keras.utils.set_random_seed(0)
    normalization = keras.layers.Normalization()
    normalization.adapt(x[train])
    inputs = keras.Input((30,), name="features")
    hidden = keras.layers.Dropout(0.2)(keras.layers.Dense(32, activation="relu")(normalization(inputs)))
    net = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(hidden))
    net.compile("adam", "sparse_categorical_crossentropy")
    net.fit(x[train], y[train], epochs=30, batch_size=32, verbose=0)
    net.save(directory / "cancer.keras")
    np.savez(directory / "heldout.npz", x=x[heldout], y=y[heldout])
    np.savez(directory / "calibration.npz", x=x[train])
    spec_path = cancer_spec(directory, directory / "cancer.keras", optional=True)
    repo = directory / "model_repository"
    proc = export_cli("--spec", str(spec_path), "--repository", str(repo))
    assert proc.returncode == 0, proc.tail
    return directory, spec_path, repo, proc


def card(repo: Path, name: str = "cancer") -> dict:
    return json.loads((repo / name / "card.json").read_text())


def test_the_tabular_model_fails_the_default_int8_recipe_and_gets_the_first_recipe_that_passes(cancer):
    _, _, repo, proc = cancer
    recipes = card(repo)["int8_recipes"]
    print(f"\nint8 recipes on the breast-cancer model (source accuracy {card(repo)['source_accuracy']:.2%} on "
          f"{card(repo)['heldout_samples']} held-out rows):",  # the figures the note records
          ", ".join(f"{r['recipe']} {r['accuracy_drop_points']} points ({r['result']})" for r in recipes))
    first, last = recipes[0], recipes[-1]
    assert first["recipe"] == "minmax" and first["result"] == "fails" and first["accuracy_drop_points"] > 10
    assert last["result"] == "passes" and last["accuracy_drop_points"] <= LIMIT
    assert all(r["result"] == "fails" for r in recipes[:-1]), "the first recipe that passes wins"
    assert [r["recipe"] for r in recipes] == ["minmax", "entropy", "percentile", "compute-ops"]
    (int8,) = [v for v in card(repo)["variants"] if v["variant"] == "int8"]
    assert int8["recipe"] == "compute-ops" and int8["accuracy"] >= card(repo)["source_accuracy"] - LIMIT / 100
    assert "QuantizeLinear" in int8["ops"] and "Sub" in int8["ops"], "normalization stays float"
    markdown = (repo / "cancer_int8" / "card.md").read_text()
    assert "## INT8 recipe search" in markdown and "| compute-ops |" in markdown and "int8 (compute-ops)" in markdown
    assert "int8 recipe minmax" in proc.stdout and "compute-ops" in proc.stdout and ": passes" in proc.stdout
    assert (repo / "cancer_int8" / "1" / "model.onnx").is_file()


def test_excluding_the_nodes_with_the_largest_measured_error_finds_the_normalization(cancer, monkeypatch):
    directory, spec_path, repo, _ = cancer
    model = load_spec(spec_path).models[0]
    heldout = load_npz(model, model.source.onnx.heldout, with_labels=True)
    calibration = load_npz(model, model.source.onnx.calibration, with_labels=False)
    expected = reference.reference_outputs(model, heldout)
    monkeypatch.setattr(optimize, "RECIPES", (optimize.DEFAULT,))  # straight from the default to exclusion
    lines = []
    search = optimize.search_int8(onnx.load(repo / "cancer" / "1" / "model.onnx"), calibration,
                                  pipeline._int8_judge(model, heldout, expected), lines.append)
    assert [a.recipe.name for a in search.attempts] == ["minmax", "exclude-1"], lines
    (excluded,) = search.winner.recipe.exclude
    nodes = {n.name: n for n in onnx.load(repo / "cancer" / "1" / "model.onnx").graph.node}
    assert nodes[excluded].op_type == "Mul" and "normalization" in excluded, "the normalization's scaling"
    assert search.winner.verdict.accuracy_drop <= LIMIT and search.proto is not None
    assert any("nodes adding the most quantization error" in line for line in lines)


def test_an_optional_int8_that_no_recipe_passes_is_left_out_and_fp32_is_still_exported(cancer, tmp_path):
    directory, _, repo, _ = cancer
    previous = tmp_path / "model_repository"
    shutil.copytree(repo, previous)  # holds cancer_int8 from an earlier export: it must go
    spec_path = cancer_spec(directory, repo / "cancer" / "1" / "model.onnx", optional=True)
    # A zero budget leaves only the default recipe, which fails by ~30 points: no recipe passes.
    proc = export_cli("--spec", str(spec_path), "--repository", str(previous), "--int8-search-seconds", "0")
    assert proc.returncode == 0, proc.tail
    assert "warning: cancer_int8 is left out (an optional variant)" in proc.stdout, proc.tail
    assert "the best, minmax: int8 'probabilities': argmax agreement" in proc.stdout, proc.tail
    assert sorted(p.name for p in previous.iterdir()) == ["cancer"]
    record = read_state(previous / "cancer").left_out["int8"]
    assert record["triton_name"] == "cancer_int8" and "accuracy drop (points) = 36.6" in record["reason"]
    assert "Left out: `cancer_int8`" in (previous / "cancer" / "card.md").read_text()
    model = load_spec(spec_path).models[0]
    assert repository.served_names(model, previous) == ("cancer",)
    assert set(committed_files(model, repository.served_variants(model, previous))) == {
        "cancer/config.pbtxt", "cancer/labels.txt"}
    again = export_cli("--spec", str(spec_path), "--repository", str(previous))
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.tail


def test_a_required_int8_that_no_recipe_passes_fails_the_export_listing_every_recipe(cancer, tmp_path, monkeypatch):
    directory, _, repo, _ = cancer
    previous = tmp_path / "model_repository"
    shutil.copytree(repo, previous)
    before = snapshot(previous)
    spec = load_spec(cancer_spec(directory, repo / "cancer" / "1" / "model.onnx", optional=False))
    figures = iter(range(50, 0, -1))
    monkeypatch.setattr(pipeline, "_int8_judge", lambda *args: lambda blob: optimize.Verdict(
        False, float(next(figures)), "refused by the test's judge"))
    with pytest.raises(ParityError) as raised:
        pipeline.run(spec, pipeline.Options(previous, force=True), lambda line: None)
    message = str(raised.value)
    tried = [f.check.removeprefix("recipe ") for f in raised.value.failures]
    assert tried[:4] == ["minmax", "entropy", "percentile", "compute-ops"] and tried[4].startswith("exclude-")
    assert all(f"cancer_int8, recipe {name}: refused by the test's judge" in message for name in tried), message
    assert "optional_variants" in message and "left untouched" in message
    assert snapshot(previous) == before
    assert not list(tmp_path.glob(".staging*"))
