"""The canary's judge without a server: windows fed at explicit times (a fake clock), the limits of [model.lifecycle]
one by one, the automatic action on the lifecycle file, and the routing decisions that feed them."""

from __future__ import annotations

import dataclasses
import json
import random
import time

import pytest
from prometheus_client import CollectorRegistry

import modelport

from core import lifecycle as lifecycles
from core.lifecycle import Lifecycle
from core.spec import Rollout
from gateway.backend import TritonBackend
from gateway.rollout import P99_NOISE_MS, Figures, Verdict, VersionWindow, act, judge, quantile_ms
from gateway.routing import Routing, sticky_share
from core.spec import load_spec
from gateway.catalogue import Endpoint
from tests.conftest import ROOT

LIMITS = Rollout("digits", window_seconds=300, min_requests=50, max_error_rate=0.02, max_p99_ratio=2.0,
                 max_disagreement=0.10, max_accuracy_drop=0.05, min_feedback=30)
T0 = 1_000_000.0
CLEAN = Figures(requests=100, errors=0, p50_ms=2.0, p99_ms=10.0, compared=100, disagreed=2, judged=40, correct=38)


def test_a_window_keeps_only_the_calls_within_its_length_and_since_the_start():
    window = VersionWindow(60)  # slots of 1 s
    for second in range(120):
        window.served(T0 + second, 0.002)
    assert window.figures(T0 + 119).requests == 61  # the calls at T0 + 59 .. T0 + 119
    assert window.figures(T0 + 119, since=T0 + 100).requests == 20  # the canary started at T0 + 100
    assert window.figures(T0 + 500).requests == 0  # all of it older than the window


def test_a_window_counts_errors_comparisons_and_judgements():
    window = VersionWindow(300)
    for i in range(10):
        window.served(T0 + i, 0.001)
        window.compared(T0 + i, disagreed=i < 3)
        window.judged(T0 + i, correct=i < 8)
    window.failed(T0 + 10)
    figures = window.figures(T0 + 11)
    assert (figures.requests, figures.errors, figures.compared, figures.disagreed, figures.judged,
            figures.correct) == (11, 1, 10, 3, 10, 8)
    assert (figures.error_rate, figures.disagreement, figures.accuracy) == (1 / 11, 0.3, 0.8)


def test_window_quantiles_are_within_the_bucket_precision():
    window = VersionWindow(300)
    latencies = [0.001 + 0.0001 * i for i in range(1000)]  # 1 .. 100.9 ms, uniform
    random.Random(1).shuffle(latencies)
    for i, seconds in enumerate(latencies):
        window.served(T0 + i * 0.1, seconds)
    figures = window.figures(T0 + 100)
    assert figures.p50_ms == pytest.approx(51.0, rel=0.06)
    assert figures.p99_ms == pytest.approx(100.0, rel=0.06)
    assert quantile_ms([0] * 10, 0.5) is None


def test_the_memory_of_a_window_does_not_grow_with_traffic():
    window = VersionWindow(300)
    for i in range(20_000):
        window.served(T0 + i * 0.05, 0.001)  # 1,000 s of 20 calls a second
    assert len(window._slots) <= 61


def test_nothing_is_judged_before_the_canary_has_min_requests():
    failing = Figures(requests=49, errors=49)
    assert judge(LIMITS, failing, CLEAN, T0, T0 + 10) is None


def test_an_error_rate_over_the_limit_rolls_back_with_its_figures():
    verdict = judge(LIMITS, dataclasses.replace(CLEAN, requests=60, errors=5), CLEAN, T0, T0 + 42)
    assert verdict == Verdict("rollback", "error rate 8.3% > max_error_rate 2.0% (5 of 60 canary calls failed "
                                          "over 42 s)")


def test_an_error_rate_at_the_limit_is_kept():
    assert judge(LIMITS, dataclasses.replace(CLEAN, requests=100, errors=2), CLEAN, T0, T0 + 10) is None


def test_a_p99_over_the_ratio_rolls_back_but_not_within_the_noise_floor():
    slow = dataclasses.replace(CLEAN, p99_ms=25.0)
    verdict = judge(LIMITS, slow, CLEAN, T0, T0 + 400)
    assert verdict.action == "rollback" and verdict.reason.startswith("p99 25.0 ms > max_p99_ratio 2 x stable's 10.0")
    assert "over the last 300 s" in verdict.reason
    fast = dataclasses.replace(CLEAN, p99_ms=1.0)
    assert judge(LIMITS, dataclasses.replace(CLEAN, p99_ms=1.0 + P99_NOISE_MS - 0.5), fast, T0, T0 + 10) is None
    assert judge(LIMITS, slow, dataclasses.replace(CLEAN, requests=10), T0, T0 + 10) is None  # stable too few


