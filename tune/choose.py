"""The tuner's decision, as a pure function of recorded measurements (tests/tune/ checks it on recorded runs).

A candidate's throughput is the highest rate it reached at any measured connection count whose p99 stayed within
the latency budget. It is eligible when it had no errors, reached such a point, and its one-connection p50 is no more
than `idle_slack` above the untuned config's (tuning for load must not make an idle server slower). The winner is the
eligible candidate with the highest throughput, but only if it beats the untuned config by at least `min_gain`: on a
shared machine a few per cent is noise, and a change to models.toml should be worth making.

A candidate measured more than once counts with its best run per connection count (the highest throughput, with
that run's latencies) and its lowest one-connection p50: other work on a shared machine only ever takes throughput
away and adds latency, so the best of several runs is the best estimate of what the config itself does (run to run
the one-connection p50 varies by 30 % and more here at a load average of 2).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tune.space import Candidate


@dataclass(frozen=True)
class Point:
    """One closed-loop run at one connection count."""

    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int = 0
    avg_batch: float | None = None  # inferences / executions of the model that batches, from Triton's metrics


@dataclass(frozen=True)
class Trial:
    """One measurement of one candidate: one connection first, then the sweep, up to where it stopped."""

    candidate: Candidate
    points: tuple[Point, ...]
    seconds: float = 0.0
    error: str = ""  # the candidate did not load, or the run failed
    stopped: str = ""  # why the sweep ended before its last connection count
    load_average: float | None = None  # the machine's 1-minute load average when the trial ended: noise shows here


@dataclass(frozen=True)
class Criteria:
    latency_budget_ms: float
    idle_slack: float = 0.10
    min_gain: float = 0.05

    def __post_init__(self) -> None:
        if not self.latency_budget_ms > 0:
            raise ValueError(f"latency budget must be > 0 ms, got {self.latency_budget_ms} (--latency-budget-ms)")
        if not 0 <= self.idle_slack < 10:
            raise ValueError(f"idle slack must be a fraction >= 0 such as 0.1, got {self.idle_slack} (--idle-slack)")
        if not 0 <= self.min_gain < 10:
            raise ValueError(f"min gain must be a fraction >= 0 such as 0.05, got {self.min_gain} (--min-gain)")


@dataclass(frozen=True)
class Summary:
    """A candidate over all its trials: its best run per connection count."""

    candidate: Candidate
    trials: int
    points: tuple[Point, ...]
    idle_p50_ms: float | None  # the lowest one-connection p50 over the trials
    error: str = ""

    @property
    def errors(self) -> int:
        return sum(p.errors for p in self.points)

    def best(self, budget_ms: float) -> Point | None:
        """The highest-throughput point within the latency budget."""
        within = [p for p in self.points if p.p99_ms <= budget_ms]
        return max(within, key=lambda p: p.rps) if within else None


@dataclass(frozen=True)
class Verdict:
    summary: Summary
    eligible: bool
    reason: str
    best: Point | None = None
    failed: str = ""  # the check it failed: "errors", "idle" (one-connection p50), "latency" (p99 budget)


@dataclass(frozen=True)
class Choice:
    winner: Summary
    untuned: Summary
    criteria: Criteria
    verdicts: tuple[Verdict, ...]  # eligible first, by throughput, then the rest in measured order
    note: str

    @property
    def changed(self) -> bool:
        return self.winner.candidate != self.untuned.candidate

    def verdict(self, candidate: Candidate) -> Verdict:
        return next(v for v in self.verdicts if v.summary.candidate == candidate)

    @property
    def gain(self) -> float | None:
        """Winner's throughput over the untuned's, minus one; None when either reached no point in budget."""
        won, base = self.verdict(self.winner.candidate).best, self.verdict(self.untuned.candidate).best
        return won.rps / base.rps - 1 if won and base and base.rps else None


def summarise(candidate: Candidate, trials: list[Trial]) -> Summary:
    by_connections: dict[int, list[Point]] = {}
    for trial in trials:
        for point in trial.points:
            by_connections.setdefault(point.connections, []).append(point)
    points = []
    for connections in sorted(by_connections):
        group = by_connections[connections]
        best = max(group, key=lambda p: p.rps)
        points.append(replace(best, errors=sum(p.errors for p in group)))
    error = "; ".join(dict.fromkeys(t.error for t in trials if t.error))
    idle = [p.p50_ms for p in by_connections.get(1, [])]
    return Summary(candidate, len(trials), tuple(points), min(idle) if idle else None, error)


def _judge(summary: Summary, untuned_idle: float | None, criteria: Criteria) -> Verdict:
    if summary.error or summary.errors:
        return Verdict(summary, False, f"failed: {summary.error or f'{summary.errors} errors under load'}",
                       failed="errors")
    idle = summary.idle_p50_ms
    if idle is None:
        return Verdict(summary, False, "no one-connection measurement", failed="errors")
    best = summary.best(criteria.latency_budget_ms)
    if best is None:
        lowest = min(summary.points, key=lambda p: p.p99_ms)
        return Verdict(summary, False, f"p99 over the {criteria.latency_budget_ms:g} ms budget at every load "
                                       f"(lowest {lowest.p99_ms:.2f} ms at {lowest.connections} connections)",
                       failed="latency")
    if untuned_idle is not None and idle > untuned_idle * (1 + criteria.idle_slack):
        return Verdict(summary, False, f"one-connection p50 {idle:.3f} ms is {idle / untuned_idle - 1:.0%} over the "
                                       f"untuned {untuned_idle:.3f} ms (slack {criteria.idle_slack:.0%})", best,
                       failed="idle")
    return Verdict(summary, True, "eligible", best)


def choose(trials: list[Trial], untuned: Candidate, criteria: Criteria) -> Choice:
    """The winner among everything measured; `untuned` must be among the trials."""
    grouped: dict[Candidate, list[Trial]] = {}
    for trial in trials:
        grouped.setdefault(trial.candidate, []).append(trial)
    if untuned not in grouped:
        raise ValueError("the untuned config was not measured: nothing to compare against")
    summaries = [summarise(c, ts) for c, ts in grouped.items()]
    base = next(s for s in summaries if s.candidate == untuned)
    base_idle = base.idle_p50_ms if not (base.error or base.errors) else None
    verdicts = [_judge(s, base_idle, criteria) for s in summaries]
    eligible = sorted((v for v in verdicts if v.eligible), key=lambda v: -v.best.rps)
    base_verdict = next(v for v in verdicts if v.summary is base)

    if not eligible:
        winner, note = base, "no candidate met the criteria: kept the untuned config"
    elif not base_verdict.eligible:
        winner = eligible[0].summary
        note = f"the untuned config is not eligible ({base_verdict.reason}); chose the best eligible candidate"
    else:
        top = eligible[0]
        gain = top.best.rps / base_verdict.best.rps - 1
        if top.summary is base:
            winner, note = base, "no eligible candidate had more throughput than the untuned config: kept it"
        elif gain < criteria.min_gain:
            winner = base
            note = (f"kept the untuned config: the best other candidate was {gain:+.1%}, less than the "
                    f"{criteria.min_gain:.0%} needed to count as more than noise")
        else:
            winner, note = top.summary, f"{gain:+.1%} throughput over the untuned config"

    ranked = eligible + [v for v in verdicts if not v.eligible]
    final = tuple(_final_reason(v, winner, base) for v in ranked)
    return Choice(winner, base, criteria, final, note)


def _final_reason(verdict: Verdict, winner: Summary, base: Summary) -> Verdict:
    if verdict.summary is winner:
        reason = "chosen" + (" (untuned)" if winner is base else "")
    elif verdict.eligible:
        reason = "eligible" + (" (untuned)" if verdict.summary is base else "")
    else:
        return verdict
    return Verdict(verdict.summary, verdict.eligible, reason, verdict.best, verdict.failed)


def contender(choice: Choice, exclude: tuple[Candidate, ...] = ()) -> Candidate | None:
    """The candidate a second measurement could make or unmake the winner, other than those in `exclude`: the
    winner itself when it is not the untuned config, else the highest throughput among those that failed only the
    idle check, when it beats the winner by the min gain. None when there is none."""
    if choice.changed and choice.winner.candidate not in exclude:
        return choice.winner.candidate
    base = choice.verdict(choice.winner.candidate).best
    pool = [v for v in choice.verdicts if v.summary is not choice.untuned and v.best is not None
            and v.failed == "idle" and v.summary.candidate not in exclude]
    if not pool:
        return None
    top = max(pool, key=lambda v: v.best.rps)
    if base is not None and top.best.rps < base.rps * (1 + choice.criteria.min_gain):
        return None
    return top.summary.candidate
