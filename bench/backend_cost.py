"""The python backend's own cost, per execute and per request, measured on the real stub (issue 9).

For each model and each batch of N one-row requests (N = 1, 8, 32) the model is served from a copy whose dynamic
batcher waits for exactly N (preferred_batch_size [N], a long max_queue_delay), and N keep-alive connections keep one
request each in flight (bench/loadgen.py), so every execution holds N requests. Three measures of the same runs:

- wall: Triton's statistics (/v2/models/<m>/stats, batch_stats of batch size N), compute_input + compute_infer +
  compute_output per execution, minus the model's own work on the same N rows timed here in-process with the same
  settings (ONNX Runtime's session.run for an `onnxruntime`-backend model, the decode/tokenize helper module for a
  python model);
- CPU: the stub process's CPU time per execution minus the CPU time of that own work. Other tenants of a shared
  machine stretch wall times (a preempted stub still counts) far more than CPU times, so this one is the steadier;
- execute loop: every copy is served through a timing wrapper (bench/stub_models/timing.py) that runs the model's own
  model.py unchanged and records, inside the stub, the CPU time of execute() and of the model's own work within it
  (session.run; the decode/tokenize helpers); the difference is our execute loop alone, without the stub around it.

What is left is the backend's cost: the stub's IPC, the pb_utils objects, our execute loop, fitted as
per_execute + N × per_request. `stub_floor` is a python model that answers every request with a ready tensor and
reads nothing: the share of that cost no model code can remove.

One module per job: bench/cost_repository.py builds the served copies, bench/cost_work.py times the own work
in-process, bench/cost_results.py holds the figures and writes the report; the load is bench/loadgen.py's.

    python -m bench --backend-cost           # writes bench/results/backend-cost.md and .json
    python -m bench --backend-cost --quick   # one short round: checks the harness, not speed
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path

import psutil

from bench import servers
from bench.cost_repository import FLOOR, copy_name, kind_of, prepare_repository
from bench.cost_results import BatchCost, BatchRound, CostResults, ModelCost, format_markdown, to_json
from bench.cost_work import time_us, work_function
from core.measure import loadgen, payloads, v2
from core.spec import Spec

BATCHES = (1, 8, 32)


@dataclass(frozen=True)
class CostOptions:
    repository: Path
    work_dir: Path
    rounds: int
    duration_s: float  # per model, batch and round
    models: tuple[str, ...] = ()  # default: measured_models(spec, repository)
    batches: tuple[int, ...] = BATCHES
    formed_batches: dict[str, float] = field(default_factory=dict)  # model -> batch a `make bench` run saw formed


def measured_models(spec: Spec, repository: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(models, notes): every exported onnx-kind model (its fp32 Triton name) and every exported python model whose
    own work can be timed in-process (kind_of), in spec order; the rest are named in the notes."""
    models, notes = [], []
    for model in spec.models:
        if model.kind not in ("onnx", "python"):
            continue
        if not (repository / model.name / "config.pbtxt").is_file():
            notes.append(f"{model.name}: not exported")
            continue
        try:
            kind_of(repository / model.name)
        except ValueError as error:
            notes.append(str(error))
            continue
        models.append(model.name)
    return tuple(models), tuple(notes)


# ---- load, Triton's statistics and the stub's CPU time -------------------------------------------------------------

def batch_stats(http_url: str, model: str) -> dict[int, dict[str, tuple[int, int]]]:
    """{batch size: {compute_input|compute_infer|compute_output: (count, ns)}} from Triton's statistics."""
    with urllib.request.urlopen(f"http://{http_url}/v2/models/{model}/stats", timeout=10) as response:
        stats = json.load(response)["model_stats"][0]
    return {int(b["batch_size"]): {k: (int(b[k].get("count", 0)), int(b[k].get("ns", 0)))
                                   for k in ("compute_input", "compute_infer", "compute_output")}
            for b in stats.get("batch_stats", [])}


def stub_process(repository: Path, model: str) -> psutil.Process:
    """The python backend stub serving `model`: its command line names the model's version directory."""
    marker = f"{repository}/{model}/1/"
    for process in psutil.process_iter(["cmdline"]):
        if any(marker in part for part in process.info["cmdline"] or ()):
            return process
    raise RuntimeError(f"no python backend stub serving {model} from {repository}")


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def http_requests(samples: tuple[payloads.Sample, ...], model: str, host: str) -> tuple[bytes, ...]:
    """Each sample as a complete binary-tensor HTTP request to `model`."""
    built = []
    for sample in samples:
        request = v2.http_request(sample, "binary")
        built.append(loadgen.http_request(host, f"/v2/models/{model}/infer", request.body, request.headers))
    return tuple(built)


def send_batches(http_url: str, requests: tuple[bytes, ...], batch: int, seconds: float) -> None:
    """`batch` connections, one request in flight each, for `seconds`: the copy's batcher waits for all `batch`, so
    every execution holds exactly `batch` requests."""
    host, port = http_url.rsplit(":", 1)
    sent = loadgen.run_here(loadgen.HttpTarget(host, int(port), requests), loadgen.LoadSpec(batch, seconds, 0.0))
    if sent.errors:
        raise RuntimeError(f"request failed: {sent.first_error}")


