"""What the page reads besides predictions: the forms made from each model's signature (GET /v1/forms) and the counters
per model (GET /v1/status), both scoped to the caller's key; and the explain routes in /openapi.json."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from core.spec import Tensor, load_spec
from gateway.catalogue import endpoints
from gateway.explaining import decoding_of, heldout_mean
from gateway.metrics import LATENCY_BUCKETS
from gateway.status import widget
from core.measure import payloads
from tests.conftest import REPOSITORY

SPEC = load_spec(payloads.DEFAULT_SPEC)
SERVED = {e.name: e for e in endpoints(SPEC, REPOSITORY)}


def tensor(dtype: str, dims: tuple[int, ...], format: str = "FORMAT_NONE") -> Tensor:
    return Tensor(model="m", name="x", dtype=dtype, dims=dims, format=format)


@pytest.mark.parametrize("made, decodes, expected", [
    (tensor("TYPE_STRING", (1,)), False, "text"),
    (tensor("TYPE_STRING", (1,)), True, "image-file"),
    (tensor("TYPE_FP32", (8, 8, 1), "FORMAT_NHWC"), False, "pixels"),
    (tensor("TYPE_FP32", (64, 64, 3)), False, "pixels"),
    (tensor("TYPE_FP32", (6,)), False, "numbers"),
    (tensor("TYPE_FP32", (2, 2)), False, "numbers"),
    (tensor("TYPE_INT64", (64,)), False, "json"),
    (tensor("TYPE_FP32", (-1,)), False, "json"),
])
def test_each_input_gets_the_widget_its_signature_calls_for(made, decodes, expected):
    assert widget(made, decodes) == expected


def test_only_the_decoding_ensemble_is_explained_on_its_pixels():
    found = {name: decoding_of(e, SPEC) for name, e in SERVED.items()}
    assert found["digits_image"] is not None and (found["digits_image"].decoder, found["digits_image"].classifier) == (
        "digits_image_decode", "digits")
    assert found["sentiment"] is None and found["digits"] is None  # text goes through its tokenizer as text


def test_the_default_reference_is_the_held_out_mean_only_for_tabular_float_inputs():
    assert heldout_mean(SERVED["digits"]) is None  # an image: occlusion fills with zeros
    assert heldout_mean(SERVED["sentiment_classifier"]) is None  # token ids have no mean
    assert heldout_mean(SERVED["sentiment"]) is None


@pytest.mark.integration
def test_the_forms_describe_every_model_the_key_may_call_with_widgets_and_examples(gateway):
    forms = {m["name"]: m for m in requests.get(f"{gateway.url}/v1/forms", headers=gateway.auth(),
                                                 timeout=10).json()["models"]}
    assert set(forms) == set(SERVED)
    widgets = {name: [i["widget"] for i in m["inputs"]] for name, m in forms.items()}
    assert widgets["digits"] == ["pixels"] and widgets["digits_image"] == ["image-file"]
    assert widgets["sentiment"] == ["text"] and widgets["sentiment_classifier"] == ["json"]
    first_sample = (REPOSITORY.parent / "models" / "sentiment" / "samples.txt").read_text().splitlines()[0].strip()
    assert forms["sentiment"]["inputs"][0]["example"] == first_sample
    example = forms["sentiment_classifier"]["inputs"][0]["example"]
    assert example == np.load(REPOSITORY.parent / "models" / "sentiment" / "heldout.npz")["x"][0].tolist()
    assert forms["digits"]["explain"] == "/v1/models/digits:explain"
    scoped = requests.get(f"{gateway.url}/v1/forms", headers=gateway.auth(gateway.keys["digits_only"]), timeout=10)
    assert [m["name"] for m in scoped.json()["models"]] == ["digits"]
    assert requests.get(f"{gateway.url}/v1/forms", timeout=10).status_code == 401


def status(gateway, key: str | None = None) -> dict:
    response = requests.get(f"{gateway.url}/v1/status", headers=gateway.auth(key), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.integration
def test_the_status_counts_requests_errors_and_latencies_per_model(gateway):
    before = {m["name"]: m for m in status(gateway)["models"]}["digits"]
    image = np.load(REPOSITORY.parent / "models" / "digits" / "heldout.npz")["x"][0].tolist()
    for _ in range(5):
        assert gateway.predict("digits", {"inputs": [image]}).status_code == 200
    for _ in range(2):
        assert gateway.predict("digits", {"inputs": [[0]]}).status_code == 422
    snapshot = status(gateway)
    after = {m["name"]: m for m in snapshot["models"]}["digits"]
    assert snapshot["buckets"] == [*LATENCY_BUCKETS, None]  # the last bucket is +Inf
    assert after["requests"] - before["requests"] == 7 and after["errors"] - before["errors"] == 2
    assert after["buckets"][-1] - before["buckets"][-1] == 7  # every request lands in the +Inf bucket
    assert all(a <= b for a, b in zip(after["buckets"], after["buckets"][1:]))  # cumulative
    assert set(after["drift"]) == {"probabilities"} and after["in_flight"] == 0
    assert [m["name"] for m in status(gateway, gateway.keys["digits_only"])["models"]] == ["digits"]


@pytest.mark.integration
def test_openapi_lists_the_explain_routes_the_key_may_call(gateway):
    scoped = requests.get(f"{gateway.url}/openapi.json", headers=gateway.auth(gateway.keys["digits_only"]),
                          timeout=10).json()
    assert [p for p in scoped["paths"] if p.endswith(":explain")] == ["/v1/models/digits:explain"]
    body = scoped["paths"]["/v1/models/digits:explain"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["properties"]["budget"]["maximum"] == 32
    assert body["schema"]["properties"]["method"]["enum"] == ["occlusion", "leave-one-out", "kernel-shap"]
