"""A Keras model that takes raw strings through a `TextVectorization` layer, the way Keras's text tutorials build it,
trained tiny here and taken through models.toml alone: the export splits the layer off into a generated python step,
exports the numeric rest to ONNX and serves both behind an ensemble under the model's own name; called with raw
strings, the served model answers what the Keras model does, and its tokens are the layer's own.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import specs
from tests.conftest import launch_triton

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
LENGTH = 8
TRAIN = ["A moving, GREAT film!", "dull and far too long...", "great acting; great story", "I hated it - boring",
         "Straße café: wonderful", "ÜBER-long, tedious plot", "what a lovely surprise", "not good, not great"]
# Unseen words (OOV), ASCII upper case and non-ASCII case (lowered by Keras only for ASCII), punctuation inside words,
# runs of whitespace and tabs, a no-break space (not ASCII whitespace), texts longer than LENGTH tokens.
TEXTS = ["GREAT film", "a  moving\tstory, truly great!!", "Über café straße", "dull\u00a0plot", "x" * 40,
         "i hated it: too long, too dull, too boring and far too tedious", "what?", "lovely-surprise great acting"]


def opinions(source: str = "models/opinions.keras") -> dict:
    """Raw text in, through TextVectorization (the export splits it off into a python step)."""
    return specs.model("opinions", source=source, heldout="models/heldout.npz", tensorrt=False,
                       inputs=[specs.tensor("text", [1], "TYPE_STRING")],
                       outputs=[specs.tensor("probabilities", [2], labels=["negative", "positive"])])


def colours() -> dict:
    """A categorical string through StringLookup."""
    return specs.model("colours", source="models/colours.keras", heldout="models/colours.npz",
                       inputs=[specs.tensor("colour", [1], "TYPE_STRING")], outputs=[specs.tensor("warmth", [1])])


COLOURS = ["red", "orange", "blue", "teal", "grün", "Red", "purple", "", "orange "]


def build(project: Path) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    vectorize = keras.layers.TextVectorization(max_tokens=40, ngrams=2, output_sequence_length=LENGTH)
    vectorize.adapt(TRAIN)
    text = keras.Input((1,), dtype="string", name="text")
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(41, 8)(vectorize(text)))
    net = keras.Model(text, keras.layers.Dense(2, activation="softmax")(pooled))
    net.compile("adam", "sparse_categorical_crossentropy")
    net.fit(tf.constant(np.array(TRAIN, dtype=object)[:, None]), np.array([1, 0, 1, 0, 1, 0, 1, 0]), epochs=2,
            verbose=0)
    (project / "models").mkdir()
    net.save(project / "models" / "opinions.keras")
    heldout = np.array(TRAIN + TEXTS)
    np.savez(project / "models" / "heldout.npz", x=heldout, y=keras_outputs(net, list(heldout)).argmax(axis=1))
    # A categorical string feature through StringLookup (exact strings; unknown ones get the OOV id).
    lookup = keras.layers.StringLookup(vocabulary=["red", "orange", "blue", "teal", "grün"])
    colour = keras.Input((1,), dtype="string", name="colour")
    embedded = keras.layers.Flatten()(keras.layers.Embedding(6, 3)(lookup(colour)))
    keras.Model(colour, keras.layers.Dense(1)(embedded)).save(project / "models" / "colours.keras")
    np.savez(project / "models" / "colours.npz", x=np.array(COLOURS[:5] * 2), y=np.zeros(10, np.int64))


def keras_outputs(net, texts: list[str]) -> np.ndarray:
    import tensorflow as tf

    return np.asarray(net(tf.constant(np.array(texts, dtype=object)[:, None])))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    project = tmp_path_factory.mktemp("keras_text")
    build(project)
    specs.write_spec(project, opinions(), colours())
    result = subprocess.run([sys.executable, "-m", "export", "--spec", str(project / "models.toml"), "--repository",
                             str(project / "model_repository")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    assert "tokens identical for 100.00% of texts" in result.stdout, result.stdout[-3000:]
    return project


@pytest.fixture(scope="module")
def server(project, tmp_path_factory):
    with launch_triton(project / "model_repository", tmp_path_factory.mktemp("triton")) as triton:
        yield triton


@pytest.fixture(scope="module")
def keras_model(project):
    import keras

    return keras.saving.load_model(project / "models" / "opinions.keras", compile=False)


def test_the_export_splits_the_layer_off_behind_an_ensemble_under_the_models_name(project):
    from core import repository

    repo = project / "model_repository"
    ensemble = repository.parse((repo / "opinions" / "config.pbtxt").read_text())
    assert ensemble.platform == "ensemble" and ensemble.input[0].data_type == repository.mc.TYPE_STRING
    assert [s.model_name for s in ensemble.ensemble_scheduling.step] == ["opinions_preprocess", "opinions_numeric"]
    numeric = repository.parse((repo / "opinions_numeric" / "config.pbtxt").read_text())
    assert (numeric.input[0].name, list(numeric.input[0].dims)) == ("token_ids", [LENGTH])
    assert (repo / "opinions_preprocess" / "1" / "text_vectorization.json").is_file()


def test_raw_strings_are_served_equal_to_the_keras_model(project, server, keras_model):
    import modelport

    texts = ["a GREAT, moving story", "too long and dull\u2003indeed", "ÉTÉ straße boring?"]  # not held out
    with modelport.Client(server.http_url) as client:
        served = client.infer("opinions", np.array(texts, dtype=object)[:, None])["probabilities"]
    assert np.max(np.abs(served - keras_outputs(keras_model, texts))) <= 1e-4


def test_a_string_lookup_model_is_served_equal_to_keras_unknown_strings_included(project, server):
    import keras

    import modelport

    net = keras.saving.load_model(project / "models" / "colours.keras", compile=False)
    known = [c for c in COLOURS if c.strip()]  # the served step refuses empty and whitespace-only texts
    with modelport.Client(server.http_url) as client:
        served = client.infer("colours", np.array(known, dtype=object)[:, None])["warmth"]
    assert np.max(np.abs(served - keras_outputs(net, known))) <= 1e-4


def test_the_served_tokens_are_the_layers_own(project, server, keras_model):
    import modelport
    import tensorflow as tf

    texts = TEXTS + ["Great great GREAT", "\tleading and trailing  "]
    with modelport.Client(server.http_url) as client:
        served = client.infer("opinions_preprocess", np.array(texts, dtype=object)[:, None])["token_ids"]
    layer = keras_model.get_layer(index=1)
    np.testing.assert_array_equal(served, np.asarray(layer(tf.constant(np.array(texts, dtype=object)[:, None]))))


def test_the_encoding_reproduces_the_layer_on_every_standardize_and_split_setting(tmp_path):
    import keras
    import tensorflow as tf

    from export import keras_text

    texts = TRAIN + TEXTS + ["", "   ", "ünïcode ÀÉÎ", "a\u00a0b\u2003c d"]
    for standardize in (None, "lower", "strip_punctuation", "lower_and_strip_punctuation"):
        for split, ngrams in (("whitespace", None), ("whitespace", (1, 3)), ("character", 2), (None, None)):
            layer = keras.layers.TextVectorization(standardize=standardize, split=split, ngrams=ngrams,
                                                   output_sequence_length=6)
            layer.adapt(TRAIN)
            settings = keras_text.settings(layer)
            served = keras_text.served_encoding().from_settings(settings).encode(texts)
            expected = np.asarray(layer(tf.constant(np.array(texts, dtype=object)[:, None])))  # as Input((1,))
            np.testing.assert_array_equal(served, expected, err_msg=f"standardize={standardize} split={split} "
                                                                    f"ngrams={ngrams}")


def test_the_lookup_encoding_reproduces_string_lookup_with_and_without_a_mask_token():
    import keras
    import tensorflow as tf

    from export import keras_text

    texts = ["red", "Red", "blue", "", " red", "grün"]
    for mask in (None, ""):
        layer = keras.layers.StringLookup(mask_token=mask)
        layer.adapt(["red", "green", "grün", "red"])
        served = keras_text.served_encoding().from_settings(keras_text.settings(layer)).encode(texts)
        np.testing.assert_array_equal(served, np.asarray(layer(tf.constant(np.array(texts, dtype=object)[:, None]))))


@pytest.mark.parametrize(("layer", "allowed"), [
    ("Hashing", "IntegerLookup and Hashing on strings are not split off"),
    ("StringLookup", "num_oov_indices 1"),
    ("TextVectorization", 'output_mode "int" with an output_sequence_length'),
])
def test_a_string_layer_the_export_cannot_reproduce_is_refused_naming_it(tmp_path, layer, allowed):
    import keras

    from core.errors import SpecError
    from core.spec import load_spec

    text = keras.Input((1,), dtype="string", name="text")
    if layer == "Hashing":
        ids = keras.layers.Hashing(4)(text)
    elif layer == "StringLookup":
        ids = keras.layers.StringLookup(vocabulary=["a", "b"], num_oov_indices=2)(text)
    else:  # without output_sequence_length the layer pads to the longest text of each batch
        ids = keras.layers.TextVectorization(vocabulary=["a", "b"])(text)
    keras.Model(text, keras.layers.Dense(2)(keras.layers.Embedding(4, 2)(ids)[:, 0])).save(tmp_path / "m.keras")
    specs.write_spec(tmp_path, opinions(source="m.keras"), colours())
    with pytest.raises(SpecError, match=r"model 'opinions', field 'text.*" + re.escape(allowed)):
        load_spec(tmp_path / "models.toml")


def test_the_load_test_leaves_the_numeric_part_without_payloads_and_names_the_fix(project):
    from core.spec import load_spec
    from core.measure import payloads

    targets = {t.name: t for t in payloads.targets(load_spec(project / "models.toml"))}
    assert {"opinions", "opinions_preprocess", "opinions_numeric"} <= set(targets)
    with pytest.raises(payloads.ScenarioError, match="opinions_numeric.*no load-test payloads.*`samples`"):
        payloads.select(tuple(targets.values()), ["opinions_numeric"])


def test_only_the_models_name_builds_the_parts_it_is_split_into(project):
    from export import pipeline
    from core.spec import load_spec

    spec = load_spec(project / "models.toml")
    assert [m.name for m in pipeline.select(spec, ("opinions",))] == ["opinions", "opinions_numeric",
                                                                       "opinions_preprocess"]
    assert [m.name for m in pipeline.select(spec, ("opinions_numeric",))] == ["opinions_numeric"], (
        "a generated part alone rebuilds only itself")
