"""The tuner's choice rule on recorded measurements: a pure function, no server."""

from __future__ import annotations

import json

import pytest

from tests.tune.helpers import RECORDED_CHANGE, RECORDED_DEFAULT, RECORDED_DIGITS, candidate, trial
from tune.choose import Criteria, choose, contender
from tune.report import load_measurements
from tune.space import Candidate

UNTUNED = candidate()
TWO = candidate(instances=2)
THREE = candidate(instances=3)
CRITERIA = Criteria(latency_budget_ms=25.0, idle_slack=0.10, min_gain=0.05)


def test_the_winner_is_the_highest_throughput_whose_p99_is_within_the_budget():
    trials = [trial(UNTUNED, (1, 2000, 0.40, 1.0), (64, 7000, 8, 20)),
              trial(TWO, (1, 2000, 0.41, 1.0), (64, 9000, 6, 15)),
              trial(THREE, (1, 2000, 0.40, 1.0), (64, 12000, 6, 30))]  # faster, but p99 over budget at 64

    choice = choose(trials, UNTUNED, CRITERIA)

    assert choice.winner.candidate == TWO and choice.changed
    assert choice.gain == pytest.approx(9000 / 7000 - 1)
    # its 12000 req/s at 64 connections do not count: only its one-connection point was within the budget
    assert (choice.verdict(THREE).best.connections, choice.verdict(THREE).best.rps) == (1, 2000)


def test_a_candidate_counts_at_its_best_connection_count_within_the_budget():
    trials = [trial(UNTUNED, (1, 2000, 0.40, 1.0), (8, 5000, 1.5, 4), (64, 7000, 8, 20)),
              trial(TWO, (1, 2000, 0.40, 1.0), (8, 8000, 1.0, 3), (64, 9500, 6, 40))]

    choice = choose(trials, UNTUNED, CRITERIA)

    assert choice.winner.candidate == TWO
    assert (choice.verdict(TWO).best.connections, choice.verdict(TWO).best.rps) == (8, 8000)


def test_a_candidate_slower_at_one_connection_than_the_idle_slack_allows_is_not_chosen():
    trials = [trial(UNTUNED, (1, 2500, 0.40, 1.0), (64, 7000, 8, 20)),
              trial(TWO, (1, 2200, 0.45, 1.2), (64, 11000, 5, 12))]  # 12.5 % slower idle, slack 10 %

    choice = choose(trials, UNTUNED, CRITERIA)

    assert not choice.changed
    assert choice.verdict(TWO).failed == "idle" and "12% over the untuned 0.400 ms" in choice.verdict(TWO).reason
    assert choose(trials, UNTUNED, Criteria(25.0, idle_slack=0.15)).winner.candidate == TWO


def test_a_gain_smaller_than_min_gain_keeps_the_untuned_config():
    trials = [trial(UNTUNED, (1, 2500, 0.40, 1.0), (64, 7000, 8, 20)),
              trial(TWO, (1, 2500, 0.40, 1.0), (64, 7200, 8, 20))]  # +2.9 %

    choice = choose(trials, UNTUNED, CRITERIA)

    assert not choice.changed and "less than the 5% needed" in choice.note
    assert choose(trials, UNTUNED, Criteria(25.0, min_gain=0.02)).winner.candidate == TWO


def test_a_candidate_with_errors_or_that_did_not_load_is_never_chosen():
    trials = [trial(UNTUNED, (1, 2500, 0.40, 1.0), (64, 7000, 8, 20)),
              trial(TWO, (1, 2500, 0.40, 1.0), (64, 20000, 3, 5, 12)),
              trial(THREE, error="Triton refused to load digits")]

    choice = choose(trials, UNTUNED, CRITERIA)

    assert not choice.changed
    assert choice.verdict(TWO).failed == "errors" and "12 errors" in choice.verdict(TWO).reason
    assert choice.verdict(THREE).reason == "failed: Triton refused to load digits"


def test_repeated_trials_count_with_their_best_run_per_connection_count_and_the_lowest_idle_p50():
    trials = [trial(UNTUNED, (1, 2500, 0.40, 1.0), (64, 7000, 8, 20)),
              trial(TWO, (1, 2500, 0.52, 1.0), (64, 8000, 5, 12)),  # the machine was busy: idle looks slow
              trial(TWO, (1, 2500, 0.42, 1.0), (64, 9000, 5, 11)),
              trial(UNTUNED, (1, 2500, 0.44, 1.0), (64, 7400, 8, 19))]

    choice = choose(trials, UNTUNED, CRITERIA)
    two = choice.verdict(TWO)

    assert (two.summary.trials, two.summary.idle_p50_ms, two.best.rps, two.best.p99_ms) == (2, 0.42, 9000, 11)
    assert choice.untuned.idle_p50_ms == 0.40 and choice.verdict(UNTUNED).best.rps == 7400
    assert choice.winner.candidate == TWO


def test_when_the_untuned_config_is_not_eligible_the_best_eligible_candidate_wins_without_min_gain():
    trials = [trial(UNTUNED, (1, 2500, 0.40, 1.0), (8, 3000, 6, 30)),  # over budget at every load but idle
              trial(TWO, (1, 2500, 0.40, 1.0), (8, 3000, 2.5, 9))]

    choice = choose(trials, UNTUNED, Criteria(latency_budget_ms=0.5))
    assert not choice.changed and choice.note.startswith("no candidate met the criteria")
    assert choice.verdict(TWO).failed == "latency" and "over the 0.5 ms budget at every load" in \
        choice.verdict(TWO).reason

    loose = choose([trial(UNTUNED, (1, 2500, 0.40, 30.0)), trial(TWO, (1, 2450, 0.40, 9.0))], UNTUNED,
                   Criteria(latency_budget_ms=10.0))
    assert loose.winner.candidate == TWO and "untuned config is not eligible" in loose.note


