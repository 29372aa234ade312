"""The search: a hill-climb from the untuned config within a time budget, then a confirmation.

A full grid (for digits on 2 cores: 4 instance counts x 2 thread counts x 4 queue delays x 2 preferred sizes = 64
candidates, about 11 minutes at ~10 s each) does not fit a budget of minutes, and most of it is far from the config
in use. The climb measures the untuned config, then every candidate one step away along one dimension (likeliest
gains first), moves to the best by the choice rule (tune/choose.py) and repeats until no neighbour wins or the time
is up. The contender (the winner, then the best candidate that failed only the one-connection check, the noisiest
figure, if it would beat the winner) is then measured once more, followed by the untuned config, so that both
count with their best of two runs:
one run spoiled by other work on the machine neither keeps a real gain out of models.toml nor lets the untuned
config lose by bad luck. From a new winner the climb goes on while time is left.

The measuring is a callable, so the search itself is tested without a server.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from tune.choose import Choice, Criteria, Trial, choose, contender
from tune.space import Candidate, Space

CONFIRM_TRIALS = 2  # the contender and the untuned config, once more each


@dataclass(frozen=True)
class Tuning:
    """The outcome for one space: every trial in the order measured, the choice, and why the search ended."""

    space: Space
    untuned: Candidate
    trials: tuple[Trial, ...]
    choice: Choice
    stopped: str
    confirmed: tuple[Candidate, ...]  # contenders measured a second time, each with the untuned config after it
    seconds: float


def climb(space: Space, untuned: Candidate, measure: Callable[[Candidate], Trial], criteria: Criteria,
          deadline: float, clock: Callable[[], float] = time.monotonic,
          log: Callable[[str], None] = lambda message: None) -> Tuning:
    """Climb from `untuned` until no neighbour of the best wins or the deadline; confirm the contender (the winner,
    else one that failed only the noisy idle check) against the untuned config; climb on from the winner and
    confirm the next contender while time is left."""
    began = clock()
    trials = [measure(untuned)]
    log(_line(trials[-1], space.entry))

    def affordable(count: int) -> bool:
        estimate = max(t.seconds for t in trials)  # the slowest so far: what is reserved must really be there
        return clock() + count * estimate <= deadline

    current, stopped, confirmed = untuned, "", []
    while True:
        stopped = ""
        while not stopped:
            measured = {t.candidate for t in trials}
            frontier = [n for n in space.neighbours(current) if n not in measured]
            if not frontier:
                stopped = "converged: every neighbour of the best is measured and none beats it"
                break
            for neighbour in frontier:
                if not affordable(1 + CONFIRM_TRIALS):
                    stopped = "time budget reached"
                    break
                trials.append(measure(neighbour))
                log(_line(trials[-1], space.entry))
            best = choose(trials, untuned, criteria).winner.candidate
            if best == current and not stopped:
                stopped = "converged: no neighbour of the best beats it"
            current = best
        rival = contender(choose(trials, untuned, criteria), exclude=tuple(confirmed))
        if rival is None or not affordable(CONFIRM_TRIALS):
            break
        confirmed.append(rival)
        for candidate in (rival, untuned):
            trials.append(measure(candidate))
            log("again: " + _line(trials[-1], space.entry))
        current = choose(trials, untuned, criteria).winner.candidate
    return Tuning(space, untuned, tuple(trials), choose(trials, untuned, criteria), stopped, tuple(confirmed),
                  clock() - began)


def _line(trial: Trial, entry: str) -> str:
    label = trial.candidate.label(entry)
    if trial.error and not trial.points:
        return f"{label}: {trial.error}"
    top = max(trial.points, key=lambda p: p.rps)
    idle = trial.points[0]
    return (f"{label}: 1 conn p50 {idle.p50_ms:.3f} ms; best {top.rps:.0f} req/s at {top.connections} conn, "
            f"p99 {top.p99_ms:.1f} ms ({trial.seconds:.1f} s{', ' + trial.stopped if trial.stopped else ''}; "
            f"load {trial.load_average})")
