"""POST /v1/feedback through a real gateway and Triton: a judged prediction moves the live-accuracy counters of its
model and version; bad feedback gets the documented problem (404 unknown, expired or already judged, 422 naming the
field, 403 without the scope or the model)."""

from __future__ import annotations

import numpy as np
import pytest
import requests
from prometheus_client import CollectorRegistry

import modelport
from gateway import keys, problems
from gateway.catalogue import Endpoint
from gateway.feedback import FeedbackIndex, judged_output
from gateway.options import OptionsError
from tests import specs
from tests.conftest import REPOSITORY
from tests.gateway.conftest import launch_gateway

WINDOW = 8
TEXTS = ["a moving, beautifully acted film", "a dull, boring mess"]


@pytest.fixture(scope="module")
def gateway(triton, tmp_path_factory):
    keys = {"judge": {"scopes": ("feedback",)}, "digits_judge": {"models": ("digits",), "scopes": ("feedback",)},
            "caller": {}}
    with launch_gateway(triton, tmp_path_factory.mktemp("feedback"), "--feedback-window", str(WINDOW),
                        keys=keys) as running:
        yield running


def predict(gateway, texts=TEXTS) -> tuple[str, list[str]]:
    response = gateway.predict("sentiment", {"inputs": texts})
    assert response.status_code == 200, response.text
    return response.headers["x-request-id"], [p["label"] for p in response.json()["predictions"]]


def feedback(gateway, document, key: str | None = None) -> requests.Response:
    return requests.post(f"{gateway.url}/v1/feedback", json=document, headers=gateway.auth(key), timeout=10)


def counts(gateway) -> tuple[float, float]:
    return (gateway.metric("modelport_gateway_feedback_judged_total", model="sentiment", version="1") or 0.0,
            gateway.metric("modelport_gateway_feedback_correct_total", model="sentiment", version="1") or 0.0)


@pytest.mark.integration
def test_feedback_counts_judged_and_correct_predictions_per_model_and_version(gateway):
    judged, correct = counts(gateway)
    request_id, labels = predict(gateway)
    right = feedback(gateway, {"request_id": request_id, "label": labels[0]})
    assert right.status_code == 200, right.text
    assert right.json() == {"request_id": request_id, "model": "sentiment", "version": "1", "item": 0,
                            "predicted": labels[0], "correct": True}
    wrong_label = "negative" if labels[1] == "positive" else "positive"
    wrong = feedback(gateway, {"request_id": request_id, "item": 1, "label": wrong_label})
    assert wrong.status_code == 200 and wrong.json()["correct"] is False, wrong.text
    assert counts(gateway) == (judged + 2, correct + 1)


@pytest.mark.integration
def test_unknown_expired_and_already_judged_request_ids_are_404_saying_why(gateway):
    unknown = feedback(gateway, {"request_id": "never-seen", "label": "positive"})
    assert unknown.status_code == 404 and unknown.json()["type"] == "/problems/not-found"
    assert f"older than the last {WINDOW}" in unknown.json()["detail"]
    first, labels = predict(gateway, TEXTS[:1])
    assert feedback(gateway, {"request_id": first, "label": labels[0]}).status_code == 200
    again = feedback(gateway, {"request_id": first, "label": labels[0]})
    assert again.status_code == 404 and "already has its feedback" in again.json()["detail"]
    oldest, labels = predict(gateway, TEXTS[:1])
    for _ in range(WINDOW):
        predict(gateway, TEXTS[:1])
    expired = feedback(gateway, {"request_id": oldest, "label": labels[0]})
    assert expired.status_code == 404 and "unknown, or older" in expired.json()["detail"]


@pytest.mark.integration
@pytest.mark.parametrize("document, field", [
    ({"label": "positive"}, "/request_id"),
    ({"request_id": "", "label": "positive"}, "/request_id"),
    ({"request_id": "x" * 65, "label": "positive"}, "/request_id"),
    ({"request_id": "{id}", "label": "neutral"}, "/label"),
    ({"request_id": "{id}", "label": 1}, "/label"),
    ({"request_id": "{id}", "label": "positive", "item": 2}, "/item"),
    ({"request_id": "{id}", "label": "positive", "item": True}, "/item"),
    ({"request_id": "{id}", "label": "positive", "why": "typo"}, "/why"),
    (["not", "an", "object"], "/"),
])
def test_bad_feedback_is_422_naming_the_field(gateway, document, field):
    request_id, _ = predict(gateway)
    if isinstance(document, dict) and document.get("request_id") == "{id}":
        document = {**document, "request_id": request_id}
    judged = counts(gateway)
    response = feedback(gateway, document)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field and response.json()["type"] == "/problems/invalid-input"
    assert counts(gateway) == judged


