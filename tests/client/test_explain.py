"""Explanations without a server: each method's plan run through a known numpy function, checked against what the
method must find (exact Shapley values from their permutation definition, the region an image score depends on, the
word a text score counts)."""

import dataclasses
import itertools
import math

import numpy as np
import pytest

from modelport.errors import InvalidInput
from modelport.explain import (KERNEL_SHAP, LEAVE_ONE_OUT, OCCLUSION, ExplainOptions, Target, coalitions, explain,
                               one_item)
from modelport.metadata import ModelMetadata, TensorSpec
from modelport.validation import Signature


def target(inputs, outputs=(("scores", "FP32", (-1, 2)),), max_batch_size=8, labels=None):
    meta = ModelMetadata(name="m", versions=("1",), platform="",
                         inputs=tuple(TensorSpec(n, d, s) for n, d, s in inputs),
                         outputs=tuple(TensorSpec(n, d, s) for n, d, s in outputs))
    return Target(signature=Signature(meta, max_batch_size), config=None, output=outputs[0][0], labels=labels)


def nonlinear(x: np.ndarray) -> np.ndarray:
    """Two class scores of five features with interactions."""
    a = x[:, 0] * x[:, 1] + np.sin(x[:, 2]) + x[:, 3] ** 2 - 0.5 * x[:, 4] * x[:, 0]
    return np.stack([a, np.tanh(a) + x[:, 4]], axis=1)


