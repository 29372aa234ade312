"""One benchmark run: start every contender, measure the generator's ceiling, drive each cell in interleaved rounds,
then the in-process limit at the batch Triton formed and the client overhead; return BenchResults.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import client_overhead, inprocess, loadgen, servers
from bench.results import BenchResults, Cell, CellResult, GeneratorCeiling, Round
from loadtest import payloads, triton_metrics, v2

# the model whose executions show the batch formed: for the sentiment ensemble, its ONNX step
BATCHING_MODEL = {"digits": "digits", "sentiment": "sentiment_classifier"}
SAMPLES_PER_TARGET = 256


@dataclass(frozen=True)
class BenchOptions:
    repository: Path
    work_dir: Path
    rounds: int
    duration_s: float
    warmup_s: float
    workers: int
    mode: str
    client_blocks: int
    in_process_s: float


def plan(repository: Path) -> tuple[list[Cell], list[str]]:
    """The cells the issue's targets need, for the models the repository has; and notes on what was skipped."""
    cells, notes = [], []
    if (repository / "digits" / "1" / "model.onnx").is_file():
        cells += [Cell("digits", s, "binary", 1) for s in ("triton", "fastapi", "flask")]
        cells += [Cell("digits", s, "binary", 64) for s in ("triton", "triton-nobatch", "fastapi", "flask")]
        cells += [Cell("digits", s, "json", 64) for s in ("triton", "fastapi", "flask")]
    else:
        notes.append(f"digits skipped: {repository}/digits/1/model.onnx missing (run `make export`)")
    if (repository / "sentiment_classifier" / "1" / "model.onnx").is_file():
        cells += [Cell("sentiment", s, "binary", c) for s in ("triton", "triton-nobatch") for c in (1, 64)]
    else:
        notes.append(f"sentiment skipped: {repository}/sentiment_classifier/1/model.onnx missing")
    return cells, notes


def triton_requests(model: str, encoding: str, host: str) -> tuple[bytes, ...]:
    built = []
    for sample in payloads.samples(model, SAMPLES_PER_TARGET):
        request = v2.http_request(sample, encoding)
        built.append(loadgen.http_request(host, request.path, request.body, request.headers))
    return tuple(built)


def baseline_requests(encoding: str, host: str) -> tuple[bytes, ...]:
    built = []
    for sample in payloads.samples("digits", SAMPLES_PER_TARGET):
        if encoding == "binary":
            body, path, kind = sample.array.astype("<f4").tobytes(), "/predict/binary", "application/octet-stream"
        else:
            body, path, kind = json.dumps({"inputs": sample.array.tolist()}).encode(), "/predict", "application/json"
        built.append(loadgen.http_request(host, path, body, {"Content-Type": kind}))
    return tuple(built)