def test_disagreement_over_the_limit_rolls_back_once_enough_requests_were_compared():
    disagreeing = dataclasses.replace(CLEAN, compared=50, disagreed=6)
    verdict = judge(LIMITS, disagreeing, CLEAN, T0, T0 + 10)
    assert verdict.action == "rollback" and verdict.reason.startswith("disagreement with stable 12.0% > "
                                                                      "max_disagreement 10.0% (6 of 50")
    assert judge(LIMITS, dataclasses.replace(CLEAN, compared=49, disagreed=40), CLEAN, T0, T0 + 10) is None


def test_an_accuracy_drop_rolls_back_only_with_min_feedback_on_both_versions():
    worse = dataclasses.replace(CLEAN, judged=30, correct=24)  # 80 % against stable's 95 %
    verdict = judge(LIMITS, worse, CLEAN, T0, T0 + 10)
    assert verdict.action == "rollback" and "a drop of 15.0% > max_accuracy_drop 5.0%" in verdict.reason
    assert judge(LIMITS, dataclasses.replace(worse, judged=29, correct=10), CLEAN, T0, T0 + 10) is None
    assert judge(LIMITS, worse, dataclasses.replace(CLEAN, judged=29, correct=29), T0, T0 + 10) is None


def test_a_clean_canary_is_promoted_after_a_full_window_only_with_auto_promote():
    promoting = dataclasses.replace(LIMITS, auto_promote=True)
    assert judge(promoting, CLEAN, CLEAN, T0, T0 + 299) is None
    verdict = judge(promoting, CLEAN, CLEAN, T0, T0 + 300)
    assert verdict.action == "promote" and verdict.reason.startswith("a clean window of 300 s: 100 calls")
    assert judge(LIMITS, CLEAN, CLEAN, T0, T0 + 3000) is None
    assert judge(promoting, dataclasses.replace(CLEAN, requests=10), CLEAN, T0, T0 + 3000) is None


