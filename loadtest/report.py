"""The run's report beside Locust's own CSV/HTML (`--csv`, `--html`): microsecond percentiles, a timeline plot of
throughput and latency percentiles, and Triton's side of the run from its metrics endpoint.

Printed at the end of every run; written to `--report-dir` (summary.md, timeline.png, timeline.csv) when given.
"""

from __future__ import annotations

import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import gevent

from core.measure import triton_metrics

from core import promql
from loadtest import hdr



@dataclass(frozen=True)
class TimelinePoint:
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float


def add_arguments(parser) -> None:
    group = parser.add_argument_group("modelport report")
    group.add_argument("--report-dir", default=None, help="write summary.md, timeline.png and timeline.csv here")
    group.add_argument(
        "--metrics-url", default="127.0.0.1:8002",
        help="Triton's metrics endpoint, read before and after the run ('none' to skip)",
    )
    group.add_argument("--timeline-interval", type=float, default=3.0,
        help="seconds per timeline point (3 s matches how often distributed workers report)")
    group.add_argument("--prometheus-url", default="127.0.0.1:9090",
        help="the Prometheus (`make monitor`) the report's queries for this run's window point at ('none' to omit)")


def prometheus_section(url: str, started: float, ended: float) -> str:
    """The Prometheus queries for one run's window (wall-clock seconds), each with a graph link and an API call."""
    base = url if url.startswith(("http://", "https://")) else f"http://{url}"
    seconds = ended - started

    def stamp(t: float) -> str:  # the format of the Prometheus UI's end time, in UTC
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))

    lines = [f"Window {stamp(started)} .. {stamp(ended)} UTC ({seconds:.0f} s), Prometheus {base}. Each query is "
             f"meant for the end of the run (`time={ended:.0f}`) and averages over the run "
             f"({promql.run_window(seconds)}).", "", "| question | PromQL | |", "|---|---|---|"]
    for question, expr in promql.run_queries(seconds):
        graph = base + "/graph?" + urllib.parse.urlencode({
            "g0.expr": expr, "g0.tab": "0", "g0.range_input": f"{max(60, int(seconds) + 60)}s",
            "g0.end_input": stamp(ended + 30)})
        api = base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr, "time": f"{ended:.0f}"})
        cell = expr.replace("|", "\\|")  # a regex alternation would end the table cell
        lines.append(f"| {question} | `{cell}` | [graph]({graph}) [api]({api}) |")
    return "\n".join(lines)


def plot_timeline(points: list[TimelinePoint], path: Path, title: str) -> None:
    # the object-oriented API with an Agg canvas: no pyplot global state, no display needed
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 6), dpi=100)
    FigureCanvasAgg(figure)
    throughput, latency = figure.subplots(2, 1, sharex=True)
    seconds = [p.seconds for p in points]
    throughput.plot(seconds, [p.rps for p in points], color="tab:blue")
    throughput.set_ylabel("requests/s")
    throughput.set_title(title)
    throughput.grid(True, alpha=0.3)
    for attribute, label in (("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99")):
        latency.plot(seconds, [getattr(p, attribute) for p in points], label=label)
    latency.set_ylabel("latency ms (successful requests)")
    latency.set_xlabel("seconds since start")
    latency.legend()
    latency.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)


def timeline_point(seconds: float, interval_s: float, histogram) -> TimelinePoint:
    count = histogram.get_total_count()
    if not count:
        return TimelinePoint(seconds, 0.0, 0.0, 0.0, 0.0)
    values = histogram.get_percentile_to_value_dict([50, 90, 99])
    return TimelinePoint(seconds, count / interval_s, values[50] / 1000, values[90] / 1000, values[99] / 1000)


