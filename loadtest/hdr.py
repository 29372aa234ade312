"""Microsecond latencies in HDR histograms, fed from Locust's request events.

Locust's own statistics bucket response times to whole milliseconds below 100 ms (`locust.stats.bucket_response_time`),
so a sub-millisecond Triton reads as 0 or 1 ms there. The `response_time` an event carries is not rounded: both
FastHttpUser and our gRPC user measure it with `time.perf_counter()` and pass float milliseconds. We record it in µs
with 3 significant digits. Workers ship their histograms to the master with every report, so `--processes` and
distributed runs give one merged distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 120_000_000  # two minutes: anything slower is clamped, and is a failure by any SLO anyway
SIGNIFICANT_DIGITS = 3
TOTAL = "Aggregated"
_REPORT_KEY = "modelport_hdr"


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


@dataclass(frozen=True)
class Percentiles:
    count: int
    p50_us: int
    p90_us: int
    p99_us: int
    p999_us: int
    max_us: int

    @classmethod
    def of(cls, histogram: HdrHistogram) -> Percentiles:
        if not histogram.get_total_count():
            return cls(0, 0, 0, 0, 0, 0)
        values = histogram.get_percentile_to_value_dict([50, 90, 99, 99.9])
        return cls(
            count=histogram.get_total_count(),
            p50_us=values[50],
            p90_us=values[90],
            p99_us=values[99],
            p999_us=values[99.9],
            max_us=histogram.get_max_value(),
        )


def to_microseconds(response_time_ms: float) -> int:
    return min(HIGHEST_US, max(LOWEST_US, round(response_time_ms * 1000)))


class LatencyRecorder:
    """Successful requests' latencies, per "<request_type> <name>" and in total, plus an interval histogram that the
    timeline drains. Failures are left out on purpose: a fast 400 would flatter the percentiles."""

    def __init__(self) -> None:
        self.by_name: dict[str, HdrHistogram] = {}
        self.total = new_histogram()
        self.interval = new_histogram()

    def record(self, key: str, microseconds: int) -> None:
        self.by_name.setdefault(key, new_histogram()).record_value(microseconds)
        self.total.record_value(microseconds)
        self.interval.record_value(microseconds)

    def on_request(self, request_type: str, name: str, response_time: float, exception=None, **_kwargs) -> None:
        if exception is None and response_time is not None:
            self.record(f"{request_type} {name}", to_microseconds(response_time))

    def take_interval(self) -> HdrHistogram:
        taken, self.interval = self.interval, new_histogram()
        return taken

    def percentiles(self) -> dict[str, Percentiles]:
        rows = {key: Percentiles.of(hist) for key, hist in sorted(self.by_name.items())}
        rows[TOTAL] = Percentiles.of(self.total)
        return rows

    # Distributed runs: a worker sends what it recorded since its last report and starts afresh; the master merges.
    def on_report_to_master(self, client_id, data: dict) -> None:
        data[_REPORT_KEY] = {key: hist.encode() for key, hist in self.by_name.items() if hist.get_total_count()}
        self.by_name, self.total, self.interval = {}, new_histogram(), new_histogram()

    def on_worker_report(self, client_id, data: dict) -> None:
        for key, encoded in data.get(_REPORT_KEY, {}).items():
            hist = HdrHistogram.decode(encoded)
            self.by_name.setdefault(key, new_histogram()).add(hist)
            self.total.add(hist)
            self.interval.add(hist)

    def attach(self, events) -> LatencyRecorder:
        events.request.add_listener(self.on_request)
        events.report_to_master.add_listener(self.on_report_to_master)
        events.worker_report.add_listener(self.on_worker_report)
        return self


def format_percentiles(rows: dict[str, Percentiles]) -> str:
    lines = [
        "| request | count | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, p in rows.items():
        lines.append(f"| {key} | {p.count} | {p.p50_us} | {p.p90_us} | {p.p99_us} | {p.p999_us} | {p.max_us} |")
    return "\n".join(lines)