def test_act_rolls_back_through_the_lifecycle_file_by_auto(tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    started = lifecycles.start(Lifecycle(stable=1), 2, (1, 2), percent=20)
    lifecycles.write_lifecycle(started, tmp_path)
    done = act(tmp_path, started, Verdict("rollback", "error rate 9% > 2%"))
    assert done.canary is None and done.stable == 1
    written = lifecycles.read_lifecycle(tmp_path)
    assert written.history[-1]["action"] == "rollback" and written.history[-1]["by"] == "auto"
    assert written.history[-1]["reason"] == "error rate 9% > 2%"


def test_act_does_nothing_when_the_canary_changed_since_it_was_judged(tmp_path):
    for version in ("1", "2", "3"):
        (tmp_path / version).mkdir()
    judged = lifecycles.start(Lifecycle(stable=1), 2, (1, 2, 3), percent=20)
    promoted = lifecycles.promote(judged)  # the CLI acted first
    lifecycles.write_lifecycle(promoted, tmp_path)
    assert act(tmp_path, judged, Verdict("rollback", "late")) is None
    assert lifecycles.read_lifecycle(tmp_path) == promoted


def test_a_sticky_value_always_gets_the_same_share_and_values_spread_evenly():
    assert sticky_share("user-42") == sticky_share("user-42")
    shares = [sticky_share(f"user-{i}") for i in range(4000)]
    assert all(0 <= s < 100 for s in shares)
    assert 0.27 <= sum(s < 30 for s in shares) / len(shares) <= 0.33


DIGITS = Endpoint("digits", next(m for m in load_spec(ROOT / "models.toml").models if m.name == "digits"))


def make_routing(repository, registry: CollectorRegistry) -> Routing:
    return Routing({"digits": DIGITS}, repository, TritonBackend("127.0.0.1:1", 1.0), registry, {}, 100, 10, 4)


@pytest.fixture
def routing(tmp_path):
    """Routing for digits over a repository folder with versions 1 and 2 (no Triton: nothing is called)."""
    for version in ("1", "2"):
        (tmp_path / "digits" / version).mkdir(parents=True)
    registry = CollectorRegistry()
    return make_routing(tmp_path, registry), tmp_path / "digits", registry


def test_without_a_lifecycle_file_the_newest_version_answers_every_request(routing):
    made, _, registry = routing
    routes = {made.route("digits", {}) for _ in range(100)}
    assert {(r.version, r.mirror, r.canary) for r in routes} == {("2", None, False)}
    assert registry.get_sample_value("modelport_gateway_rollout_stable_version", {"model": "digits"}) == 2


def test_routes_follow_the_lifecycle_mode_share_and_sticky_header(routing):
    made, directory, registry = routing
    model = made.models["digits"]
    lifecycles.write_lifecycle(Lifecycle(stable=1, canary=2, mode="shadow", started=time.time()), directory)
    made.refresh(model)
    assert {made.route("digits", {}).mirror for _ in range(20)} == {None}  # until Triton serves version 2
    model.ready = "2"  # as the watch sets it once Triton's metadata of version 2 answers
    assert {(r.version, r.mirror, r.canary) for r in (made.route("digits", {}) for _ in range(50))} == {
        ("1", "2", False)}
    lifecycles.write_lifecycle(Lifecycle(stable=1, canary=2, percent=25, sticky="x-user", started=time.time() + 1),
                               directory)
    made.refresh(model)
    assert model.ready is None  # a new rollout waits for Triton again
    model.ready = "2"
    for user in ("a", "b", "c", "d", "e"):
        routes = {made.route("digits", {"x-user": user}) for _ in range(20)}
        assert len(routes) == 1
        expected = "2" if sticky_share(user) < 25 else "1"
        assert next(iter(routes)).version == expected
    assert registry.get_sample_value("modelport_gateway_rollout_canary_percent",
                                     {"model": "digits", "version": "2"}) == 25


def test_every_new_history_entry_is_counted_once_and_the_old_ones_are_not(routing):
    made, directory, registry = routing
    model = made.models["digits"]
    old = lifecycles.rollback(lifecycles.start(Lifecycle(stable=1), 2, (1, 2)))
    lifecycles.write_lifecycle(old, directory)
    at_start = CollectorRegistry()
    make_routing(directory.parent, at_start)
    assert at_start.get_sample_value("modelport_gateway_rollout_actions_total",
                                     {"model": "digits", "action": "start", "by": "cli"}) is None
    later = lifecycles.start(old, 2, (1, 2), by="cli")
    lifecycles.write_lifecycle(later, directory)
    made.refresh(model)
    made.refresh(model)
    count = registry.get_sample_value
    assert count("modelport_gateway_rollout_actions_total", {"model": "digits", "action": "start", "by": "cli"}) == 2
    assert count("modelport_gateway_rollout_actions_total", {"model": "digits", "action": "rollback", "by": "cli"}) \
        == 1
    assert registry.get_sample_value("modelport_gateway_rollout_canary_percent",
                                     {"model": "digits", "version": "2"}) == 10
    lifecycles.write_lifecycle(lifecycles.rollback(later, by="auto", reason="x"), directory)
    made.refresh(model)
    assert count("modelport_gateway_rollout_actions_total", {"model": "digits", "action": "rollback", "by": "auto"}) \
        == 1
    assert count("modelport_gateway_rollout_canary_percent", {"model": "digits", "version": "2"}) is None



def test_each_version_is_drift_judged_against_its_own_reference_when_the_export_recorded_one(tmp_path):
    model = tmp_path / "digits"
    for version in ("1", "2"):
        (model / version).mkdir(parents=True)
    threes = {str(d): (0.91 if d == 3 else 0.01) for d in range(10)}
    (model / "state.json").write_text(json.dumps({"versions": {"2": {"reference_predictions": {
        "probabilities": {"samples": 100, "shares": threes}}}}}))
    uniform = {str(d): 0.1 for d in range(10)}
    made = Routing({"digits": DIGITS}, tmp_path, TritonBackend("127.0.0.1:1", 1.0), CollectorRegistry(),
                   {"digits": {"probabilities": uniform}}, 100, 10, 4)
    routing = made.models["digits"]
    labels = ["3"] * 91 + [str(d) for d in range(10) if d != 3]  # as version 2's own reference says
    answers = [modelport.ModelOutput("digits", {"probabilities": modelport.Prediction(label, 0.9, {})})
               for label in labels]
    for version in ("1", "2"):
        routing.observe(version, answers)
    assert routing.psi("2") < 0.01
    assert routing.psi("1") > 1.0  # against the model's uniform reference
