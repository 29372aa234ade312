"""The backend-cost benchmark's figures and their report: rounds per (model, batch), the per_execute + N × per_request
fits, issue 9's target at the batch a `make bench` run formed, as markdown and JSON."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field

import numpy as np

TARGET_US = 50.0  # issue 9: the backend's own overhead per request at the batch formed under load


@dataclass(frozen=True)
class BatchRound:
    """One round of one (model, batch): means per execution of exactly `batch` one-row requests."""

    executions: int
    compute_input_us: float  # Triton's statistics
    compute_infer_us: float
    compute_output_us: float
    stub_cpu_us: float  # the stub process's CPU time
    work_us: float  # the model's own work on the same rows, in-process: wall
    work_cpu_us: float  # and CPU
    execute_cpu_us: float  # inside the stub: execute() ...
    execute_work_cpu_us: float  # ... and the model's own work within it

    @property
    def served_us(self) -> float:
        return self.compute_input_us + self.compute_infer_us + self.compute_output_us

    @property
    def overhead_us(self) -> float:
        return self.served_us - self.work_us

    @property
    def overhead_cpu_us(self) -> float:
        return self.stub_cpu_us - self.work_cpu_us

    @property
    def execute_loop_cpu_us(self) -> float:
        return self.execute_cpu_us - self.execute_work_cpu_us

    @property
    def infer_overhead_us(self) -> float:
        """compute_infer minus the own work: the backend's execute() beyond the model, as issue 9 measured it."""
        return self.compute_infer_us - self.work_us


@dataclass(frozen=True)
class BatchCost:
    model: str
    batch: int
    rounds: tuple[BatchRound, ...]

    def median(self, name: str) -> float:
        return statistics.median(getattr(r, name) for r in self.rounds)

    def spread(self, name: str) -> tuple[float, float]:
        values = [getattr(r, name) for r in self.rounds]
        return min(values), max(values)


@dataclass(frozen=True)
class ModelCost:
    model: str
    work: str  # what the in-process side runs
    batches: tuple[BatchCost, ...]

    def fit(self, name: str = "overhead_us") -> tuple[float, float]:
        """(per execute, per request) µs: least squares of the median `name` = a + b × N over the batches."""
        sizes = np.array([b.batch for b in self.batches], dtype=float)
        values = np.array([b.median(name) for b in self.batches])
        if len(sizes) < 2:
            return float(values[0]), 0.0
        per_request, per_execute = np.polyfit(sizes, values, 1)
        return float(per_execute), float(per_request)

    def per_request_at(self, batch: float, name: str) -> float:
        """µs per request of `name` in an execution of `batch` requests, from the fit."""
        per_execute, per_request = self.fit(name)
        return per_execute / batch + per_request


@dataclass(frozen=True)
class CostResults:
    conditions: dict
    models: tuple[ModelCost, ...]
    formed_batches: dict[str, float] = field(default_factory=dict)


def _cell(batch: BatchCost, name: str) -> str:
    low, high = batch.spread(name)
    return f"{batch.median(name):.0f} ({low:.0f}–{high:.0f})"


FITTED = (("overhead_us", "wall"), ("infer_overhead_us", "compute_infer"), ("overhead_cpu_us", "CPU"),
          ("execute_loop_cpu_us", "execute loop CPU"))


def format_target(results: CostResults) -> list[str]:
    """Issue 9's target at the batch each model formed in the `make bench` run that came before this one."""
    if not results.formed_batches:
        return ["No target check: the batch formed under load comes from a full `make bench` run, which runs this "
                "measurement after its own.", ""]
    lines = ["## Target (issue 9): overhead per request at the batch formed under load", "",
             f"Batch formed: Triton's average in the same `make bench` run, 64 connections. Overhead: compute_infer "
             f"minus the own work (the measure the issue used), and with compute_input and compute_output too; each "
             f"per request at that batch from the fits above. Target: the first at most {TARGET_US:g} µs.", "",
             "| model | batch formed | overhead per request µs (compute_infer) | with input and output µs "
             "| stub CPU per request µs | met |", "|---|---:|---:|---:|---:|---|"]
    for model in results.models:
        batch = results.formed_batches.get(model.model)
        if batch is None:
            continue
        infer = model.per_request_at(batch, "infer_overhead_us")
        met = infer <= TARGET_US
        verdict = "yes" if met else f"**no** ({infer - TARGET_US:.1f} µs over)"
        lines.append(f"| {model.model} | {batch:.2f} | {infer:.1f} | {model.per_request_at(batch, 'overhead_us'):.1f} "
                     f"| {model.per_request_at(batch, 'overhead_cpu_us'):.1f} | {verdict} |")
    return lines + [""]


def format_markdown(results: CostResults) -> str:
    c = results.conditions
    lines = [
        "# The python backend's own cost per execute and per request",
        "",
        f"{c['date']} · {c['cpus']} CPUs · {c['rounds']} interleaved rounds of {c['duration_s']} s per cell · "
        f"load average (1, 5, 15 min) before {c['load_average_before']}, after {c['load_average_after']}",
        "",
        "Per execution of N one-row requests, medians over rounds (min–max across rounds). Overhead (wall): Triton's "
        "compute_input + compute_infer + compute_output minus the model's own work timed in-process. Overhead (CPU): "
        "the stub's CPU time minus the own work's CPU time. Execute loop: inside the stub, execute()'s CPU time minus "
        "the own work's within it. `stub_floor` answers with a ready tensor and reads nothing.",
        "",
        "| model | N | executions | Triton input / infer / output µs | own work µs | overhead µs (wall) "
        "| stub CPU µs | own work CPU µs | overhead µs (CPU) | execute loop CPU µs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model in results.models:
        for b in model.batches:
            lines.append(
                f"| {model.model} | {b.batch} | {sum(r.executions for r in b.rounds)} "
                f"| {b.median('compute_input_us'):.0f} / {b.median('compute_infer_us'):.0f} / "
                f"{b.median('compute_output_us'):.0f} | {b.median('work_us'):.0f} | {_cell(b, 'overhead_us')} "
                f"| {b.median('stub_cpu_us'):.0f} | {b.median('work_cpu_us'):.0f} | {_cell(b, 'overhead_cpu_us')} "
                f"| {_cell(b, 'execute_loop_cpu_us')} |")
    lines += ["", "| model | own work measured as | " + " | ".join(
        f"per execute µs ({label}) | per request µs ({label})" for _, label in FITTED) + " |",
        "|---|---|" + "---:|" * (2 * len(FITTED))]
    for model in results.models:
        fits = " | ".join(f"{a:.0f} | {b:.1f}" for a, b in (model.fit(name) for name, _ in FITTED))
        lines.append(f"| {model.model} | {model.work} | {fits} |")
    lines += ["", "Per execute and per request: least-squares fit of the medians = per_execute + N × per_request. The "
                  "timing wrapper's clock reads (about 1 µs per timed call) are in every figure but the in-process "
                  "own work.", ""]
    if c.get("skipped"):
        lines += ["Not measured: " + "; ".join(c["skipped"]) + ".", ""]
    return "\n".join(lines + format_target(results))


def to_json(results: CostResults) -> str:
    payload = asdict(results)
    payload["fit"] = {m.model: {label: dict(zip(("per_execute_us", "per_request_us"), m.fit(name)))
                                for name, label in FITTED} for m in results.models}
    return json.dumps(payload, indent=2)
