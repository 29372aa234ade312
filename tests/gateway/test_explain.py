"""POST /v1/models/<name>:explain through the running gateway and the session's Triton: the three figures of the
client's explanations (tests/client/test_explain_integration.py) hold through the gateway too, an encoded image is
explained on its decoded pixels, the budget is charged to the key, and bad requests are problem documents."""

from __future__ import annotations

import base64
import time

import numpy as np
import pytest
import requests

from tests.client.test_explain_integration import REVIEWS
from tests.conftest import REPOSITORY

pytestmark = pytest.mark.integration
HELDOUT = REPOSITORY.parent / "models" / "digits" / "heldout.npz"


def explain(gateway, model: str, document: dict, key: str | None = None) -> requests.Response:
    return requests.post(f"{gateway.url}/v1/models/{model}:explain", json=document, headers=gateway.auth(key),
                         timeout=60)


def test_digit_heatmaps_through_the_gateway_put_most_of_their_mass_on_the_ink(gateway):
    on_ink, ink_pixels = [], []
    for image in np.load(HELDOUT)["x"][:12]:
        response = explain(gateway, "digits", {"inputs": [image.tolist()]})
        assert response.status_code == 200, response.text
        found = response.json()
        heat = np.maximum(np.array(found["attributions"])[found["labels"].index(found["label"])], 0)
        ink = image[..., 0] > 0
        on_ink.append(heat[ink].sum() / heat.sum())
        ink_pixels.append(ink.mean())
    assert found["method"] == "occlusion" and found["requests"] <= 8
    # Measured: 0.94 of the positive mass on the ink, which is 0.52 of the pixels (12 held-out digits).
    assert np.mean(on_ink) > 0.75 and np.mean(on_ink) > np.mean(ink_pixels) + 0.2, (on_ink, ink_pixels)


def test_the_sentiment_word_is_the_top_attributed_word_through_the_gateway(gateway):
    hits = []
    for text, word in REVIEWS:
        found = explain(gateway, "sentiment", {"inputs": [text]}).json()
        assert found["method"] == "leave-one-out" and found["features"] == text.split(), found
        scores = found["attributions"][found["labels"].index(found["label"])]
        hits.append(found["features"][int(np.argmax(scores))] == word)
    # Measured: 12 of 14, as through the client.
    assert np.mean(hits) >= 0.8, [t for (t, _), hit in zip(REVIEWS, hits) if not hit]


def test_token_attributions_sum_to_the_prediction_minus_the_baseline(gateway):
    """Kernel SHAP on a tensor model: sentiment_classifier's 64 token ids, against a text of unknown words (id 1; an
    all-padding baseline would be an empty text, which the model's mean pooling turns into NaN)."""
    ids = np.load(REPOSITORY.parent / "models" / "sentiment" / "heldout.npz")["x"][0].tolist()
    response = explain(gateway, "sentiment_classifier", {"inputs": [ids], "budget": 4, "seed": 1,
                                                              "baseline": 1})
    assert response.status_code == 200, response.text
    found = response.json()
    predicted = gateway.predict("sentiment_classifier", {"inputs": [ids]}).json()["predictions"][0]
    assert found["method"] == "kernel-shap" and found["requests"] == 4 and len(found["features"]) == 64
    np.testing.assert_allclose(found["prediction"], [predicted["scores"][label] for label in found["labels"]],
                               atol=1e-6)
    sums = np.array(found["attributions"]).sum(axis=1)
    np.testing.assert_allclose(sums, np.array(found["prediction"]) - np.array(found["baseline"]), atol=1e-5)


def test_an_encoded_image_is_explained_on_the_pixels_it_decodes_to(gateway):
    png = sorted((REPOSITORY.parent / "models" / "digits" / "samples").glob("*.png"))[2].read_bytes()
    item = {"inputs": [{"b64": base64.b64encode(png).decode()}]}
    response = explain(gateway, "digits_image", item)
    assert response.status_code == 200, response.text
    found = response.json()
    assert found["model"] == "digits_image" and found["explained"] == "digits" and found["method"] == "occlusion"
    assert np.array(found["image"]).shape == (8, 8, 1) and np.array(found["attributions"]).shape == (10, 8, 8)
    assert found["label"] == gateway.predict("digits_image", item).json()["predictions"][0]["label"]