def measure_ceiling(work_dir: Path, duration_s: float) -> GeneratorCeiling:
    with servers.trivial(work_dir) as endpoint:
        request = loadgen.http_request("bench", "/", b"{}", {"Content-Type": "application/json"})
        target = loadgen.HttpTarget(endpoint.host, endpoint.port, (request,))
        m = loadgen.run(target, loadgen.LoadSpec(64, duration_s, 0.5))
    return GeneratorCeiling(64, m.rps, m.generator_cpu)


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(options: BenchOptions) -> BenchResults:
    cells, notes = plan(options.repository)
    if not cells:
        raise SystemExit("nothing to benchmark: " + "; ".join(notes))
    options.work_dir.mkdir(parents=True, exist_ok=True)
    _log(f"{len(cells)} cells x {options.rounds} rounds of {options.duration_s:g}s (+{options.warmup_s:g}s warm-up)")
    ceiling = measure_ceiling(options.work_dir, max(1.0, options.duration_s))
    _log(f"generator ceiling vs trivial endpoint: {ceiling.rps:.0f} req/s at {ceiling.generator_cpu:.0%} CPU")

    wanted = {c.server for c in cells}
    onnx = options.repository / "digits" / "1" / "model.onnx"
    probe = np.zeros((1, 8, 8, 1), dtype="<f4").tobytes()
    with contextlib.ExitStack() as stack:
        running: dict[str, servers.Running] = {}
        if "triton" in wanted:
            running["triton"] = stack.enter_context(servers.triton("triton", options.repository, options.work_dir))
        if "triton-nobatch" in wanted:
            copy = servers.without_dynamic_batching(options.repository, options.work_dir / "repository-nobatch")
            running["triton-nobatch"] = stack.enter_context(servers.triton("triton-nobatch", copy, options.work_dir))
        if "fastapi" in wanted:
            running["fastapi"] = stack.enter_context(
                servers.fastapi_uvicorn(onnx, options.workers, options.work_dir, probe))
        if "flask" in wanted:
            running["flask"] = stack.enter_context(servers.flask_gunicorn(onnx, options.workers, options.work_dir, probe))
        _log("servers up: " + ", ".join(f"{r.name} :{r.port}" for r in running.values()))

        targets = {}
        for cell in cells:
            server = running[cell.server]
            host = f"{server.host}:{server.port}"
            key = (cell.model, cell.server, cell.encoding)
            if key not in targets:
                requests = (triton_requests(cell.model, cell.encoding, host) if cell.server.startswith("triton")
                            else baseline_requests(cell.encoding, host))
                targets[key] = loadgen.HttpTarget(server.host, server.port, requests)

        rounds: dict[Cell, list[Round]] = {cell: [] for cell in cells}
        for index in range(options.rounds):
            # rotate the order every round so slow drift (other tenants, thermal) spreads over all cells
            shift = index * max(1, len(cells) // options.rounds)
            for cell in cells[shift:] + cells[:shift]:
                rounds[cell].append(_measure(cell, running[cell.server], targets[(cell.model, cell.server,
                                                                                   cell.encoding)], options))
            _log(f"round {index + 1}/{options.rounds} done")
        results = tuple(CellResult(cell, tuple(rounds[cell])) for cell in cells)

        # the side measurements below must not cost the table: a failure becomes a note in the results
        client = None
        if "triton" in running and options.client_blocks:
            image = payloads.samples("digits", 1)[0].array
            try:
                client = client_overhead.measure(f"127.0.0.1:{running['triton'].port}", image, options.client_blocks)
                _log(f"client overhead: {client.overhead:+.1%}")
            except Exception as error:
                notes.append(f"client overhead not measured: {error!r}")

    in_process = []
    for model in ("digits", "sentiment"):
        served = next((r for r in results if r.cell == Cell(model, "triton", "binary", 64)), None)
        if served is not None:
            batch = max(1, round(served.avg_batch or 1))
            try:
                in_process.append(inprocess.measure(model, options.repository, batch, options.in_process_s))
                _log(f"in-process {model} at batch {batch}: {in_process[-1].samples_per_s:.0f} samples/s")
            except Exception as error:
                notes.append(f"in-process {model} not measured: {error!r}")

    conditions = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "mode": options.mode,
        "cpus": os.cpu_count(),
        "rounds": options.rounds,
        "duration_s": options.duration_s,
        "warmup_s": options.warmup_s,
        "workers": options.workers,
        "load_average_at_end": round(os.getloadavg()[0], 2),
        "note": "; ".join(notes),
    }
    return BenchResults(conditions, ceiling, results, tuple(in_process), client)


def _measure(cell: Cell, server: servers.Running, target: loadgen.HttpTarget, options: BenchOptions) -> Round:
    before = triton_metrics.scrape(server.metrics_url) if server.metrics_url else None
    m = loadgen.run(target, loadgen.LoadSpec(cell.connections, options.duration_s, options.warmup_s))
    avg_batch = queue_us = None
    if before is not None:
        activity = triton_metrics.activity(before, triton_metrics.scrape(server.metrics_url))
        formed = next((a for a in activity if a.model == BATCHING_MODEL[cell.model]), None)
        if formed:
            avg_batch, queue_us = formed.avg_batch, formed.queue_us_per_request
    return Round(m.rps, m.p50_ms, m.p99_ms, m.errors, m.generator_cpu, avg_batch, m.first_error, queue_us)