class RunReport:
    """Listens to one Locust environment on the master (or the only process); does nothing on workers."""

    def __init__(self, environment, recorder: hdr.LatencyRecorder) -> None:
        self.environment = environment
        self.recorder = recorder
        self.points: list[TimelinePoint] = []
        self.before: dict[str, triton_metrics.ModelCounters] | None = None
        self.after: dict[str, triton_metrics.ModelCounters] | None = None
        self.metrics_error: str | None = None
        self.window: tuple[float, float | None] | None = None  # wall-clock start, end of the run
        self._sampler = None
        self._started = self._last_sample = 0.0  # monotonic seconds: the run's start, the last timeline point

    @property
    def options(self):
        return self.environment.parsed_options

    def attach(self) -> RunReport:
        events = self.environment.events
        events.test_start.add_listener(self.on_test_start)
        events.test_stop.add_listener(self.on_test_stop)
        events.quitting.add_listener(self.on_quitting)
        return self

    def _is_worker(self) -> bool:
        from locust.runners import WorkerRunner

        return isinstance(self.environment.runner, WorkerRunner)

    def _scrape(self) -> dict[str, triton_metrics.ModelCounters] | None:
        url = getattr(self.options, "metrics_url", "none") if self.options else "none"
        if url == "none":
            return None
        try:
            return triton_metrics.scrape(url)
        except Exception as error:
            self.metrics_error = f"could not read Triton metrics at {url} ({error!r}); pass --metrics-url HOST:PORT"
            return None

    def on_test_start(self, environment, **_kwargs) -> None:
        if self._is_worker():
            return
        self.before = self._scrape()
        self.window = (time.time(), None)
        self.recorder.take_interval()
        self.points.clear()
        self._started = self._last_sample = time.monotonic()
        self._sampler = gevent.spawn(self._sample)

    def _sample(self) -> None:
        interval = self.options.timeline_interval if self.options else 3.0
        while True:
            gevent.sleep(interval)
            self._add_point()

    def _add_point(self, shortest_s: float = 0.0) -> None:
        """A timeline point for the requests since the last one, over the time they really took."""
        now = time.monotonic()
        elapsed = now - self._last_sample
        if elapsed > shortest_s:
            self.points.append(timeline_point(now - self._started, elapsed, self.recorder.take_interval()))
            self._last_sample = now

    def on_test_stop(self, environment, **_kwargs) -> None:
        if self._is_worker():
            return
        if self._sampler is not None:
            self._sampler.kill(block=False)
            self._sampler = None
            # the run's last part: a run shorter than one interval (or a slow sampler under load) still gets a point
            self._add_point(shortest_s=0.0 if not self.points else 0.2)
        if self.window is not None:
            self.window = (self.window[0], time.time())
        self.after = self._scrape()

    def summary(self) -> str:
        parts = ["## Latency at microsecond resolution (HDR histogram, successful requests)", "",
                 hdr.format_percentiles(self.recorder.percentiles()), ""]
        parts += ["## Triton during the run (metrics endpoint, after - before)", ""]
        if self.before is not None and self.after is not None:
            parts.append(triton_metrics.format_activity(triton_metrics.activity(self.before, self.after)))
        else:
            parts.append(self.metrics_error or "skipped (--metrics-url none)")
        url = getattr(self.options, "prometheus_url", "none") if self.options else "none"
        if url != "none" and self.window is not None:
            ended = self.window[1] if self.window[1] is not None else time.time()
            parts += ["", "## Prometheus queries for this run", "", prometheus_section(url, self.window[0], ended)]
        return "\n".join(parts) + "\n"

    def on_quitting(self, environment, **_kwargs) -> None:
        if self._is_worker() or self.options is None:
            return
        if self.after is None and self.before is not None:  # quit without a test_stop (web UI closed mid-run)
            self.after = self._scrape()
        text = self.summary()
        print("\n" + text, flush=True)
        if self.options.report_dir:
            self.write(Path(self.options.report_dir), text)

    def write(self, directory: Path, text: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "summary.md").write_text("# modelport load test\n\n" + text, encoding="utf-8")
        with open(directory / "timeline.csv", "w", encoding="utf-8") as handle:
            handle.write("seconds,rps,p50_ms,p90_ms,p99_ms\n")
            for p in self.points:
                handle.write(f"{p.seconds:.1f},{p.rps:.1f},{p.p50_ms:.3f},{p.p90_ms:.3f},{p.p99_ms:.3f}\n")
        if self.points:
            plot_timeline(self.points, directory / "timeline.png", "modelport load test: throughput and latency")
        print(f"modelport report written to {directory}/ (summary.md, timeline.png, timeline.csv)", flush=True)
