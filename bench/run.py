"""One benchmark run: start every contender, measure the generator's ceiling, drive each cell in interleaved rounds,
then the in-process limit at the batch Triton formed and the client overhead; return BenchResults.

What runs comes from the spec: the reference plan (issue 5's targets on the reference models), or `--model NAME`,
any onnx-kind model (variants included) against the same baselines, with payloads from its held-out set.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench import client_overhead, inprocess, servers
from bench.baselines.model import input_order, request_body
from bench.results import (BenchResults, Cell, CellResult, GeneratorCeiling, PerfAnalyzerCell, Round)
from core.errors import UserError
from core.measure import gateway_payloads, loadgen, payloads, perf_analyzer, triton_metrics, v2
from core.spec import ModelSpec, Spec

BASELINES = ("fastapi", "flask")


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
    model: str | None = None  # --model: one onnx-kind model instead of the reference plan
    perf_analyzer: bool = True  # also measure the Triton cells with NVIDIA's perf_analyzer
    gateway_only: bool = False  # --gateway: only the gateway cells and Triton's own JSON beside them


class PlanError(UserError):
    """`--model` names a model the benchmark cannot run; the message says which ones it can."""


def tensor_cells(model: str) -> list[Cell]:
    """A model taking tensors against every contender: one connection, 64 binary (batching on and off), 64 JSON."""
    return ([Cell(model, s, "binary", 1) for s in ("triton", *BASELINES)]
            + [Cell(model, s, "binary", 64) for s in ("triton", "triton-nobatch", *BASELINES)]
            + [Cell(model, s, "json", 64) for s in ("triton", *BASELINES)])


def pipeline_cells(model: str) -> list[Cell]:
    """A served pipeline (an ensemble) has no baseline: Triton with batching on and off."""
    return [Cell(model, s, "binary", c) for s in ("triton", "triton-nobatch") for c in (1, 64)]


def compute_cells(model: str) -> list[Cell]:
    """A compute-bound model on Triton: one connection, and 64 with batching on and off. Its figure of merit is
    served samples/s against in-process ONNX Runtime at the batch formed, so it needs no baseline."""
    return [Cell(model, "triton", "binary", 1)] + [Cell(model, s, "binary", 64) for s in ("triton", "triton-nobatch")]


def gateway_cells(cells: list[Cell]) -> list[Cell]:
    """The gateway in front of the same Triton, on the model that has baselines: its JSON API at 1 and 64
    connections, next to Triton's own JSON at both (the per-request overhead and the req/s ratio)."""
    model = next((c.model for c in cells if c.server in BASELINES), None)
    if model is None:
        return []
    direct = [c for c in (Cell(model, "triton", "json", 1), Cell(model, "triton", "json", 64)) if c not in cells]
    return direct + [Cell(model, "gateway", "json", n) for n in (1, 64)]


def gateway_requests(model: payloads.Target, host: str, key: str) -> tuple[bytes, ...]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    return tuple(loadgen.http_request(host, r.path, r.body, headers) for r in gateway_payloads.gateway_requests(model))


def plan(spec: Spec, repository: Path, model: str | None = None) -> tuple[list[Cell], list[str]]:
    """The cells to run, and notes on what was skipped. No model: the reference plan (issues 5 and 9's targets), for
    the reference models the repository has; a model: every cell for it, or PlanError."""
    if model is not None:
        check_model(spec, repository, model)
        return tensor_cells(model), []
    if spec.bench is None:
        return [], [f"{spec.path} has no [bench] table naming the reference models: add one, or pass --model NAME"]
    cells, notes = [], []
    for name, cells_for in ((spec.bench.tensors, tensor_cells), (spec.bench.pipeline, pipeline_cells),
                            (spec.bench.compute, compute_cells)):
        if spec.model(name) is None:
            notes.append(f"{name} skipped: not in {spec.path}")
            continue
        onnx = onnx_file(repository, triton_metrics.batching_model(spec, name))
        if onnx.is_file():
            cells += cells_for(name)
        else:
            notes.append(f"{name} skipped: {onnx} missing (run `make export`)")
    return cells, notes


def onnx_models(spec: Spec) -> list[str]:
    return [name for m in spec.models if m.kind == "onnx" for name in m.triton_names]


