"""SLO gate: thresholds from the command line, checked when Locust quits; a miss makes the exit code non-zero.

Latency percentiles come from the microsecond HDR histograms (hdr.py), not from Locust's millisecond buckets, so a
threshold of 0.8 ms means 0.8 ms. Error rate and throughput come from Locust's aggregated statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

from loadtest.hdr import LatencyRecorder

EXIT_CODE_SLO_MISSED = 3


@dataclass(frozen=True)
class Thresholds:
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_error_rate: float | None = None
    min_rps: float | None = None

    def __post_init__(self) -> None:
        for name in ("p95_ms", "p99_ms", "min_rps"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"SLO {name} must be > 0, got {value}; leave the option out to skip that check")
        if self.max_error_rate is not None and not 0 <= self.max_error_rate <= 1:
            raise ValueError(
                f"SLO max_error_rate is a fraction in [0, 1], got {self.max_error_rate}; 1 % is --slo-error-rate 0.01"
            )

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.p95_ms, self.p99_ms, self.max_error_rate, self.min_rps))

    @classmethod
    def from_options(cls, options) -> Thresholds:
        return cls(
            p95_ms=options.slo_p95_ms,
            p99_ms=options.slo_p99_ms,
            max_error_rate=options.slo_error_rate,
            min_rps=options.slo_min_rps,
        )


@dataclass(frozen=True)
class Observed:
    requests: int
    failures: int
    rps: float
    p95_ms: float
    p99_ms: float

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


def evaluate(thresholds: Thresholds, observed: Observed) -> list[str]:
    """Every missed threshold as a sentence naming the option, the limit and the observed value; empty when met."""
    if not thresholds.any:
        return []
    if observed.requests == 0:
        return ["no requests were made, so no SLO can be met: check --host and that the server is up"]
    misses = []
    if thresholds.p95_ms is not None and observed.p95_ms > thresholds.p95_ms:
        misses.append(f"--slo-p95-ms: p95 latency {observed.p95_ms:.3f} ms > limit {thresholds.p95_ms:g} ms")
    if thresholds.p99_ms is not None and observed.p99_ms > thresholds.p99_ms:
        misses.append(f"--slo-p99-ms: p99 latency {observed.p99_ms:.3f} ms > limit {thresholds.p99_ms:g} ms")
    if thresholds.max_error_rate is not None and observed.error_rate > thresholds.max_error_rate:
        misses.append(
            f"--slo-error-rate: error rate {observed.error_rate:.4f} ({observed.failures}/{observed.requests}) "
            f"> limit {thresholds.max_error_rate:g}"
        )
    if thresholds.min_rps is not None and observed.rps < thresholds.min_rps:
        misses.append(f"--slo-min-rps: throughput {observed.rps:.1f} req/s < minimum {thresholds.min_rps:g} req/s")
    return misses


def observe(stats, recorder: LatencyRecorder) -> Observed:
    total = recorder.total
    return Observed(
        requests=stats.total.num_requests,
        failures=stats.total.num_failures,
        rps=stats.total.total_rps,
        p95_ms=total.get_value_at_percentile(95) / 1000 if total.get_total_count() else 0.0,
        p99_ms=total.get_value_at_percentile(99) / 1000 if total.get_total_count() else 0.0,
    )


def add_arguments(parser) -> None:
    group = parser.add_argument_group("modelport SLO gate (exit code %d when missed)" % EXIT_CODE_SLO_MISSED)
    group.add_argument("--slo-p95-ms", type=float, default=None, help="maximum p95 latency of successful requests")
    group.add_argument("--slo-p99-ms", type=float, default=None, help="maximum p99 latency of successful requests")
    group.add_argument("--slo-error-rate", type=float, default=None, help="maximum failed/total, e.g. 0.01")
    group.add_argument("--slo-min-rps", type=float, default=None, help="minimum requests per second over the run")


def attach(environment, recorder: LatencyRecorder) -> None:
    def check(environment, **_kwargs) -> None:
        if environment.parsed_options is None or _is_worker(environment):
            return
        thresholds = Thresholds.from_options(environment.parsed_options)
        misses = evaluate(thresholds, observe(environment.stats, recorder))
        if misses:
            environment.process_exit_code = EXIT_CODE_SLO_MISSED
            print("SLO MISSED:\n  " + "\n  ".join(misses), flush=True)
        elif thresholds.any:
            print("SLO met: " + _describe(thresholds), flush=True)

    # Locust fires quitting just before it picks the exit code (docs: "Controlling the exit code"), so the code set
    # here is the code the process exits with. Listeners run in reverse order of registration: attach this first.
    environment.events.quitting.add_listener(check)


def _describe(thresholds: Thresholds) -> str:
    parts = []
    if thresholds.p95_ms is not None:
        parts.append(f"p95 <= {thresholds.p95_ms:g} ms")
    if thresholds.p99_ms is not None:
        parts.append(f"p99 <= {thresholds.p99_ms:g} ms")
    if thresholds.max_error_rate is not None:
        parts.append(f"error rate <= {thresholds.max_error_rate:g}")
    if thresholds.min_rps is not None:
        parts.append(f">= {thresholds.min_rps:g} req/s")
    return ", ".join(parts)


def _is_worker(environment) -> bool:
    from locust.runners import WorkerRunner

    return isinstance(environment.runner, WorkerRunner)
