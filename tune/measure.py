"""Measure one served candidate: one connection, then a sweep of connection counts, with a real load generator.

The sweep stops early where more connections cannot help the choice: once p99 is over the latency budget (in a
closed loop more connections only queue longer) or once throughput stops growing (the server is saturated).
Generators: core/measure/loadgen.py (our closed-loop HTTP/1.1 generator, the one `make bench` uses) or NVIDIA's
perf_analyzer (core/measure/perf_analyzer.py), both sending the model's own payloads from the spec.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from core.measure import loadgen, payloads, triton_metrics
from core.measure import perf_analyzer as pa
from core.spec import Spec
from tune.choose import Point, Trial
from tune.serving import CandidateNotServed, TuneServer
from tune.space import Candidate

GENERATORS = ("loadgen", "perf_analyzer")


@dataclass(frozen=True)
class Sweep:
    connections: tuple[int, ...]  # starts with 1: the idle latency the choice compares
    duration_s: float
    warmup_s: float
    saturation_gain: float = 0.0  # stop when throughput grows less than this from one count to the next

    def __post_init__(self) -> None:
        if not self.connections or self.connections[0] != 1 or list(self.connections) != sorted(set(self.connections)):
            raise ValueError(f"connections must start at 1 and increase, got {list(self.connections)} (--connections)")
        if self.duration_s <= 0 or self.warmup_s < 0:
            raise ValueError(f"duration must be > 0 and warm-up >= 0 s, got {self.duration_s}, {self.warmup_s}")


@dataclass(frozen=True)
class Load:
    """What a generator saw at one connection count."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int = 0
    first_error: str = ""


class Generator(Protocol):
    name: str

    def run(self, connections: int) -> Load: ...


class LoadgenGenerator:
    name = "loadgen"

    def __init__(self, spec: Spec, target: str, http_url: str, sweep: Sweep) -> None:
        host, port = http_url.rsplit(":", 1)
        samples = payloads.samples(payloads.target(spec, target))
        self.target = loadgen.HttpTarget(host, int(port), loadgen.triton_requests(samples, "binary", http_url))
        self.sweep = sweep

    def run(self, connections: int) -> Load:
        m = loadgen.run(self.target, loadgen.LoadSpec(connections, self.sweep.duration_s, self.sweep.warmup_s))
        return Load(m.rps, m.p50_ms, m.p99_ms, m.errors, m.first_error)


class PerfAnalyzerGenerator:
    """perf_analyzer over HTTP; its three windows together last the sweep's duration (no separate warm-up)."""

    name = "perf_analyzer"

    def __init__(self, spec: Spec, target: str, http_url: str, sweep: Sweep, work_dir: Path) -> None:
        self.installation = pa.provision()
        self.input_data = pa.write_input_data(payloads.samples(payloads.target(spec, target)),
                                              work_dir / f"{target}-input.json")
        self.target, self.http_url, self.work_dir = target, http_url, work_dir
        self.window_ms = max(100, round(sweep.duration_s * 1000 / pa.WINDOWS))

    def run(self, connections: int) -> Load:
        try:
            r = pa.measure(self.installation, pa.Run(self.target, self.http_url, "http", connections, self.window_ms,
                                                     self.input_data), self.work_dir)
        except pa.PerfAnalyzerFailed as error:
            return Load(0.0, 0.0, 0.0, 1, str(error))
        return Load(r.throughput, r.p50_ms, r.p99_ms)


def generator(name: str, spec: Spec, target: str, server: TuneServer, sweep: Sweep, work_dir: Path) -> Generator:
    if name == "loadgen":
        return LoadgenGenerator(spec, target, server.http_url, sweep)
    if name == "perf_analyzer":
        return PerfAnalyzerGenerator(spec, target, server.http_url, sweep, work_dir)
    raise ValueError(f"generator must be one of {GENERATORS}, got {name!r} (--generator)")


def measure(server: TuneServer, candidate: Candidate, load: Generator, sweep: Sweep,
            latency_budget_ms: float) -> Trial:
    """Serve the candidate and sweep; a candidate Triton will not serve is a Trial with an error, not a crash."""
    began = time.monotonic()
    try:
        server.serve(candidate)
    except CandidateNotServed as error:
        return Trial(candidate, (), time.monotonic() - began, error=str(error))
    formed_by = triton_metrics.batching_model(server.spec, server.space.target)
    points: list[Point] = []
    stopped = ""
    for connections in sweep.connections:
        before = triton_metrics.scrape(server.metrics_url)
        seen = load.run(connections)
        activity = triton_metrics.activity(before, triton_metrics.scrape(server.metrics_url))
        batch = next((a.avg_batch for a in activity if a.model == formed_by), None)
        point = Point(connections, seen.rps, seen.p50_ms, seen.p99_ms, seen.errors, batch)
        points.append(point)
        if seen.errors:
            stopped = f"{seen.errors} errors at {connections} connections: {seen.first_error[:200]}"
            break
        if point.p99_ms > latency_budget_ms and connections != sweep.connections[-1]:
            stopped = f"p99 {point.p99_ms:.1f} ms over the budget at {connections} connections"
            break
        if (len(points) > 2 and connections != sweep.connections[-1]
                and point.rps < points[-2].rps * (1 + sweep.saturation_gain)):
            stopped = f"saturated at {points[-2].connections} connections"
            break
    error = stopped if points and points[-1].errors else ""
    return Trial(candidate, tuple(points), time.monotonic() - began, error=error, stopped=stopped,
                 load_average=round(os.getloadavg()[0], 2))
