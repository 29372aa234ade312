"""Benchmark results as data: per cell medians over interleaved rounds, the issue's targets as ratios, and the
markdown/JSON the run saves. Pure functions over recorded numbers, so the tests check them on recorded data.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field

from core.measure.perf_analyzer import PerfResult


@dataclass(frozen=True)
class Cell:
    model: str
    server: str  # triton | triton-nobatch | gateway | flask | fastapi
    encoding: str  # binary | json
    connections: int


@dataclass(frozen=True)
class Round:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    generator_cpu: float
    avg_batch: float | None = None  # Triton only: inferences / executions during this round
    first_error: str = ""
    queue_us: float | None = None  # Triton only: mean µs a request waited in the batching model's queue
    server_cpu_us: float | None = None  # CPU µs per request of the cell's server (its process group)
    backend_cpu_us: float | None = None  # gateway cells: CPU µs per request of the Triton behind it


@dataclass(frozen=True)
class CellResult:
    cell: Cell
    rounds: tuple[Round, ...]

    @property
    def rps(self) -> float:
        return statistics.median(r.rps for r in self.rounds)

    @property
    def p50_ms(self) -> float:
        return statistics.median(r.p50_ms for r in self.rounds)

    @property
    def p99_ms(self) -> float:
        return statistics.median(r.p99_ms for r in self.rounds)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.rounds)

    @property
    def generator_cpu(self) -> float:
        return statistics.median(r.generator_cpu for r in self.rounds)

    @property
    def avg_batch(self) -> float | None:
        batches = [r.avg_batch for r in self.rounds if r.avg_batch]
        return statistics.median(batches) if batches else None

    @property
    def queue_us(self) -> float | None:
        queued = [r.queue_us for r in self.rounds if r.queue_us is not None]
        return statistics.median(queued) if queued else None

    @property
    def server_cpu_us(self) -> float | None:
        measured = [r.server_cpu_us for r in self.rounds if r.server_cpu_us is not None]
        return statistics.median(measured) if measured else None

    @property
    def backend_cpu_us(self) -> float | None:
        measured = [r.backend_cpu_us for r in self.rounds if r.backend_cpu_us is not None]
        return statistics.median(measured) if measured else None


@dataclass(frozen=True)
class InProcess:
    model: str
    batch_size: int
    samples_per_s: float
    what: str  # e.g. "ONNX Runtime, 2 threads" or "tokenizer + ONNX Runtime"


@dataclass(frozen=True)
class ClientOverhead:
    raw_us: float  # median per-call latency with tritonclient.http
    modelport_us: float  # the same call through modelport.Client

    @property
    def overhead(self) -> float:
        return self.modelport_us / self.raw_us - 1 if self.raw_us else 0.0


@dataclass(frozen=True)
class GeneratorCeiling:
    connections: int
    rps: float
    generator_cpu: float


@dataclass(frozen=True)
class PerfAnalyzerCell:
    """NVIDIA perf_analyzer on one Triton cell: same model, concurrency and payloads as our generator's."""

    cell: Cell
    result: PerfResult


@dataclass(frozen=True)
class BenchResults:
    conditions: dict
    ceiling: GeneratorCeiling | None
    cells: tuple[CellResult, ...]
    in_process: tuple[InProcess, ...] = ()
    client: ClientOverhead | None = None
    perf_analyzer: tuple[PerfAnalyzerCell, ...] = ()

    def find(self, model: str, server: str, encoding: str, connections: int) -> CellResult | None:
        for result in self.cells:
            if result.cell == Cell(model, server, encoding, connections):
                return result
        return None

    def in_process_for(self, model: str) -> InProcess | None:
        return next((p for p in self.in_process if p.model == model), None)


@dataclass(frozen=True)
class TargetCheck:
    name: str
    target: str
    observed: str
    met: bool | None  # None: not measured
    notes: tuple[str, ...] = field(default_factory=tuple)


def _short(ratio: float, needed: float) -> str:
    return f"{(1 - ratio / needed) * 100:.0f} % short of {needed:g}×"


def _why(*results: CellResult | None) -> tuple[str, ...]:
    """Automatic hints for a miss; docs/bench.md discusses the rest."""
    notes = []
    for r in results:
        if r is None:
            continue
        if r.generator_cpu > 0.9:
            notes.append(f"{r.cell.server}: load generator at {r.generator_cpu:.0%} CPU, it may have set the pace")
        if r.errors:
            notes.append(f"{r.cell.server}: {r.errors} errors")
        if r.cell.server == "triton" and r.avg_batch is not None and r.avg_batch < 1.5 and r.cell.connections > 1:
            notes.append(f"triton formed batches of only {r.avg_batch:.2f} on average")
        if r.queue_us is not None and r.queue_us > 1000 * max(r.p50_ms, 0.1):
            notes.append(f"{r.cell.server}: requests waited {r.queue_us / 1000:.1f} ms on average in Triton's queue, "
                         f"more than the p50 of {r.p50_ms:.2f} ms: stalls in the scheduler, not slow compute")
    return tuple(notes)