def shapley_by_permutations(f, x: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """phi_i = mean over orders of f(S + i) - f(S): the definition, independent of Kernel SHAP's regression."""
    m = len(x)
    phi = np.zeros((2, m))
    orders = list(itertools.permutations(range(m)))
    for order in orders:
        current = baseline.copy()
        before = f(current[None])[0]
        for i in order:
            current[i] = x[i]
            after = f(current[None])[0]
            phi[:, i] += after - before
            before = after
    return phi / len(orders)


def run_through(f, name):
    calls = []

    def run(batch):
        calls.append(len(batch[name]))
        return f(batch[name])
    run.calls = calls
    return run


def test_kernel_shap_with_every_coalition_gives_the_exact_shapley_values():
    x = np.array([1.0, 2.0, -0.5, 1.5, 3.0], dtype=np.float32)
    baseline = np.array([0.5, -1.0, 0.0, 0.2, 1.0], dtype=np.float32)
    found = explain(run_through(nonlinear, "x"), target([("x", "FP32", (-1, 5))]), {"x": x},
                    ExplainOptions(budget=8, baseline=baseline))
    expected = shapley_by_permutations(nonlinear, x.astype(np.float64), baseline.astype(np.float64))
    assert found.method == KERNEL_SHAP and found.items == 2 ** 5  # the input, the baseline and 30 coalitions
    np.testing.assert_allclose(found.attributions, expected, atol=1e-5)
    np.testing.assert_allclose(found.attributions.sum(axis=1), found.prediction - found.baseline, atol=1e-9)
    assert found.features == ("x[0]", "x[1]", "x[2]", "x[3]", "x[4]")


def test_sampled_kernel_shap_keeps_to_the_budget_and_recovers_an_additive_model():
    weights = np.linspace(-2, 2, 20)

    def additive(x):
        return np.stack([x @ weights, np.zeros(len(x))], axis=1)

    x = np.random.default_rng(1).normal(size=20).astype(np.float32)
    run = run_through(additive, "x")
    found = explain(run, target([("x", "FP32", (-1, 20))]), {"x": x}, ExplainOptions(budget=8))
    assert sum(run.calls) == found.items == 8 * 8 and found.requests == 8  # 2^20 coalitions: 62 sampled
    np.testing.assert_allclose(found.attributions[0], weights * x, atol=1e-4)  # baseline zeros


def test_sampled_coalitions_come_in_complementary_pairs():
    masks, weights = coalitions(20, 64, seed=3)
    assert masks.shape == (64, 20) and np.all(masks[0::2] == ~masks[1::2]) and np.all(weights == 1)
    assert np.all(masks.sum(axis=1) > 0) and np.all(masks.sum(axis=1) < 20)


def test_kernel_shap_spans_several_inputs_as_one_feature_vector():
    def pair(batch):
        return np.stack([batch["a"][:, 0] * 2 + batch["b"][:, 0, 1], batch["b"].sum(axis=(1, 2))], axis=1)

    item = {"a": np.array([3.0], np.float32), "b": np.array([[1.0, 4.0]], np.float32)}
    found = explain(pair, target([("a", "FP32", (-1, 1)), ("b", "FP32", (-1, 1, 2))]), item, ExplainOptions())
    assert found.features == ("a", "b[0]", "b[1]")
    np.testing.assert_allclose(found.attributions, [[6.0, 0.0, 4.0], [0.0, 1.0, 4.0]], atol=1e-9)


def test_occlusion_heats_the_region_the_score_depends_on():
    def corner(images):  # class 0 scores the ink in the top-left 4x4, class 1 is constant
        return np.stack([images[:, :4, :4, 0].sum(axis=(1, 2)), np.ones(len(images))], axis=1)

    image = np.ones((8, 8, 1), np.float32)
    run = run_through(corner, "image")
    found = explain(run, target([("image", "FP32", (-1, 8, 8, 1))], outputs=(("p", "FP32", (-1, 2)),)),
                    {"image": image}, ExplainOptions())
    heat = found.of(0)
    assert found.method == OCCLUSION and heat.shape == (8, 8) and found.features is None
    assert heat[:4, :4].min() > 0 and heat[5:, :].max() == 0 and heat[:, 5:].max() == 0
    assert np.all(found.of(1) == 0)
    assert found.items == 2 + 7 * 7 and found.requests == math.ceil(51 / 8)


def test_occlusion_widens_its_stride_to_fit_a_small_budget():
    image = np.zeros((3, 32, 32), np.float32)  # CHW
    run = run_through(lambda b: np.stack([b.mean(axis=(1, 2, 3)), b.max(axis=(1, 2, 3))], axis=1), "image")
    found = explain(run, target([("image", "FP32", (-1, 3, 32, 32))]), {"image": image}, ExplainOptions(budget=2))
    assert found.attributions.shape == (2, 32, 32) and found.items <= 16


def test_leave_one_out_finds_the_word_the_score_counts():
    def good(texts):
        counts = np.array([t[0].decode().split().count("good") for t in texts], dtype=float)
        return np.stack([1 - counts, counts], axis=1)

    found = explain(run_through(good, "text"), target([("text", "BYTES", (-1, 1))], labels=("negative", "positive")),
                    {"text": np.array([b"a good film indeed"], dtype=object)}, ExplainOptions())
    assert found.method == LEAVE_ONE_OUT and found.label == "positive" and found.baseline is None
    assert found.features == ("a", "good", "film", "indeed")
    np.testing.assert_allclose(found.of("positive"), [0, 1, 0, 0])
    np.testing.assert_allclose(found.of("negative"), [0, -1, 0, 0])


def test_leave_one_out_groups_words_over_budget():
    sent = []

    def record(texts):
        sent.extend(t[0].decode() for t in texts)
        return np.array([[len(t[0].split()), 0.0] for t in texts])

    words = " ".join(f"w{i}" for i in range(20))
    found = explain(run_through(record, "text"), target([("text", "BYTES", (-1, 1))], max_batch_size=4),
                    {"text": np.array([words.encode()], dtype=object)}, ExplainOptions(budget=2))
    assert len(sent) <= 8 and found.attributions.shape == (2, 20)
    np.testing.assert_allclose(found.of(0), 1.0)  # each group of 3 (the last of 2) takes its words' share


@pytest.mark.parametrize("options, message", [
    (dict(method="lime"), "method must be one of occlusion, leave-one-out, kernel-shap"),
    (dict(budget=0), "budget is a number of requests >= 1"),
    (dict(patch=0), "patch is a side in pixels >= 1"),
])
def test_bad_options_are_refused_naming_the_option(options, message):
    with pytest.raises(InvalidInput, match=message):
        ExplainOptions(**options)


def test_a_batch_of_several_items_is_refused():
    signature = target([("x", "FP32", (-1, 3))]).signature
    with pytest.raises(InvalidInput, match="explain takes one item, got a batch of 2"):
        one_item(signature, {"x": np.zeros((2, 3))})


def test_a_budget_too_small_for_a_model_without_batching_is_refused():
    unbatched = target([("x", "FP32", (3,))], max_batch_size=0)
    with pytest.raises(InvalidInput, match="too small to explain anything"):
        explain(lambda b: b, unbatched, {"x": np.zeros(3)}, ExplainOptions(budget=2))


def test_a_model_without_a_batch_axis_is_asked_one_item_at_a_time():
    unbatched = target([("x", "FP32", (3,))], outputs=(("y", "FP32", (2,)),), max_batch_size=0)
    seen = []

    def one(item):
        seen.append(item["x"].shape)
        return np.array([item["x"].sum(), 0.0])

    found = explain(one, unbatched, {"x": np.array([1.0, 2.0, 3.0])}, ExplainOptions(budget=8))
    assert set(seen) == {(3,)} and found.requests == len(seen) == 8
    np.testing.assert_allclose(found.of(0), [1, 2, 3], atol=1e-9)


def test_a_small_tensor_without_an_image_format_is_explained_feature_by_feature():
    from tritonclient.grpc import model_config_pb2 as mc

    config = mc.ModelConfig(name="m")
    config.input.add(name="x", data_type=mc.TYPE_FP32, dims=[3, 2, 2])  # format unset: FORMAT_NONE
    small = dataclasses.replace(target([("x", "FP32", (-1, 3, 2, 2))]), config=config)
    found = explain(lambda b: np.stack([b["x"].sum(axis=(1, 2, 3)), np.zeros(len(b["x"]))], axis=1), small,
                    {"x": np.ones((3, 2, 2), np.float32)}, ExplainOptions(budget=1))
    assert found.method == KERNEL_SHAP and len(found.features) == 12
