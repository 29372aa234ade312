"""Explanations through the real Triton: digit heatmaps fall on the ink, review words that carry the sentiment come
first, and a tabular model's Kernel SHAP values are its exact Shapley values, summing to prediction - baseline."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import modelport
from tests.conftest import ROOT, launch_triton

pytestmark = pytest.mark.integration

# Short reviews whose sentiment sits in one word (the second item); written before looking at any attribution.
REVIEWS = [
    ("a wonderful film", "wonderful"), ("the acting was terrible", "terrible"),
    ("what a delightful surprise", "delightful"), ("a dull and boring mess", "dull"),
    ("the story is beautiful", "beautiful"), ("a boring movie", "boring"), ("the plot is awful", "awful"),
    ("an excellent cast", "excellent"), ("the dialogue is stupid", "stupid"),
    ("a brilliant performance", "brilliant"), ("this film is a mess", "mess"), ("a charming comedy", "charming"),
    ("the worst film of the year", "worst"), ("a masterpiece of a film", "masterpiece"),
]
WEIGHTS = np.array([1.5, -2.0, 0.5, 0.0], np.float32)
BIAS = np.float32(0.25)


@pytest.fixture(scope="module")
def client(triton):
    with modelport.Client(triton.http_url) as client:
        yield client


def ink_share(client, images: np.ndarray) -> tuple[float, float]:
    """(share of the predicted class's positive heatmap mass on ink pixels, share of the pixels that are ink)."""
    on_ink, ink_pixels = [], []
    for image in images:
        heat = np.maximum(client.explain("digits", image).of(), 0)
        ink = image[..., 0] > 0
        on_ink.append(heat[ink].sum() / heat.sum())
        ink_pixels.append(ink.mean())
    return float(np.mean(on_ink)), float(np.mean(ink_pixels))


def test_digit_heatmaps_put_most_of_their_positive_mass_on_the_ink(client):
    heldout = np.load(ROOT / "models/digits/heldout.npz")
    on_ink, ink_pixels = ink_share(client, heldout["x"][:20])
    # Measured: 0.93 of the mass on the ink, which is 0.53 of the pixels.
    assert on_ink > 0.75 and on_ink > ink_pixels + 0.2, (on_ink, ink_pixels)


def test_digit_explanation_keeps_to_its_budget_and_names_the_classes(client):
    image = np.load(ROOT / "models/digits/heldout.npz")["x"][0]
    found = client.explain("digits", image, budget=1)
    assert found.method == "occlusion" and found.requests == 1 and found.items <= 32
    assert found.labels == tuple("0123456789") and found.attributions.shape == (10, 8, 8)
    assert found.label == client.classify_digits(image[..., 0]).label


def test_the_sentiment_word_is_the_top_attributed_word_in_most_reviews(client):
    hits = []
    for text, word in REVIEWS:
        found = client.explain("sentiment", text)
        hits.append(found.features[int(np.argmax(found.of()))] == word)
    # Measured: 12 of 14 (saturated probabilities leave "a dull and boring mess" all-zero; "charming" loses).
    assert np.mean(hits) >= 0.8, [t for (t, _), hit in zip(REVIEWS, hits) if not hit]


def logistic_regression_onnx(path: Path) -> None:
    """probabilities = [1 - p, p], p = sigmoid(features . WEIGHTS + BIAS): a tabular classifier in plain ONNX."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("MatMul", ["features", "w"], ["z0"]),
        helper.make_node("Add", ["z0", "b"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["p"]),
        helper.make_node("Sub", ["one", "p"], ["q"]),
        helper.make_node("Concat", ["q", "p"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "tabular", [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2])],
        initializer=[numpy_helper.from_array(WEIGHTS[:, None], "w"), numpy_helper.from_array(np.array([BIAS]), "b"),
                     numpy_helper.from_array(np.array([1.0], np.float32), "one")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True)
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def tabular(tmp_path_factory):
    """A repository holding only `tabular`, served by its own Triton."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    repository = tmp_path_factory.mktemp("repository")
    logistic_regression_onnx(repository / "tabular" / "1" / "model.onnx")
    config = mc.ModelConfig(name="tabular", backend="onnxruntime", max_batch_size=32,
                            default_model_filename="model.onnx")
    config.input.add(name="features", data_type=mc.TYPE_FP32, dims=[4])
    config.output.add(name="probabilities", data_type=mc.TYPE_FP32, dims=[2], label_filename="labels.txt")
    (repository / "tabular" / "config.pbtxt").write_text(text_format.MessageToString(config))
    (repository / "tabular" / "labels.txt").write_text("bad\ngood\n")
    with launch_triton(repository, tmp_path_factory.mktemp("triton")) as server:
        yield server


def logistic(x: np.ndarray) -> np.ndarray:
    p = 1 / (1 + np.exp(-(x @ WEIGHTS.astype(np.float64) + BIAS)))
    return np.stack([1 - p, p], axis=-1)


def exact_shapley(x: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """The definition: each feature's mean marginal contribution over every order of adding the features."""
    phi = np.zeros((2, len(x)))
    orders = list(itertools.permutations(range(len(x))))
    for order in orders:
        current = baseline.astype(np.float64)
        for i in order:
            before = logistic(current)
            current[i] = x[i]
            phi[:, i] += logistic(current) - before
    return phi / len(orders)


def test_tabular_attributions_sum_to_prediction_minus_baseline_and_are_the_shapley_values(tabular):
    x = np.array([1.0, -0.5, 2.0, 3.0], np.float32)
    baseline = np.array([0.2, 0.1, -0.3, 0.0], np.float32)
    with modelport.Client(tabular.http_url) as client:
        found = client.explain("tabular", x, baseline=baseline)
        served = client.predict("tabular", np.stack([x, baseline]))
    prediction, reference = (np.array(list(item.prediction.scores.values())) for item in served)
    assert found.method == "kernel-shap" and found.labels == ("bad", "good") and found.label == "good"
    assert found.features == ("features[0]", "features[1]", "features[2]", "features[3]")
    np.testing.assert_allclose(found.attributions.sum(axis=1), prediction - reference, atol=1e-5)
    np.testing.assert_allclose(found.attributions, exact_shapley(x, baseline), atol=1e-5)
    assert found.of("good")[3] == pytest.approx(0, abs=1e-6)  # a feature with weight 0 gets nothing


def modelport_cli(*args: str) -> tuple[int, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "client"))
    done = subprocess.run([sys.executable, "-m", "modelport", *args], capture_output=True, text=True, timeout=60,
                          env=env, cwd=ROOT)
    return done.returncode, done.stdout + done.stderr


def test_the_cli_explains_a_text_and_an_image(triton, tmp_path):
    code, output = modelport_cli("--url", triton.http_url, "explain", "sentiment", "the acting was terrible")
    assert code == 0, output
    words = dict(line.split("\t") for line in output.splitlines()[1:])
    assert max(words, key=lambda w: float(words[w])) == "terrible", output
    image = tmp_path / "digit.npy"
    np.save(image, np.load(ROOT / "models/digits/heldout.npz")["x"][0])
    code, output = modelport_cli("--url", triton.http_url, "--json", "explain", "digits", str(image), "--budget", "2")
    assert code == 0, output
    found = json.loads(output)
    assert found["method"] == "occlusion" and found["requests"] <= 2
    assert np.array(found["attributions"]).shape == (10, 8, 8)
    code, output = modelport_cli("--url", triton.http_url, "explain", "digits", str(image), "--label", "ten")
    assert code == 4 and "no class 'ten'" in output, output


def test_the_readme_explain_example_prints_the_label_and_the_sentiment_word(triton):
    from tests.client.test_readme import examples

    (code,) = [block for block in examples() if ".explain(" in block]
    done = subprocess.run([sys.executable, "-c", code.replace('"127.0.0.1:8000"', repr(triton.http_url))],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT / "client")))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["negative", "terrible"], done.stdout


def test_every_client_flavour_explains_a_digit_alike(connect):
    image = np.load(ROOT / "models/digits/heldout.npz")["x"][3]
    client = connect()
    found = client.explain("digits", image, budget=2)
    assert found.method == "occlusion" and found.requests <= 2
    assert found.label == client.predict("digits", image).prediction.label
    heat = np.maximum(found.of(), 0)
    assert heat[image[..., 0] > 0].sum() > heat[image[..., 0] == 0].sum(), connect.variant