def in_stub_totals(model_dir: Path) -> dict[str, int]:
    """The timing wrapper's running totals (written at most every 0.2 s, so a snapshot is a little behind)."""
    try:
        return json.loads((model_dir / "1" / "timing-totals.json").read_text())
    except (OSError, ValueError):  # not written yet
        return {"executions": 0, "execute_cpu_ns": 0, "work_cpu_ns": 0}


def measure_round(http_url: str, stub: psutil.Process, model_dir: Path, batch: int, requests: tuple[bytes, ...],
                  work, seconds: float) -> BatchRound:
    name = model_dir.name
    before, cpu_before, inside_before = batch_stats(http_url, name).get(batch), cpu_seconds(stub), \
        in_stub_totals(model_dir)
    send_batches(http_url, requests, batch, seconds)
    time.sleep(0.25)  # let the wrapper write its totals for this round
    after, cpu_after, inside = batch_stats(http_url, name)[batch], cpu_seconds(stub), in_stub_totals(model_dir)
    inside = {k: inside[k] - inside_before[k] for k in inside}
    inside_executions = max(inside["executions"], 1)
    delta = {k: (after[k][0] - (before[k][0] if before else 0), after[k][1] - (before[k][1] if before else 0))
             for k in after}
    executions = delta["compute_infer"][0]
    per_execution = {k: ns / 1000 / count if count else 0.0 for k, (count, ns) in delta.items()}
    # the in-process side runs now, while the server is idle, so the two never share the cores
    work_us, work_cpu_us = time_us(work, min(seconds, 0.5))
    return BatchRound(executions, per_execution["compute_input"], per_execution["compute_infer"],
                      per_execution["compute_output"], (cpu_after - cpu_before) * 1e6 / max(executions, 1),
                      work_us, work_cpu_us, inside["execute_cpu_ns"] / 1000 / inside_executions,
                      inside["work_cpu_ns"] / 1000 / inside_executions)


def run(spec: Spec, options: CostOptions) -> CostResults:
    targets = {t.name: t for t in payloads.targets(spec)}
    skipped: tuple[str, ...] = ()
    if not options.models:
        chosen, skipped = measured_models(spec, options.repository)
        options = replace(options, models=chosen)
    if not options.models:
        raise SystemExit(f"backend cost: no exported onnx or python model in {spec.path}: run `make export`")
    missing = [m for m in options.models if m not in targets or not (options.repository / m).is_dir()]
    if missing:
        raise SystemExit(f"backend cost: {', '.join(missing)} not in {spec.path} or not exported: run `make export`")
    print(f"[backend cost] measuring {', '.join(options.models)}" + (f" (skipped: {'; '.join(skipped)})"
                                                                     if skipped else ""), flush=True)
    repository = prepare_repository(options.repository, options.work_dir / "repository-backend-cost",
                                    options.models, options.batches)
    load_before = os.getloadavg()
    samples = {m: payloads.samples(targets[m]) for m in options.models}
    samples[FLOOR] = samples[options.models[0]]
    works = {}
    for model in (*options.models, FLOOR):
        for batch in options.batches:
            rows = [{t.name: t.array for t in s.inputs} for s in samples[model][:batch]]
            exported = repository / copy_name(model, batch) if model == FLOOR else options.repository / model
            works[model, batch] = work_function(exported, (rows * batch)[:batch])
    rounds: dict[tuple[str, int], list[BatchRound]] = {key: [] for key in works}
    with servers.triton("triton-backend-cost", repository, options.work_dir) as server:
        http_url = f"{server.host}:{server.port}"
        stubs = {key: stub_process(repository, copy_name(*key)) for key in works}
        requests = {key: http_requests(samples[key[0]], copy_name(*key), http_url) for key in works}
        keys = list(works)
        for index in range(options.rounds):
            shift = index * len(keys) // options.rounds  # rotate the order so drift spreads over every cell
            for key in keys[shift:] + keys[:shift]:
                rounds[key].append(measure_round(http_url, stubs[key], repository / copy_name(*key), key[1],
                                                 requests[key], works[key][1], options.duration_s))
            print(f"[backend cost] round {index + 1}/{options.rounds} done, load average {os.getloadavg()[0]:.2f}",
                  flush=True)
    models = tuple(
        ModelCost(model, works[model, options.batches[0]][0],
                  tuple(BatchCost(model, b, tuple(rounds[model, b])) for b in options.batches))
        for model in (*options.models, FLOOR))
    conditions = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "rounds": options.rounds,
        "duration_s": options.duration_s,
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "skipped": list(skipped),
    }
    formed = {m: b for m, b in options.formed_batches.items() if m in options.models}
    return CostResults(conditions, models, formed)


def main(spec: Spec, options: CostOptions, stem: Path) -> int:
    results = run(spec, options)
    markdown = format_markdown(results)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".md").write_text(markdown, encoding="utf-8")
    stem.with_suffix(".json").write_text(to_json(results), encoding="utf-8")
    print("\n" + markdown)
    print(f"backend cost results: {stem.with_suffix('.md')} (data: {stem.with_suffix('.json')})")
    return 0