def _throughput_vs(results: BenchResults, name: str, mine: tuple, theirs: tuple, needed: float,
                   p99_no_worse: bool) -> TargetCheck:
    a, b = results.find(*mine), results.find(*theirs)
    target = f">= {needed:g}×" + (" at a p99 no worse" if p99_no_worse else "")
    if a is None or b is None or not b.rps:
        return TargetCheck(name, target, "not measured", None)
    ratio = a.rps / b.rps
    observed = f"{ratio:.2f}× ({a.rps:.0f} vs {b.rps:.0f} req/s"
    observed += f"; p99 {a.p99_ms:.2f} vs {b.p99_ms:.2f} ms)" if p99_no_worse else ")"
    met = ratio >= needed and (not p99_no_worse or a.p99_ms <= b.p99_ms)
    notes = () if met else _miss_notes(ratio, needed, a, b, p99_no_worse)
    return TargetCheck(name, target, observed, met, notes)


def _miss_notes(ratio, needed, a, b, p99_no_worse) -> tuple[str, ...]:
    notes = []
    if ratio < needed:
        notes.append(_short(ratio, needed))
    if p99_no_worse and a.p99_ms > b.p99_ms:
        notes.append(f"p99 {a.p99_ms / b.p99_ms - 1:.0%} worse")
    return tuple(notes) + _why(a, b)


def target_models(results: BenchResults) -> tuple[str, str, str]:
    """(tensors, pipeline, compute): the models the targets are checked on. Issues 5 and 9's targets: throughput
    against the baselines on a model of raw tensors, batching and the in-process limit on a pipeline, the in-process
    limit on a compute-bound model; the run records which models played each role (models.toml's [bench]). A
    `--model` run checks every target on its one model."""
    model = results.conditions.get("model")
    if model:
        return model, model, model
    on = results.conditions.get("targets_on", {})
    return on.get("tensors", "-"), on.get("pipeline", "-"), on.get("compute", "-")


def targets(results: BenchResults) -> list[TargetCheck]:
    tensors, pipeline, compute = target_models(results)
    checks = [
        _throughput_vs(results, f"{tensors}, 64 connections: Triton vs Flask (binary)",
                       (tensors, "triton", "binary", 64), (tensors, "flask", "binary", 64), 3.0, True),
        _throughput_vs(results, f"{tensors}, 64 connections: Triton vs FastAPI (binary)",
                       (tensors, "triton", "binary", 64), (tensors, "fastapi", "binary", 64), 2.0, True),
        _throughput_vs(results, f"{tensors}, 64 connections: Triton vs Flask (JSON)",
                       (tensors, "triton", "json", 64), (tensors, "flask", "json", 64), 3.0, True),
        _throughput_vs(results, f"{tensors}, 64 connections: Triton vs FastAPI (JSON)",
                       (tensors, "triton", "json", 64), (tensors, "fastapi", "json", 64), 2.0, True),
        _throughput_vs(results, f"{pipeline}, 64 connections: dynamic batching on vs off",
                       (pipeline, "triton", "binary", 64), (pipeline, "triton-nobatch", "binary", 64), 2.0,
                       False),
        _served_vs_in_process(results, pipeline),
        _throughput_vs(results, f"{tensors}, 1 connection: Triton vs FastAPI (binary)",
                       (tensors, "triton", "binary", 1), (tensors, "fastapi", "binary", 1), 0.9, False),
    ]
    if compute != pipeline:
        checks.append(_served_vs_in_process(results, compute))
    client = results.client
    if client is None:
        checks.append(TargetCheck("modelport client overhead over raw tritonclient", "<= 10 %", "not measured", None))
    else:
        met = client.overhead <= 0.10
        checks.append(TargetCheck(
            "modelport client overhead over raw tritonclient", "<= 10 %",
            f"{client.overhead:+.1%} ({client.modelport_us:.0f} vs {client.raw_us:.0f} µs per call)", met,
            () if met else (f"{(client.overhead - 0.10) * 100:.1f} points over",),
        ))
    return checks


