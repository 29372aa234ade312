"""The load test's feedback (loadtest/feedback.py, `--feedback-share` of loadtest/gateway_locustfile.py): each held-out
row's true answer, in the order the rows are sent, and a headless run through a real gateway whose live accuracy
comes out as the model's held-out accuracy."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.heldout import load_npz
from core.measure import gateway_payloads, payloads
from core.spec import load_spec
from loadtest import feedback
from tests import specs
from tests.loadtest.user_spec import heldout_arrays, user_models, write_user_spec

ROOT = Path(__file__).resolve().parents[2]
GATEWAY_LOCUSTFILE = ROOT / "loadtest" / "gateway_locustfile.py"
REFERENCE = load_spec(payloads.DEFAULT_SPEC)


def test_each_heldout_row_gets_the_label_of_its_class_in_the_order_the_rows_are_sent():
    target = payloads.target(REFERENCE, "digits")
    truths = feedback.truths(target)
    heldout = load_npz(target.model, target.model.source.onnx.heldout, with_labels=True)
    sent = gateway_payloads.gateway_requests(target)

    assert len(truths) == len(sent) == min(payloads.SAMPLES_PER_MODEL, len(heldout))
    labels = target.model.outputs[0].labels
    assert [t["label"] for t in truths] == [labels[int(y)] for y in heldout.y[:len(truths)]]
    # the request and its truth are of the same row
    row = 17
    assert json.loads(sent[row].body)["inputs"]["image"] == heldout.x["image"][row:row + 1].tolist()
    assert len({t["label"] for t in truths}) == 10


def test_a_variant_shares_its_models_truth_and_samples_have_none():
    assert feedback.truths(payloads.target(REFERENCE, "digits_int8")) == feedback.truths(
        payloads.target(REFERENCE, "digits"))
    assert not any(feedback.truths(payloads.target(REFERENCE, "digits_image")))  # PNG files: no truth beside them


def test_a_classifier_gets_its_first_labelled_outputs_label_and_a_regression_its_value(tmp_path):
    price = specs.model("price", source="price.onnx", heldout="price.npz", inputs=[specs.tensor("features", [3])],
                        outputs=[specs.tensor("price", [1])])
    spec = load_spec(write_user_spec(tmp_path, *user_models(), price))
    np.savez(tmp_path / "price.npz", x=np.ones((4, 3), np.float32), y=np.array([1.5, 2.0, 0.25, 9.0]))

    churn = feedback.truths(payloads.target(spec, "churn"))
    assert [t["label"] for t in churn] == [("stays", "leaves")[int(y)] for y in heldout_arrays()["y"]]
    assert feedback.truths(payloads.target(spec, "price")) == tuple({"value": v} for v in (1.5, 2.0, 0.25, 9.0))
    assert not any(feedback.truths(payloads.target(spec, "notes")))


def test_a_share_outside_0_to_1_is_refused_naming_the_flag():
    assert feedback.check_share(0.2) is None and feedback.check_share(0) is None
    assert "--feedback-share 1.5" in feedback.check_share(1.5)


def test_a_refused_feedback_names_the_problem():
    problem = json.dumps({"title": "Not Found", "detail": "no recent prediction has request ID 'x'"}).encode()
    assert feedback.response_error(404, problem) == (
        "HTTP 404 from /v1/feedback: Not Found: no recent prediction has request ID 'x'")
    assert feedback.response_error(200, b"{}") is None


@pytest.mark.integration
def test_a_gateway_run_with_feedback_judges_its_share_and_live_accuracy_is_the_models(triton, tmp_path):
    from tests.gateway.conftest import launch_gateway

    keys = {"admin": {}, "client": {"models": ("digits",), "scopes": ("feedback",)}}  # admin reads /metrics
    with launch_gateway(triton, tmp_path / "gateway", "--feedback-window", "10000", keys=keys) as gateway:
        command = [sys.executable, "-m", "locust", "-f", str(GATEWAY_LOCUSTFILE), "--headless", "-u", "2", "-r", "2",
                   "-t", "5s", "--host", gateway.url, "--metrics-url", triton.metrics_url, "--csv",
                   str(tmp_path / "run"), "--feedback-share", "0.5", "--throughput-per-user", "40", "--tags", "digits"]
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=180,
                                env={**os.environ, "MODELPORT_API_KEY": gateway.keys["client"]})
        assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
        judged = gateway.metric("modelport_gateway_feedback_judged_total", model="digits")
        correct = gateway.metric("modelport_gateway_feedback_correct_total", model="digits")

    with open(tmp_path / "run_stats.csv", newline="") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    predicted, sent = int(rows["digits"]["Request Count"]), int(rows["feedback"]["Request Count"])
    assert int(rows["digits"]["Failure Count"]) == 0 and int(rows["feedback"]["Failure Count"]) == 0, rows
    assert 0.3 * predicted < sent < 0.7 * predicted, (predicted, sent)
    assert sent <= judged <= sent + 2  # a user stopped at the end may leave one judged but not yet counted
    # two users at 40 requests/s each for 5 s offer 400: paced, not as fast as they can
    assert 150 < predicted <= 420, predicted
    # the truth sent is the row's: live accuracy is the model's held-out accuracy (0.98 on its card), not chance
    assert correct / judged > 0.9, (correct, judged)


def test_python_m_loadtest_refuses_a_feedback_share_without_the_gateway():
    result = subprocess.run([sys.executable, "-m", "loadtest", "--feedback-share", "0.2"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--feedback-share needs --gateway" in result.stderr, result.stderr


@pytest.mark.parametrize(("option", "message"), [("--feedback-share=2", "--feedback-share 2: a share"),
                                               ("--throughput-per-user=-1", "--throughput-per-user -1: requests")])
def test_locust_refuses_a_bad_feedback_share_or_throughput_before_sending(tmp_path, option, message):
    command = [sys.executable, "-m", "locust", "-f", str(GATEWAY_LOCUSTFILE), "--headless", "-u", "1", "-t", "2s",
               "--host", "http://127.0.0.1:9", option, "--tags", "digits"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
