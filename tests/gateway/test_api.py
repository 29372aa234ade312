"""The label-aware JSON API against the running gateway and the session's Triton."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import requests

import modelport
from core.measure import payloads
from core.measure.gateway_payloads import gateway_request
from core.spec import load_spec
from gateway.catalogue import endpoints
from tests.conftest import REPOSITORY

pytestmark = pytest.mark.integration
SPEC = load_spec(payloads.DEFAULT_SPEC)
SERVED = endpoints(SPEC, REPOSITORY)


def test_sentiment_answers_a_batch_with_labels_scores_and_every_class(gateway):
    response = gateway.predict("sentiment", {"inputs": ["a moving, beautifully acted film", "a dull, boring mess"]})

    assert response.status_code == 200, response.text
    document = response.json()
    assert document["model"] == "sentiment"
    first, second = document["predictions"]
    assert (first["label"], second["label"]) == ("positive", "negative")
    assert set(first["scores"]) == {"negative", "positive"}
    assert first["score"] == max(first["scores"].values()) and sum(first["scores"].values()) == pytest.approx(1, 1e-5)


def test_the_labels_and_scores_are_those_triton_gives_the_client(gateway, triton):
    text = ["the plot is thin but the acting is superb"]
    ours = gateway.predict("sentiment", {"inputs": text, "top": 1}).json()["predictions"][0]
    with modelport.Client(triton.http_url) as client:
        direct = client.predict("sentiment", text, top=1)[0].prediction
    assert ours["label"] == direct.label and list(ours["scores"]) == [direct.label]
    assert ours["score"] == pytest.approx(direct.score, abs=1e-6)


def test_a_tensor_model_takes_items_by_input_name_or_as_a_list(gateway, triton):
    heldout = np.load(REPOSITORY.parent / "models" / "digits" / "heldout.npz")
    items = heldout["x"][:3].tolist()
    by_name = gateway.predict("digits", {"inputs": {"image": items}, "top": 3})
    as_list = gateway.predict("digits", {"inputs": items, "top": 3})

    assert by_name.status_code == 200 and as_list.status_code == 200, by_name.text
    labels = [p["label"] for p in by_name.json()["predictions"]]
    assert labels == [p["label"] for p in as_list.json()["predictions"]]
    with modelport.Client(triton.http_url) as client:
        assert labels == [p.label for p in client.classify_digits(heldout["x"][:3])]
    assert all(len(p["scores"]) == 3 for p in by_name.json()["predictions"])


def test_an_image_goes_as_a_multipart_upload_or_as_base64_with_the_same_answer(gateway):
    png = sorted((REPOSITORY.parent / "models" / "digits" / "samples").glob("*.png"))[0].read_bytes()
    upload = requests.post(f"{gateway.url}/v1/models/digits_image:predict", headers=gateway.auth(),
                           files=[("inputs", ("a.png", png, "image/png")), ("inputs", ("b.png", png, "image/png"))],
                           data={"top": "2"}, timeout=30)
    encoded = gateway.predict("digits_image", {"inputs": [{"b64": base64.b64encode(png).decode()}], "top": 2})

    assert upload.status_code == 200 and encoded.status_code == 200, upload.text + encoded.text
    assert len(upload.json()["predictions"]) == 2
    assert upload.json()["predictions"][0] == encoded.json()["predictions"][0]


def test_every_served_model_with_payloads_answers_its_samples_through_the_gateway(gateway):
    """The coverage test: every model the repository serves for models.toml, one sample each, one prediction back
    (labelled outputs as {label, score, scores}, the others as nested lists)."""
    tried = []
    for target in payloads.targets(SPEC):
        if target.name not in {e.name for e in SERVED}:
            continue  # in the spec but not exported (`make test` exports first, so not there)
        assert target.source is not None, f"{target.name} has no payloads to try"
        request = gateway_request(payloads.samples(target)[0])
        response = requests.post(gateway.url + request.path, data=request.body, timeout=30,
                                 headers={**gateway.auth(), "Content-Type": "application/json"})
        assert response.status_code == 200, f"{target.name}: {response.text}"
        (prediction,) = response.json()["predictions"]
        endpoint = next(e for e in SERVED if e.name == target.name)
        if endpoint.flat:
            assert prediction["label"] in endpoint.outputs[0].labels
        else:
            assert set(prediction["outputs"]) == {t.name for t in endpoint.outputs}
        tried.append(target.name)
    assert sorted(tried) == sorted(e.name for e in SERVED)


def test_models_are_listed_with_their_inputs_outputs_and_labels(gateway):
    listed = requests.get(f"{gateway.url}/v1/models", headers=gateway.auth(), timeout=10).json()["models"]
    assert [m["name"] for m in listed] == [e.name for e in SERVED]
    one = requests.get(f"{gateway.url}/v1/models/sentiment", headers=gateway.auth(), timeout=10).json()
    assert one["inputs"] == [{"name": "text", "dtype": "TYPE_STRING", "dims": [1]}]
    assert one["outputs"][0]["labels"] == ["negative", "positive"] and one["takes_files"] is True


def test_openapi_has_a_request_and_response_schema_per_model(gateway):
    spec = requests.get(f"{gateway.url}/openapi.json", headers=gateway.auth(), timeout=10).json()
    for endpoint in SERVED:
        post = spec["paths"][endpoint.path]["post"]
        assert post["requestBody"]["content"]["application/json"]["schema"] == endpoint.request_schema()
        assert post["responses"]["200"]["content"]["application/json"]["schema"] == endpoint.response_schema()
        assert "application/problem+json" in post["responses"]["422"]["content"]
    digits = spec["paths"]["/v1/models/digits:predict"]["post"]["requestBody"]["content"]["application/json"]
    item = digits["schema"]["properties"]["inputs"]["oneOf"][0]["items"]
    assert (item["minItems"], item["items"]["minItems"], item["items"]["items"]["maxItems"]) == (8, 8, 1)
    assert "Problem" in spec["components"]["schemas"]
    docs = requests.get(f"{gateway.url}/docs", headers=gateway.auth(), timeout=10)
    assert docs.status_code == 200 and "/v1/models/digits_image:predict" in docs.text and "cdn" not in docs.text


def test_errors_are_problem_details_naming_the_field_and_the_fix(gateway):
    response = gateway.predict("digits", {"inputs": {"image": [[[0] * 8] * 8]}})  # 8x8 without the channel axis

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "/problems/invalid-input" and problem["status"] == 422
    assert problem["field"] == "/inputs/image/0/0/0"
    assert "[8, 8, 1]" in problem["detail"] and "nested list" in problem["fix"]
    assert problem["instance"] == "/v1/models/digits:predict"
    assert problem["request_id"] == response.headers["x-request-id"]
    described = requests.get(gateway.url + problem["type"], timeout=10).json()
    assert described["status"] == 422 and described["title"] == problem["title"]


def test_content_the_model_refuses_is_a_422_with_tritons_reason(gateway):
    broken = base64.b64encode(b"\x89PNG\r\n\x1a\n bad").decode()
    response = gateway.predict("digits_image", {"inputs": [{"b64": broken}]})
    assert response.status_code == 422, response.text
    assert "PNG" in response.json()["detail"] and "corrupt" in response.json()["detail"]


def test_an_unknown_model_is_a_404_listing_the_models(gateway):
    response = gateway.predict("no_such_model", {"inputs": ["x"]})
    assert response.status_code == 404 and "sentiment" in response.json()["detail"]


def test_request_ids_are_echoed_or_made_and_the_access_log_has_no_payloads(gateway):
    secret_text = "a secret review nobody may log"
    mine = gateway.predict("sentiment", {"inputs": [secret_text]}, headers={"X-Request-ID": "trace-42"})
    made = gateway.predict("sentiment", {"inputs": ["x"]}, headers={"X-Request-ID": "not valid!" * 20})

    assert mine.headers["x-request-id"] == "trace-42"
    assert made.headers["x-request-id"] != "not valid!" * 20 and len(made.headers["x-request-id"]) == 32
    lines = [json.loads(line) for line in gateway.access_log.read_text().splitlines()]
    entry = next(e for e in lines if e["request_id"] == "trace-42")
    assert entry["status"] == 200 and entry["model"] == "sentiment" and entry["key"] == "full"
    assert entry["method"] == "POST" and entry["ms"] > 0 and entry["bytes_in"] > 0
    text = gateway.access_log.read_text()
    assert secret_text not in text and gateway.key not in text


def test_request_metrics_are_histograms_by_model_and_status(gateway):
    before = gateway.metric("modelport_gateway_request_duration_seconds_count", model="sentiment", status="200") or 0
    gateway.predict("sentiment", {"inputs": ["fine"]})
    gateway.predict("sentiment", {"inputs": 5})
    after = gateway.metric("modelport_gateway_request_duration_seconds_count", model="sentiment", status="200")
    assert after == before + 1
    assert gateway.metric("modelport_gateway_request_duration_seconds_bucket", model="sentiment", status="422",
                          le="+Inf") >= 1
    assert gateway.metric("modelport_gateway_rejected_requests_total", model="sentiment",
                          problem="invalid-input") >= 1