def test_the_budget_is_charged_to_the_keys_rate_limit(gateway):
    slow = gateway.keys["slow"]  # 1 request/s, bursts of 2
    image = np.load(HELDOUT)["x"][0].tolist()
    over = explain(gateway, "digits", {"inputs": [image], "budget": 3}, key=slow)
    assert over.status_code == 429 and over.json()["fix"] == 'send "budget": 2 or less', over.text
    time.sleep(2.5)  # the bucket refills at 1/s: the refused request took one token
    first = explain(gateway, "digits", {"inputs": [image], "budget": 2}, key=slow)
    assert first.status_code == 200 and first.json()["requests"] <= 2, first.text
    after = gateway.predict("digits", {"inputs": [image]}, key=slow)
    assert after.status_code == 429 and "Retry-After" in after.headers, after.text


def test_the_explain_route_is_scoped_like_predict(gateway):
    text = {"inputs": ["a wonderful film"]}
    assert explain(gateway, "sentiment", text, key=gateway.keys["digits_only"]).status_code == 403
    assert requests.post(f"{gateway.url}/v1/models/sentiment:explain", json=text, timeout=10).status_code == 401


@pytest.mark.parametrize("model, document, field, words", [
    ("digits", {"inputs": np.zeros((2, 8, 8, 1)).tolist()}, "/inputs", "one item, got 2"),
    ("digits", {"inputs": [np.zeros((8, 8, 1)).tolist()], "method": "lime"}, "/method", "one of occlusion"),
    ("digits", {"inputs": [np.zeros((8, 8, 1)).tolist()], "budget": 33}, "/budget", "1..32"),
    ("digits", {"inputs": [np.zeros((8, 8, 1)).tolist()], "budget": "8"}, "/budget", "integer"),
    ("digits", {"inputs": [np.zeros((8, 8, 1)).tolist()], "why": 1}, "/why", "unknown field"),
    ("digits", {"inputs": [np.zeros((8, 8)).tolist()]}, "/inputs/0/0/0", "nested lists of [8, 8, 1]"),
    ("sentiment_classifier", {"inputs": [[1] * 64], "baseline": [0] * 3}, "/baseline/0", "[64]"),
    ("sentiment", {"inputs": ["a film"], "output": "logits"}, "/output", "no output 'logits'"),
    ("sentiment", {"inputs": ["a film"], "method": "kernel-shap"}, None, "hold strings"),
    ("sentiment", {"inputs": ["   "]}, None, "no words"),
    ("digits_mobilenet", {"inputs": [np.zeros((64, 64, 3)).tolist()], "method": "kernel-shap"}, "/method",
     "Kernel SHAP over 12288 values"),
    ("digits_mobilenet", {"inputs": [np.zeros((64, 64, 3)).tolist()], "budget": 11}, "/budget",
     "up to 352 copies of an item of 12288 values"),
    ("sentiment", {"inputs": ["word " * 13_000]}, "/budget", "an item of 65000 values"),
])
def test_a_bad_explain_request_is_a_problem_naming_the_field(gateway, model, document, field, words):
    response = explain(gateway, model, document)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json" and problem["fix"], problem
    assert problem.get("field") == field and words in problem["detail"], problem
    assert explain(gateway, "sentiment", {"inputs": ["a wonderful film"], "budget": 1}).status_code == 200


def test_explain_takes_json_only(gateway):
    response = requests.post(f"{gateway.url}/v1/models/digits:explain", data=b"x",
                             headers={**gateway.auth(), "Content-Type": "text/plain"}, timeout=10)
    assert response.status_code == 415 and "application/json" in response.json()["fix"], response.text
