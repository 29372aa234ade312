"""The hill-climb on a made-up landscape with a fake clock: where it goes, when it stops, what it re-measures."""

from __future__ import annotations

from collections import Counter

from tests.tune.helpers import candidate, trial
from tune.choose import Criteria
from tune.search import climb
from tune.space import Dimension, Space

SPACE = Space("digits", "digits", (
    Dimension("digits", "instance_count", (1, 2, 3, 4)),
    Dimension("digits", "intra_op_thread_count", (1, 2)),
    Dimension("digits", "max_queue_delay_microseconds", (0, 100, 500, 2000)),
    Dimension("digits", "preferred_batch_size", ((8, 32), (32,), (8,)), ordered=False),
))
UNTUNED = candidate()
PEAK = {1: 7000, 2: 9000, 3: 10000, 4: 9500}  # throughput by instance count
TRIAL_S = 10.0


class Bench:
    """A fake machine: throughput peaks at 3 instances, a second ORT thread halves it, a queue delay costs idle
    latency; every trial takes TRIAL_S on the fake clock."""

    def __init__(self, idle_noise: dict | None = None) -> None:
        self.now = 0.0
        self.idle_noise = idle_noise or {}  # (candidate, nth measurement) -> ms added to its one-connection p50
        self.measured = []

    def clock(self) -> float:
        return self.now

    def measure(self, c):
        self.now += TRIAL_S
        self.measured.append(c)
        rps = PEAK[c.value("digits", "instance_count")] / c.value("digits", "intra_op_thread_count")
        idle = 0.40 + c.value("digits", "max_queue_delay_microseconds") / 1000
        idle += self.idle_noise.get((c, self.measured.count(c)), 0.0)
        return trial(c, (1, 2000, idle, 1.0), (64, rps, 6, 15), seconds=TRIAL_S)


def test_the_climb_walks_to_the_best_instance_count_and_stops_when_no_neighbour_beats_it():
    bench = Bench()

    tuning = climb(SPACE, UNTUNED, bench.measure, Criteria(25.0), deadline=10_000, clock=bench.clock)

    assert tuning.choice.winner.candidate == candidate(instances=3)
    assert tuning.stopped.startswith("converged")
    assert candidate(instances=3) in tuning.confirmed
    # it never wandered where a neighbour lost: no 4-instance candidate with a second thread, say
    assert all(c.value("digits", "intra_op_thread_count") == 1 or c.value("digits", "instance_count") <= 3
               for c in bench.measured)


def test_the_climb_measures_a_candidate_again_only_to_confirm_it_against_the_untuned_config():
    bench = Bench()

    tuning = climb(SPACE, UNTUNED, bench.measure, Criteria(25.0), deadline=10_000, clock=bench.clock)

    repeats = {c for c, n in Counter(t.candidate for t in tuning.trials).items() if n > 1}
    assert repeats <= set(tuning.confirmed) | {UNTUNED}
    for rival in tuning.confirmed:  # each confirmation is the rival, then the untuned config
        at = max(i for i, t in enumerate(tuning.trials) if t.candidate == rival)
        assert tuning.trials[at + 1].candidate == UNTUNED


def test_the_climb_keeps_within_its_deadline_and_says_the_budget_ended_it():
    bench = Bench()

    tuning = climb(SPACE, UNTUNED, bench.measure, Criteria(25.0), deadline=55, clock=bench.clock)

    assert bench.now <= 55
    assert tuning.stopped == "time budget reached"
    assert len(tuning.trials) == 5  # the untuned config, two neighbours, then the confirmation of the best
    assert tuning.choice.winner.candidate == candidate(instances=2)


def test_a_candidate_that_lost_only_on_a_noisy_idle_check_is_measured_again_and_can_win():
    bench = Bench(idle_noise={(candidate(instances=2), 1): 0.25})  # its first one-connection run: +60 %
    space = Space("digits", "digits", SPACE.dimensions[:1])

    tuning = climb(space, UNTUNED, bench.measure, Criteria(25.0), deadline=10_000, clock=bench.clock)

    assert candidate(instances=2) in tuning.confirmed
    assert tuning.choice.winner.candidate == candidate(instances=3)