def check_model(spec: Spec, repository: Path, name: str) -> None:
    model = spec.model(name)
    available = ", ".join(onnx_models(spec)) or "(none)"
    if model is None:
        raise PlanError(f"--model {name}: no model of that name in {spec.path}; onnx models: {available}")
    if model.kind != "onnx":
        steps = triton_metrics.onnx_steps(spec, model)
        hint = f"its ONNX step: {', '.join(steps)}; " if steps else ""
        raise PlanError(f"--model {name}: kind = {model.kind!r}; the benchmark serves one model.onnx on every "
                        f"contender, so it needs an onnx-kind model ({hint}onnx models: {available})")
    if not onnx_file(repository, name).is_file():
        raise PlanError(f"--model {name}: {onnx_file(repository, name)} missing: run `make export`")


def onnx_file(repository: Path, triton_name: str) -> Path:
    return repository / triton_name / "1" / "model.onnx"


def baseline_bodies(model: payloads.Target, onnx: Path, encoding: str) -> tuple[tuple[str, bytes, str], ...]:
    """(path, body, content type) of the same rows in the baselines' formats (bench/baselines/model.py)."""
    order = input_order(onnx)
    built = []
    for sample in payloads.samples(model):
        arrays = {i.name: i.array for i in sample.inputs}
        if encoding == "binary":
            built.append(("/predict/binary", request_body([arrays[n] for n in order]), "application/octet-stream"))
        else:
            document = {"inputs": {name: a.tolist() for name, a in arrays.items()}}
            built.append(("/predict", json.dumps(document).encode(), "application/json"))
    return tuple(built)


def baseline_requests(model: payloads.Target, onnx: Path, encoding: str, host: str) -> tuple[bytes, ...]:
    return tuple(loadgen.http_request(host, path, body, {"Content-Type": kind})
                 for path, body, kind in baseline_bodies(model, onnx, encoding))


def batches(samples: tuple[payloads.Sample, ...], size: int) -> tuple[dict[str, np.ndarray], ...]:
    """Feeds of `size` rows each from one-row samples, repeating the rows when there are fewer than `size`; samples
    of different shapes (inputs with -1 dims) go to different feeds, as Triton batches them."""
    shapes: dict[tuple, list[payloads.Sample]] = {}
    for sample in samples:
        shapes.setdefault(tuple(i.array.shape for i in sample.inputs), []).append(sample)
    return tuple(feed for group in shapes.values() for feed in _batches(tuple(group), size))


def _batches(samples: tuple[payloads.Sample, ...], size: int) -> tuple[dict[str, np.ndarray], ...]:
    columns = {t.name: np.concatenate([s.inputs[k].array for s in samples]) for k, t in enumerate(samples[0].inputs)}
    rows = len(samples)
    if rows < size:
        columns = {name: np.concatenate([c] * math.ceil(size / rows)) for name, c in columns.items()}
        rows = len(next(iter(columns.values())))
    return tuple({name: c[i:i + size] for name, c in columns.items()} for i in range(0, rows - size + 1, size))


def in_process_job(spec: Spec, repository: Path, name: str, batch_size: int):
    """What the served model does, without serving: the ONNX model itself, or a tokenizer ensemble's two steps."""
    model = spec.model(name)
    samples = payloads.samples(payloads.target(spec, name))
    if model.kind == "onnx":
        return inprocess.OnnxJob(name, onnx_file(repository, name), batches(samples, batch_size), batch_size)
    steps = [s.model for s in model.source.steps]
    tokenizer_dir = repository / steps[0] / "1" if steps else None
    if (model.kind == "ensemble" and len(steps) == 2 and spec.model(steps[0]).kind == "python"
            and (tokenizer_dir / "text_encoding.py").is_file() and any(tokenizer_dir.rglob("tokenizer.json"))
            and spec.model(steps[1]).kind == "onnx"):
        texts = tuple(s.inputs[0].array.ravel()[0] for s in samples)
        return inprocess.TokenizedTextJob(name, onnx_file(repository, steps[1]), tokenizer_dir, texts, batch_size)
    raise ValueError(f"{name}: no in-process equivalent (an onnx-kind model, or an ensemble of a python step "
                     f"shipping text_encoding.py and tokenizer.json, and an ONNX step)")


