"""Judging a canary: each version's figures over a rolling window, the limits of `[model.lifecycle]`, and the
automatic rollback (or promotion) they lead to.

The gateway records every call it makes to a version (answered or mirrored) in that version's `VersionWindow`: calls,
failures, latency, comparisons with the other version's top-1, and feedback judgements. Once a second, for a model
with a canary, `judge` compares the canary's figures with stable's over the same window, from the canary's start
(rolling: at most `window_seconds` back), against the model's limits (core/spec.py `Rollout`):

- error rate: the canary's failed calls / its calls > `max_error_rate` (once it has `min_requests` calls);
- latency: the canary's p99 > `max_p99_ratio` x stable's p99 (both with `min_requests` calls; differences under
  `P99_NOISE_MS` are not judged, a scheduling hiccup on a busy host is that large);
- disagreement: the share of compared requests where the canary's top-1 differs from stable's > `max_disagreement`
  (once `min_requests` were compared);
- accuracy: stable's live accuracy - the canary's > `max_accuracy_drop` (once each has `min_feedback` judgements).

Crossing one rolls the canary back through core.lifecycle.update(..., by="auto", reason=<the limit and its
figures>); with `auto_promote`, a canary that crossed none over a full window with `min_requests` calls is promoted.
`judge` is pure (figures and a time in, a verdict out) so that its tests need no clock and no server.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from core import lifecycle as lifecycles
from core.lifecycle import Lifecycle
from core.spec import Rollout

_log = logging.getLogger("modelport.gateway")

# Latency buckets for the windows' quantiles: 0.1 ms to 60 s, each 10 % wider than the last (p99 within 5 %).
LATENCY_BOUNDS_S = tuple(1e-4 * 1.1 ** i for i in range(int(math.log(60 / 1e-4) / math.log(1.1)) + 2))
SLOTS_PER_WINDOW = 60  # a window is kept as this many slots: memory per version is bounded, whatever the traffic
P99_NOISE_MS = 5.0


@dataclass(frozen=True)
class Figures:
    """One version's figures over a window."""

    requests: int = 0  # calls to this version: answered, or mirrored to compare
    errors: int = 0
    p50_ms: Optional[float] = None
    p99_ms: Optional[float] = None
    compared: int = 0  # requests whose top-1 was compared with the other version's (this one the candidate)
    disagreed: int = 0
    judged: int = 0  # feedback judgements of this version's predictions
    correct: int = 0
    unavailable: int = 0  # calls refused because Triton did not serve the version then: not counted in requests

    @property
    def error_rate(self) -> Optional[float]:
        return self.errors / self.requests if self.requests else None

    @property
    def disagreement(self) -> Optional[float]:
        return self.disagreed / self.compared if self.compared else None

    @property
    def accuracy(self) -> Optional[float]:
        return self.correct / self.judged if self.judged else None

    def to_dict(self) -> dict:
        rounded = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}
        return {**rounded, "error_rate": _round(self.error_rate), "disagreement": _round(self.disagreement),
                "accuracy": _round(self.accuracy)}


def _round(value: Optional[float], digits: int = 4) -> Optional[float]:
    return None if value is None else round(value, digits)


class _Slot:
    __slots__ = ("start", "requests", "errors", "unavailable", "latency", "compared", "disagreed", "judged", "correct")

    def __init__(self, start: float):
        self.start = start
        self.requests = self.errors = self.unavailable = self.compared = self.disagreed = self.judged = 0
        self.correct = 0
        self.latency = [0] * (len(LATENCY_BOUNDS_S) + 1)


class VersionWindow:
    """Counts of one version over the last `seconds`, in `SLOTS_PER_WINDOW` slots (at least 1 s each): recording is
    a few integer additions, and memory does not grow with traffic."""

    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        self.slot_s = max(1.0, self.seconds / SLOTS_PER_WINDOW)
        self._slots: deque[_Slot] = deque()

    def _slot(self, now: float) -> _Slot:
        slots = self._slots
        if slots and now < slots[-1].start + self.slot_s:
            return slots[-1]
        slot = _Slot(now - now % self.slot_s)
        slots.append(slot)
        while slots[0].start + self.slot_s <= now - self.seconds:
            slots.popleft()
        return slot

    def served(self, now: float, seconds: float) -> None:
        slot = self._slot(now)
        slot.requests += 1
        slot.latency[bisect.bisect_left(LATENCY_BOUNDS_S, seconds)] += 1

    def failed(self, now: float) -> None:
        slot = self._slot(now)
        slot.requests += 1
        slot.errors += 1

    def unavailable(self, now: float) -> None:
        """A call Triton refused because it did not serve the version then (loading, unloaded): not an error."""
        self._slot(now).unavailable += 1

    def compared(self, now: float, disagreed: bool) -> None:
        slot = self._slot(now)
        slot.compared += 1
        slot.disagreed += disagreed

    def judged(self, now: float, correct: bool) -> None:
        slot = self._slot(now)
        slot.judged += 1
        slot.correct += correct

    def figures(self, now: float, since: Optional[float] = None) -> Figures:
        """The sums over the slots that overlap [max(since, now - seconds), now]."""
        start = now - self.seconds if since is None else max(since, now - self.seconds)
        totals = [0] * 7
        latency = [0] * (len(LATENCY_BOUNDS_S) + 1)
        for slot in self._slots:
            if slot.start + self.slot_s <= start:
                continue
            for i, value in enumerate((slot.requests, slot.errors, slot.compared, slot.disagreed, slot.judged,
                                       slot.correct, slot.unavailable)):
                totals[i] += value
            latency = [a + b for a, b in zip(latency, slot.latency)]
        requests, errors, compared, disagreed, judged, correct, unavailable = totals
        return Figures(requests, errors, quantile_ms(latency, 0.5), quantile_ms(latency, 0.99), compared, disagreed,
                       judged, correct, unavailable)