def _served_vs_in_process(results: BenchResults, model: str) -> TargetCheck:
    served = results.find(model, "triton", "binary", 64)
    local = results.in_process_for(model)
    name = f"{model}: served samples/s vs in-process at the batch Triton formed"
    if served is None or local is None or not local.samples_per_s:
        return TargetCheck(name, ">= 0.7×", "not measured", None)
    ratio = served.rps / local.samples_per_s
    met = ratio >= 0.7
    observed = (f"{ratio:.2f}× ({served.rps:.0f} vs {local.samples_per_s:.0f} samples/s at batch "
                f"{local.batch_size}, {local.what})")
    return TargetCheck(name, ">= 0.7×", observed, met, () if met else (_short(ratio, 0.7),) + _why(served))


def format_table(results: BenchResults) -> str:
    lines = [
        "| model | connections | server | encoding | req/s | p50 ms | p99 ms | errors | batch formed | queue µs "
        "| generator CPU |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    order = {"triton": 0, "triton-nobatch": 1, "gateway": 2, "fastapi": 3, "flask": 4}
    cells = sorted(results.cells, key=lambda r: (r.cell.model, r.cell.connections, r.cell.encoding,
                                                  order.get(r.cell.server, 9)))
    for r in cells:
        batch = f"{r.avg_batch:.2f}" if r.avg_batch else "—"
        queue = f"{r.queue_us:.0f}" if r.queue_us is not None else "—"
        lines.append(
            f"| {r.cell.model} | {r.cell.connections} | {r.cell.server} | {r.cell.encoding} | {r.rps:.0f} "
            f"| {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} | {batch} | {queue} | {r.generator_cpu:.0%} |"
        )
    return "\n".join(lines)


def format_gateway(results: BenchResults) -> str:
    """The gateway against Triton's own JSON endpoint, same model and connections: what a request costs on top
    (p50 difference; at one connection that is the per-request overhead) and the req/s ratio."""
    lines = ["| model | connections | Triton JSON req/s | gateway req/s | ratio | Triton p50 ms | gateway p50 ms "
             "| overhead per request µs (p50) | gateway p99 ms | gateway errors | CPU µs/request: gateway "
             "| Triton behind it | Triton JSON direct |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    cpu = (lambda value: f"{value:.0f}" if value is not None else "—")
    for mine in sorted((r for r in results.cells if r.cell.server == "gateway"),
                       key=lambda r: (r.cell.model, r.cell.connections)):
        direct = results.find(mine.cell.model, "triton", "json", mine.cell.connections)
        if direct is None or not direct.rps:
            continue
        lines.append(f"| {mine.cell.model} | {mine.cell.connections} | {direct.rps:.0f} | {mine.rps:.0f} "
                     f"| {mine.rps / direct.rps:.2f}× | {direct.p50_ms:.2f} | {mine.p50_ms:.2f} "
                     f"| {(mine.p50_ms - direct.p50_ms) * 1000:+.0f} | {mine.p99_ms:.2f} | {mine.errors} "
                     f"| {cpu(mine.server_cpu_us)} | {cpu(mine.backend_cpu_us)} | {cpu(direct.server_cpu_us)} |")
    return "\n".join(lines)


def format_perf_analyzer(results: BenchResults) -> str:
    """perf_analyzer's throughput and p99 next to our generator's for the same cell, and Triton's breakdown per
    request (for an ensemble, then each composing model's)."""
    lines = [
        "| model | connections | ours req/s | perf_analyzer req/s | ratio | ours p99 ms | perf_analyzer p99 ms "
        "| queue µs | compute input µs | compute infer µs | compute output µs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for pa in results.perf_analyzer:
        r, ours = pa.result, results.find(pa.cell.model, pa.cell.server, pa.cell.encoding, pa.cell.connections)
        ratio = f"{r.throughput / ours.rps:.2f}×" if ours and ours.rps else "—"
        mine = (f"{ours.rps:.0f}", f"{ours.p99_ms:.2f}") if ours else ("—", "—")
        for times in (r.server, *r.composing):
            first = times is r.server
            lines.append(
                f"| {pa.cell.model if first else '↳ ' + times.model} | {pa.cell.connections if first else ''} "
                f"| {mine[0] if first else ''} | {f'{r.throughput:.0f}' if first else ''} | {ratio if first else ''} "
                f"| {mine[1] if first else ''} | {f'{r.p99_ms:.2f}' if first else ''} | {times.queue_us:.0f} "
                f"| {times.compute_input_us:.0f} | {times.compute_infer_us:.0f} | {times.compute_output_us:.0f} |")
    return "\n".join(lines)


def format_targets(checks: list[TargetCheck]) -> str:
    lines = ["| target | wanted | observed | met |", "|---|---|---|---|"]
    for c in checks:
        mark = {True: "yes", False: "**no**", None: "—"}[c.met]
        observed = c.observed + (f" — {'; '.join(c.notes)}" if c.notes else "")
        lines.append(f"| {c.name} | {c.target} | {observed} | {mark} |")
    return "\n".join(lines)


def format_markdown(results: BenchResults) -> str:
    c = results.conditions
    model = f" · model `{c['model']}`" if c.get("model") else ""
    parts = [
        "# modelport benchmark",
        "",
        f"{c.get('date', '')} · mode `{c.get('mode', '')}`{model} · {c.get('cpus', '?')} CPUs · "
        f"{c.get('rounds', '?')} interleaved rounds of {c.get('duration_s', '?')} s "
        f"(+{c.get('warmup_s', '?')} s warm-up) per cell · "
        f"medians over rounds · baselines: {c.get('workers', '?')} workers, 1 ONNX Runtime thread each",
        "",
    ]
    if c.get("note"):
        parts += [c["note"], ""]
    if results.ceiling:
        g = results.ceiling
        parts += [
            f"Load generator: one process, asyncio + uvloop, raw HTTP/1.1 keep-alive, requests serialized up front. "
            f"Its ceiling against a trivial endpoint on this machine: {g.rps:.0f} req/s at {g.connections} "
            f"connections ({g.generator_cpu:.0%} of one core, sharing the cores with that endpoint). "
            f"Its CPU share during each cell is in the table.",
            "",
        ]
    parts += ["## Throughput and latency", "", format_table(results), ""]
    if any(r.cell.server == "gateway" for r in results.cells):
        parts += ["## Gateway vs direct Triton", "",
                  "The gateway's JSON API (an API key on every request, its limits and the access log on; rates "
                  "and load bounds out of the way) in front of the same Triton over gRPC, against Triton's own HTTP "
                  "JSON endpoint with the same rows. CPU µs per request: each server's process group over the "
                  "cell's run, warm-up included, at the measured rate.", "",
                  format_gateway(results), ""]
    if results.perf_analyzer:
        windows = results.perf_analyzer[0].result
        parts += ["## perf_analyzer next to our generator", "",
                  f"NVIDIA perf_analyzer {windows.protocol.upper()} with binary tensors and the same payloads, on the "
                  f"same Triton right after our generator's rounds, 3 windows of {c.get('duration_s', '?')} s each. "
                  "Queue and compute: Triton's own per-request averages, which perf_analyzer reads from the "
                  "statistics API (for an ensemble its composing models follow, ↳).", "",
                  format_perf_analyzer(results), ""]
    if results.in_process:
        parts += ["## In-process ONNX Runtime at the batch size Triton formed", "",
                  "| model | batch | samples/s | what |", "|---|---:|---:|---|"]
        parts += [f"| {p.model} | {p.batch_size} | {p.samples_per_s:.0f} | {p.what} |" for p in results.in_process]
        parts.append("")
    if results.client:
        parts += ["## Client overhead", "",
                  f"Sequential {target_models(results)[0]} calls, one connection, median per call: raw "
                  f"tritonclient.http {results.client.raw_us:.0f} µs, "
                  f"modelport.Client {results.client.modelport_us:.0f} µs "
                  f"({results.client.overhead:+.1%}).", ""]
    parts += ["## Targets (issues 5 and 9)", "", format_targets(targets(results)), ""]
    return "\n".join(parts)


def to_json(results: BenchResults) -> str:
    payload = asdict(results)
    payload["medians"] = [
        {**asdict(r.cell), "rps": r.rps, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "errors": r.errors,
         "avg_batch": r.avg_batch, "queue_us": r.queue_us, "generator_cpu": r.generator_cpu}
        for r in results.cells
    ]
    payload["targets"] = [asdict(t) for t in targets(results)]
    return json.dumps(payload, indent=2, ensure_ascii=False)


def from_json(text: str) -> BenchResults:
    data = json.loads(text)
    cells = tuple(
        CellResult(Cell(**c["cell"]), tuple(Round(**r) for r in c["rounds"])) for c in data["cells"]
    )
    return BenchResults(
        conditions=data["conditions"],
        ceiling=GeneratorCeiling(**data["ceiling"]) if data.get("ceiling") else None,
        cells=cells,
        in_process=tuple(InProcess(**p) for p in data.get("in_process", ())),
        client=ClientOverhead(**data["client"]) if data.get("client") else None,
        perf_analyzer=tuple(PerfAnalyzerCell(Cell(**p["cell"]), PerfResult.from_dict(p["result"]))
                            for p in data.get("perf_analyzer", ())),
    )