def measure_ceiling(work_dir: Path, duration_s: float) -> GeneratorCeiling:
    with servers.trivial(work_dir) as endpoint:
        request = loadgen.http_request("bench", "/", b"{}", {"Content-Type": "application/json"})
        target = loadgen.HttpTarget(endpoint.host, endpoint.port, (request,))
        m = loadgen.run(target, loadgen.LoadSpec(64, duration_s, 0.5))
    return GeneratorCeiling(64, m.rps, m.generator_cpu)


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(spec: Spec, options: BenchOptions) -> BenchResults:
    cells, notes = plan(spec, options.repository, options.model)
    if not cells:
        raise SystemExit("nothing to benchmark: " + "; ".join(notes))
    cells += gateway_cells(cells)
    if options.gateway_only:
        model = next((c.model for c in cells if c.server == "gateway"), None)
        cells = [c for c in cells if c.model == model and c.encoding == "json" and c.server in ("triton", "gateway")]
        if not cells:
            raise SystemExit("nothing to benchmark: the gateway cells need the baseline model (" + "; ".join(notes)
                             + ")")
    options.work_dir.mkdir(parents=True, exist_ok=True)
    _log(f"{len(cells)} cells x {options.rounds} rounds of {options.duration_s:g}s (+{options.warmup_s:g}s warm-up)")
    ceiling = measure_ceiling(options.work_dir, max(1.0, options.duration_s))
    _log(f"generator ceiling vs trivial endpoint: {ceiling.rps:.0f} req/s at {ceiling.generator_cpu:.0%} CPU")

    wanted = {c.server for c in cells}
    # the baselines serve one model file: the model of the cells that have baselines
    baseline_model = next((c.model for c in cells if c.server in BASELINES), None)
    with contextlib.ExitStack() as stack:
        running: dict[str, servers.Running] = {}
        if "triton" in wanted:
            running["triton"] = stack.enter_context(servers.triton("triton", options.repository, options.work_dir))
        if "gateway" in wanted:
            running["gateway"] = stack.enter_context(servers.gateway(running["triton"], options.work_dir))
        if "triton-nobatch" in wanted:
            copy = servers.without_dynamic_batching(options.repository, options.work_dir / "repository-nobatch")
            running["triton-nobatch"] = stack.enter_context(servers.triton("triton-nobatch", copy, options.work_dir))
        if baseline_model is not None:
            onnx = onnx_file(options.repository, baseline_model)
            probe = baseline_bodies(payloads.target(spec, baseline_model), onnx, "binary")[0][1]
            for name, start in (("fastapi", servers.fastapi_uvicorn), ("flask", servers.flask_gunicorn)):
                if name in wanted:
                    running[name] = stack.enter_context(start(onnx, options.workers, options.work_dir, probe))
        _log("servers up: " + ", ".join(f"{r.name} :{r.port}" for r in running.values()))

        targets = {}
        for cell in cells:
            server = running[cell.server]
            host = f"{server.host}:{server.port}"
            key = (cell.model, cell.server, cell.encoding)
            if key not in targets:
                model = payloads.target(spec, cell.model)
                requests = (loadgen.triton_requests(payloads.samples(model), cell.encoding, host)
                            if cell.server.startswith("triton")
                            else gateway_requests(model, host, server.api_key) if cell.server == "gateway"
                            else baseline_requests(model, onnx_file(options.repository, cell.model), cell.encoding,
                                                   host))
                targets[key] = loadgen.HttpTarget(server.host, server.port, requests)

        rounds: dict[Cell, list[Round]] = {cell: [] for cell in cells}
        for index in range(options.rounds):
            # rotate the order every round so slow drift (other tenants, thermal) spreads over all cells
            shift = index * max(1, len(cells) // options.rounds)
            for cell in cells[shift:] + cells[:shift]:
                formed_by = triton_metrics.batching_model(spec, cell.model)
                rounds[cell].append(_measure(cell, running[cell.server], targets[(cell.model, cell.server,
                                                                                   cell.encoding)], formed_by, options,
                                             running.get("triton") if cell.server == "gateway" else None))
            _log(f"round {index + 1}/{options.rounds} done")
        results = tuple(CellResult(cell, tuple(rounds[cell])) for cell in cells)

        # the side measurements below must not cost the table: a failure becomes a note in the results
        client = None
        client_model = baseline_model or cells[0].model
        if "triton" in running and options.client_blocks:
            sample = payloads.samples(payloads.target(spec, client_model))[0]
            try:
                client = client_overhead.measure(f"127.0.0.1:{running['triton'].port}", sample, options.client_blocks)
                _log(f"client overhead: {client.overhead:+.1%}")
            except Exception as error:
                notes.append(f"client overhead not measured: {error!r}")
        perf = perf_analyzer_cells(spec, cells, running["triton"], options, notes) \
            if "triton" in running and options.perf_analyzer else ()

    in_process = []
    for model in dict.fromkeys(c.model for c in cells):
        served = next((r for r in results if r.cell == Cell(model, "triton", "binary", 64)), None)
        if served is not None:
            batch = max(1, round(served.avg_batch or 1))
            try:
                job = in_process_job(spec, options.repository, model, batch)
                in_process.append(inprocess.measure(job, options.in_process_s))
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
    if options.model:
        conditions["model"] = options.model
    else:
        conditions["targets_on"] = asdict(spec.bench)
    return BenchResults(conditions, ceiling, results, tuple(in_process), client, perf_analyzer=perf)


def perf_analyzer_cells(spec: Spec, cells: list[Cell], server: servers.Running, options: BenchOptions,
                        notes: list[str]) -> tuple[PerfAnalyzerCell, ...]:
    """perf_analyzer on each Triton cell our generator drove with binary tensors: same model, concurrency and
    payloads, over HTTP, 3 windows of one round's duration. What fails becomes a note, not a failed benchmark."""
    try:
        installation = perf_analyzer.provision()
    except perf_analyzer.PerfAnalyzerUnavailable as error:
        notes.append(f"perf_analyzer not run: {error}")
        return ()
    work_dir = options.work_dir / "perf_analyzer"
    measured = []
    for cell in (c for c in cells if c.server == "triton" and c.encoding == "binary"):
        data = perf_analyzer.write_input_data(payloads.samples(payloads.target(spec, cell.model)),
                                              work_dir / f"{cell.model}-input.json")
        run = perf_analyzer.Run(cell.model, f"{server.host}:{server.port}", "http", cell.connections,
                                round(options.duration_s * 1000), data)
        try:
            result = perf_analyzer.measure(installation, run, work_dir)
        except perf_analyzer.PerfAnalyzerFailed as error:
            notes.append(f"perf_analyzer {cell.model} at {cell.connections} connections: {error}")
            continue
        _log(f"perf_analyzer {cell.model} at {cell.connections}: {result.throughput:.0f} req/s, "
             f"p99 {result.p99_ms:.2f} ms")
        measured.append(PerfAnalyzerCell(cell, result))
    return tuple(measured)


def _measure(cell: Cell, server: servers.Running, target: loadgen.HttpTarget, formed_by: str,
             options: BenchOptions, backend: servers.Running | None = None) -> Round:
    before = triton_metrics.scrape(server.metrics_url) if server.metrics_url else None
    cpu_before = (_cpu_s(server), _cpu_s(backend))
    m = loadgen.run(target, loadgen.LoadSpec(cell.connections, options.duration_s, options.warmup_s))
    # CPU over the whole run, warm-up included, per request at the measured rate
    served = m.rps * (options.duration_s + options.warmup_s)
    cpu_us = [(_cpu_s(r) - before_s) / served * 1e6 if before_s is not None and served else None
              for r, before_s in zip((server, backend), cpu_before)]
    avg_batch = queue_us = None
    if before is not None:
        activity = triton_metrics.activity(before, triton_metrics.scrape(server.metrics_url))
        formed = next((a for a in activity if a.model == formed_by), None)
        if formed:
            avg_batch, queue_us = formed.avg_batch, formed.queue_us_per_request
    return Round(m.rps, m.p50_ms, m.p99_ms, m.errors, m.generator_cpu, avg_batch, m.first_error, queue_us, *cpu_us)


def _cpu_s(server: servers.Running | None) -> float | None:
    return servers.group_cpu_s(server.group) if server is not None and server.group is not None else None