@pytest.mark.integration
def test_a_model_without_labels_or_a_single_value_cannot_be_judged(gateway):
    png = sorted((REPOSITORY.parent / "models" / "digits" / "samples").glob("*.png"))[0].read_bytes()
    response = requests.post(f"{gateway.url}/v1/models/digits_image_decode:predict", headers=gateway.auth(),
                             files={"file": ("d.png", png, "image/png")}, timeout=30)
    assert response.status_code == 200, response.text
    judged = feedback(gateway, {"request_id": response.headers["x-request-id"], "label": "4"})
    assert judged.status_code == 422 and judged.json()["field"] == "/request_id"
    assert "no output feedback can judge" in judged.json()["detail"]


@pytest.mark.integration
def test_feedback_needs_the_scope_and_the_model(gateway):
    request_id, labels = predict(gateway)
    no_scope = feedback(gateway, {"request_id": request_id, "label": labels[0]}, key=gateway.keys["caller"])
    assert no_scope.status_code == 403 and "--scopes feedback" in no_scope.json()["fix"]
    other_model = feedback(gateway, {"request_id": request_id, "label": labels[0]}, key=gateway.keys["digits_judge"])
    assert other_model.status_code == 403 and "sentiment" in other_model.json()["detail"]
    no_key = requests.post(f"{gateway.url}/v1/feedback", json={"request_id": request_id, "label": labels[0]},
                           timeout=10)
    assert no_key.status_code == 401
    assert feedback(gateway, {"request_id": request_id, "label": labels[0]}).status_code == 200  # still judgeable


# ---- in-process: a regression, and the index's bound -----------------------------------------------------------------

def regression(tmp_path) -> Endpoint:
    (model,) = specs.load(tmp_path, specs.model("price", outputs=(specs.tensor("price", (1,)),))).models
    return Endpoint("price", model)


def test_a_regression_is_judged_by_its_absolute_error(tmp_path):
    endpoint, registry = regression(tmp_path), CollectorRegistry()
    index = FeedbackIndex(4, registry)
    assert judged_output(endpoint) == "price"
    index.remember("r1", endpoint, "3", [modelport.ModelOutput("price", {"price": np.array([2.5], np.float32)})])
    assert index.judge({"request_id": "r1", "value": 3.25})["correct"] is None
    labels = {"model": "price", "version": "3"}
    assert registry.get_sample_value("modelport_gateway_feedback_abs_error_total", labels) == 0.75
    assert registry.get_sample_value("modelport_gateway_feedback_judged_total", labels) == 1
    index.remember("r2", endpoint, "3", [modelport.ModelOutput("price", {"price": np.array([1.0], np.float32)})])
    for bad in ("3", float("nan"), True, None):
        with pytest.raises(problems.InvalidInput) as refused:
            index.judge({"request_id": "r2", "value": bad})
        assert refused.value.field == "/value"


def test_the_index_keeps_the_last_n_requests(tmp_path):
    endpoint, index = regression(tmp_path), FeedbackIndex(2, CollectorRegistry())
    for n in range(3):
        index.remember(f"r{n}", endpoint, "1", [modelport.ModelOutput("price", {"price": np.array([n], np.float32)})])
    assert len(index) == 2 and index.model_of("r0") is None and index.model_of("r2") == "price"
    with pytest.raises(problems.NotFound, match="older than the last 2"):
        index.judge({"request_id": "r0", "value": 0})


def test_the_feedback_scope_is_kept_in_the_keys_file_and_an_unknown_scope_is_refused(tmp_path):
    made = keys.ApiKey.for_key(keys.new_key(), models=("digits",), scopes=("feedback",))
    keys.save(tmp_path / "keys.json", (made, keys.ApiKey.for_key(keys.new_key())))
    assert [k.scopes for k in keys.load(tmp_path / "keys.json")] == [("feedback",), ()]
    with pytest.raises(OptionsError, match="scopes \\['root'\\]; allowed: feedback, admin"):
        keys.ApiKey.for_key(keys.new_key(), scopes=("root",))