def test_the_untuned_config_must_have_been_measured():
    with pytest.raises(ValueError, match="untuned config was not measured"):
        choose([trial(TWO, (1, 2500, 0.40, 1.0))], UNTUNED, CRITERIA)


@pytest.mark.parametrize("field, value", [("latency_budget_ms", 0), ("idle_slack", -0.1), ("min_gain", 10)])
def test_criteria_refuse_values_that_cannot_mean_anything(field, value):
    arguments = {"latency_budget_ms": 25.0, "idle_slack": 0.1, "min_gain": 0.05, field: value}

    with pytest.raises(ValueError, match=field.split("_")[0]):
        Criteria(**arguments)


def test_the_contender_is_the_winner_first_then_the_best_candidate_failing_only_the_idle_check():
    winning = [trial(UNTUNED, (1, 2500, 0.40, 1.0), (64, 7000, 8, 20)),
               trial(TWO, (1, 2500, 0.41, 1.0), (64, 9000, 6, 15)),
               trial(THREE, (1, 2500, 0.60, 1.0), (64, 12000, 5, 12))]  # more throughput, idle check failed
    choice = choose(winning, UNTUNED, CRITERIA)

    assert contender(choice) == TWO
    assert contender(choice, exclude=(TWO,)) == THREE  # 33 % over the winner if its idle run was just unlucky
    assert contender(choice, exclude=(TWO, THREE)) is None


def test_while_the_untuned_config_wins_the_contender_fails_only_the_idle_check_and_beats_min_gain():
    trials = [trial(UNTUNED, (1, 2500, 0.40, 1.0), (64, 7000, 8, 20)),
              trial(TWO, (1, 2500, 0.60, 1.0), (64, 11000, 5, 12)),  # idle check failed: worth a second look
              trial(THREE, (1, 2500, 0.40, 1.0), (64, 30000, 5, 12, 3))]  # errors: never

    assert contender(choose(trials, UNTUNED, CRITERIA)) == TWO
    assert contender(choose(trials[:1] + [trial(TWO, (1, 2500, 0.4, 1.0), (64, 7100, 8, 20))], UNTUNED,
                            CRITERIA)) is None


def test_a_recorded_run_is_decided_the_same_way_and_for_the_reasons_it_shows():
    conditions, criteria, [tuning] = load_measurements(RECORDED_DIGITS)
    recorded = json.loads(RECORDED_DIGITS.read_text())["models"][0]
    choice = tuning.choice

    assert choice.winner.candidate == Candidate.from_json(recorded["winner"]) == tuning.untuned
    assert conditions["cpus"] == 2 and criteria == CRITERIA
    # the untuned config's second run (9513 req/s at 32 connections) beat every candidate's best run
    assert choice.note.startswith("no eligible candidate had more throughput")
    best = choice.verdict(tuning.untuned).best
    assert (round(best.rps), best.connections) == (9513, 32)
    # 100 µs of queue delay costs the idle latency, in both of its runs
    delay = choice.verdict(tuning.untuned.with_value("digits", "max_queue_delay_microseconds", 100))
    assert delay.failed == "idle" and delay.summary.trials == 2
    empty = choice.verdict(tuning.untuned.with_value("digits", "preferred_batch_size", ()))
    assert empty.failed == "errors" and "Triton serves" in empty.reason


def test_a_recorded_default_run_is_decided_the_same_way_for_every_model_it_tuned():
    _, _, tunings = load_measurements(RECORDED_DEFAULT)
    recorded = json.loads(RECORDED_DEFAULT.read_text())["models"]

    assert [t.space.target for t in tunings] == ["digits", "sentiment_classifier", "digits_image", "sentiment"]
    for tuning, model in zip(tunings, recorded):
        assert tuning.choice.winner.candidate == Candidate.from_json(model["winner"]), tuning.space.target
        assert tuning.choice.note == model["note"]
    image = tunings[2]
    assert {d.field for d in image.space.dimensions} == {"instance_count"}
    assert {d.model for d in image.space.dimensions} == {"digits_image_decode"}
    # its contender got a second run and still failed the idle check: 1.344 ms against the untuned 1.190 ms
    [rival] = image.confirmed
    assert image.choice.verdict(rival).failed == "idle" and "13% over the untuned 1.190 ms" in \
        image.choice.verdict(rival).reason


def test_a_recorded_change_is_a_confirmed_gain_and_the_faster_two_instances_lose_on_idle_latency():
    _, _, [digits, *_] = load_measurements(RECORDED_CHANGE)
    choice = digits.choice

    assert choice.winner.candidate == digits.untuned.with_value("digits", "preferred_batch_size", (32,))
    assert choice.winner.candidate in digits.confirmed and choice.winner.trials == 2
    assert choice.gain == pytest.approx(0.0905, abs=0.001)
    # two instances had the most throughput (11334 req/s) but a one-connection p50 35 % over the untuned config's
    two = choice.verdict(choice.winner.candidate.with_value("digits", "instance_count", 2))
    assert round(two.best.rps) == 11334 and two.failed == "idle" and "35% over" in two.reason
