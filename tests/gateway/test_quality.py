"""Model-quality metrics on the running gateway: the reference distribution from the export's state, confidence and per-class
counts, and a drift gauge that skewed traffic moves (the session gateway's window: 100 predictions, 50 minimum)."""

from __future__ import annotations

import math

import pytest

from core.state import read_state
from tests.conftest import REPOSITORY

pytestmark = pytest.mark.integration
HELD_OUT = [line for line in (REPOSITORY.parent / "models" / "sentiment" / "samples.txt").read_text().splitlines()
            if line.strip()]


def send(gateway, texts: list[str]) -> list[str]:
    labels = []
    for start in range(0, len(texts), 32):
        response = gateway.predict("sentiment", {"inputs": texts[start:start + 32]})
        assert response.status_code == 200, response.text
        labels += [p["label"] for p in response.json()["predictions"]]
    return labels


def test_the_reference_distribution_is_the_one_the_export_recorded_in_the_state(gateway):
    shares = read_state(REPOSITORY / "sentiment_classifier").reference_predictions["probabilities"]["shares"]
    for label, share in shares.items():
        assert gateway.metric("modelport_gateway_reference_share", model="sentiment", label=label) == \
            pytest.approx(share)  # the ensemble's output takes the reference of the step that produces it
    digits = read_state(REPOSITORY / "digits").reference_predictions["probabilities"]
    assert digits["samples"] == 359 and sum(digits["shares"].values()) == pytest.approx(1, abs=1e-5)


def test_predictions_feed_a_confidence_histogram_and_a_counter_per_class(gateway):
    def count(label):
        return gateway.metric("modelport_gateway_predictions_total", model="sentiment", label=label) or 0

    def confident():
        return gateway.metric("modelport_gateway_top1_confidence_count", model="sentiment") or 0

    before = (count("positive"), count("negative"), confident())
    assert send(gateway, ["a moving, beautifully acted film"] * 3 + ["a dull, boring mess"] * 2) == \
        ["positive"] * 3 + ["negative"] * 2
    assert (count("positive"), count("negative"), confident()) == (before[0] + 3, before[1] + 2, before[2] + 5)
    assert gateway.metric("modelport_gateway_top1_confidence_bucket", model="sentiment", le="0.5") == \
        gateway.metric("modelport_gateway_top1_confidence_bucket", model="sentiment", le="0.1")  # top-1 is >= 1/2


def test_the_drift_gauge_stays_low_on_held_out_traffic_and_rises_on_skewed_traffic(gateway):
    def drift():
        return gateway.metric("modelport_gateway_prediction_drift_psi", model="sentiment")

    labels = send(gateway, HELD_OUT[:100])  # fills the window with the kind of data the reference came from
    assert gateway.metric("modelport_gateway_drift_window_predictions", model="sentiment") == 100
    balanced = drift()
    assert balanced < 0.1, (balanced, labels.count("positive"))

    send(gateway, ["a moving, beautifully acted film, a triumph"] * 60)  # a day of only glowing reviews
    skewed = drift()
    print(f"PSI on 100 held-out sentences {balanced:.3f} ({labels.count('positive')} predicted positive), "
          f"after 60 glowing reviews {skewed:.2f}")
    assert skewed > 0.25 and skewed > 5 * balanced, (balanced, skewed)
    assert not math.isnan(skewed)