def quantile_ms(counts: list[int], q: float) -> Optional[float]:
    """The q-quantile of a bucketed latency in ms, interpolated within its bucket (as histogram_quantile does)."""
    total = sum(counts)
    if not total:
        return None
    rank, seen = q * total, 0
    for i, count in enumerate(counts):
        if count and seen + count >= rank:
            low = LATENCY_BOUNDS_S[i - 1] if i > 0 else 0.0
            high = LATENCY_BOUNDS_S[i] if i < len(LATENCY_BOUNDS_S) else LATENCY_BOUNDS_S[-1]
            return 1000 * (low + (high - low) * (rank - seen) / count)
        seen += count
    return 1000 * LATENCY_BOUNDS_S[-1]


# ---- the judge ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    action: str  # "rollback" or "promote"
    reason: str  # the limit and the figures, for the lifecycle history and the log


def judge(limits: Rollout, canary: Figures, stable: Figures, started: float, now: float) -> Optional[Verdict]:
    """Roll back on the first limit the canary crosses; promote after a full clean window when `auto_promote`;
    else None (keep watching)."""
    span = f"over {now - started:.0f} s" if now - started < limits.window_seconds else \
        f"over the last {limits.window_seconds:g} s"
    if canary.requests >= limits.min_requests and canary.error_rate > limits.max_error_rate:
        return Verdict("rollback", f"error rate {canary.error_rate:.1%} > max_error_rate "
                                   f"{limits.max_error_rate:.1%} ({canary.errors} of {canary.requests} canary "
                                   f"calls failed {span})")
    if (canary.requests >= limits.min_requests and stable.requests >= limits.min_requests
            and canary.p99_ms is not None and stable.p99_ms is not None
            and canary.p99_ms > limits.max_p99_ratio * stable.p99_ms and canary.p99_ms - stable.p99_ms > P99_NOISE_MS):
        return Verdict("rollback", f"p99 {canary.p99_ms:.1f} ms > max_p99_ratio {limits.max_p99_ratio:g} x stable's "
                                   f"{stable.p99_ms:.1f} ms ({canary.requests} canary and {stable.requests} stable "
                                   f"calls {span})")
    if canary.compared >= limits.min_requests and canary.disagreement > limits.max_disagreement:
        return Verdict("rollback", f"disagreement with stable {canary.disagreement:.1%} > max_disagreement "
                                   f"{limits.max_disagreement:.1%} ({canary.disagreed} of {canary.compared} compared "
                                   f"requests {span})")
    enough = max(limits.min_feedback, 1)
    if canary.judged >= enough and stable.judged >= enough \
            and stable.accuracy - canary.accuracy > limits.max_accuracy_drop:
        return Verdict("rollback", f"live accuracy {canary.accuracy:.1%} against stable's {stable.accuracy:.1%}: a "
                                   f"drop of {stable.accuracy - canary.accuracy:.1%} > max_accuracy_drop "
                                   f"{limits.max_accuracy_drop:.1%} ({canary.judged} and {stable.judged} judged "
                                   f"{span})")
    if limits.auto_promote and now - started >= limits.window_seconds and canary.requests >= limits.min_requests:
        return Verdict("promote", f"a clean window of {limits.window_seconds:g} s: {canary.requests} calls, error "
                                  f"rate {canary.error_rate:.1%}, p99 {_ms(canary.p99_ms)} (stable "
                                  f"{_ms(stable.p99_ms)}), disagreement {_share(canary.disagreement)} over "
                                  f"{canary.compared} compared, accuracy {_share(canary.accuracy)} over "
                                  f"{canary.judged} judged")
    return None


def _ms(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _share(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1%}"


class _Moved(Exception):
    """The lifecycle changed since it was judged (the CLI, or another gateway, acted first)."""


def act(directory: Path, judged: Lifecycle, verdict: Verdict) -> Optional[Lifecycle]:
    """Apply a verdict to the lifecycle file, unless its canary changed since `judged` was read; the new lifecycle,
    or None when nothing was done."""
    def change(current: Optional[Lifecycle]) -> Lifecycle:
        if current is None or current.canary != judged.canary or current.started != judged.started:
            raise _Moved
        if verdict.action == "rollback":
            return lifecycles.rollback(current, by="auto", reason=verdict.reason)
        return lifecycles.promote(current, by="auto", reason=verdict.reason)

    try:
        return lifecycles.update(directory, change)
    except _Moved:
        return None
