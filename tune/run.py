"""One `make tune` run: for each model, serve it alone, climb from the untuned config within its share of the
budget, choose; then write the winners into models.toml and the report.

Models run in spec order, onnx entries before ensembles, and each winner is applied to the in-memory spec before the
next model is measured: an ensemble's python steps are tuned with its ONNX step already tuned. The budget is shared
out as the run goes: each model gets the time left in proportion to how many candidates its first step measures, so
time one model does not use passes to the next.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.spec import Spec, load_spec
from tune import measure, models_toml, report, search, serving
from tune.choose import Criteria
from tune.measure import Sweep
from tune.search import Tuning
from tune.space import Space, apply, space_for, tunable


@dataclass(frozen=True)
class TuneOptions:
    spec_path: Path
    repository: Path
    models: tuple[str, ...]  # empty: every tunable model of the spec
    budget_s: float
    criteria: Criteria
    sweep: Sweep
    generator: str
    reports_dir: Path  # the run's report goes into reports_dir/tune-<UTC time>/
    work_dir: Path  # scratch repositories and Triton logs
    write: bool
    command: str = "python -m tune"

    def __post_init__(self) -> None:
        if self.budget_s <= 0:
            raise ValueError(f"budget must be > 0 s, got {self.budget_s} (--budget)")
        if self.generator not in measure.GENERATORS:
            raise ValueError(f"generator must be one of {measure.GENERATORS}, got {self.generator!r} (--generator)")


@dataclass(frozen=True)
class Outcome:
    report_dir: Path
    tunings: tuple[Tuning, ...]
    written: dict[str, dict[str, dict]]  # target -> entry -> {field: value} that changed in models.toml
    spec_written: bool


def weight(spec: Spec, space: Space) -> int:
    """The trials a model's first climbing step costs: the untuned config, its neighbours, the confirmation."""
    return 1 + len(space.neighbours(space.untuned(spec))) + search.CONFIRM_TRIALS


def unexported(spec: Spec, space: Space, repository: Path) -> list[str]:
    """The models a space needs that the repository lacks."""
    return [name for name in serving.served_models(spec, space) if not (repository / name / "config.pbtxt").is_file()]


def select(spec: Spec, models: tuple[str, ...], repository: Path) -> tuple[list[str], list[str]]:
    """(names to tune, notes on what was skipped). A named model must be exported; a run over every tunable model
    skips the ones the export left out (a model whose optional extra is not installed, say), saying so."""
    names = list(models) or tunable(spec)
    spaces = [space_for(spec, name) for name in names]  # every --model checked before any work
    chosen, notes = [], []
    for name, space in zip(names, spaces):
        missing = unexported(spec, space, repository)
        if missing and models:
            raise FileNotFoundError(f"{repository} lacks {', '.join(missing)}: run `make export` first "
                                    f"(or pass --repository DIR)")
        if missing:
            notes.append(f"{name} skipped: {', '.join(missing)} not in {repository} (run `make export`)")
        else:
            chosen.append(name)
    if not chosen:
        raise FileNotFoundError(f"nothing to tune: {'; '.join(notes) or 'the spec has no tunable model'}")
    return chosen, notes


def changed_values(tuning: Tuning) -> dict[str, dict]:
    """entry -> {field: value} where the winner differs from the untuned config."""
    changed: dict[str, dict] = {}
    for (model, field, value), (_, _, before) in zip(tuning.choice.winner.candidate.settings,
                                                     tuning.untuned.settings):
        if value != before:
            changed.setdefault(model, {})[field] = value
    return changed


def pointer(tuning: Tuning, conditions: dict, report_path: str) -> str:
    """The one line above the tuned fields in models.toml: when, what became of the values, where the evidence is."""
    what = "values changed" if tuning.choice.changed else "kept the values"
    return f"{conditions['date']}, `{tuning.space.target}`: {what}; figures and rule in {report_path}"


def run(options: TuneOptions, log: Callable[[str], None] = print) -> Outcome:
    began = time.monotonic()
    deadline = began + options.budget_s
    load_start = round(os.getloadavg()[0], 2)
    spec = load_spec(options.spec_path)
    names, notes = select(spec, options.models, options.repository)
    for note in notes:
        log(note)
    spaces = [space_for(spec, name) for name in names]
    stamp = time.gmtime()
    report_dir = options.reports_dir / time.strftime("tune-%Y%m%dT%H%M%SZ", stamp)
    weights = [weight(spec, s) for s in spaces]

    tunings: list[Tuning] = []
    for index, name in enumerate(names):
        space = space_for(spec, name)  # again: an earlier winner may have changed the untuned values
        untuned = space.untuned(spec)
        share = (deadline - time.monotonic()) * weights[index] / sum(weights[index:])
        model_deadline = time.monotonic() + max(0.0, share)
        log(f"{space.target}: {len(space.dimensions)} dimensions, {share:.0f} s of the budget; "
            f"untuned {untuned.label(space.entry)}")
        work_dir = options.work_dir / space.target
        server = serving.start(spec, space, options.repository, work_dir, untuned)
        try:
            load = measure.generator(options.generator, spec, space.target, server, options.sweep, work_dir)
            tuning = search.climb(
                space, untuned,
                lambda c: measure.measure(server, c, load, options.sweep, options.criteria.latency_budget_ms),
                options.criteria, model_deadline, log=lambda line: log(f"  {line}"))
        finally:
            server.stop()
        log(f"{space.target}: {report.summary_line(tuning)}")
        tunings.append(tuning)
        spec = apply(spec, tuning.choice.winner.candidate)

    conditions = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", stamp), "cpus": os.cpu_count(),
        "load_average_start": load_start, "load_average_end": round(os.getloadavg()[0], 2),
        "budget_s": options.budget_s, "seconds": round(time.monotonic() - began, 1), "generator": options.generator,
        "connections": ", ".join(map(str, options.sweep.connections)), "duration_s": options.sweep.duration_s,
        "warmup_s": options.sweep.warmup_s, "command": options.command, "spec": str(options.spec_path),
        "written": options.write, "note": "; ".join(notes),
    }
    written = {t.space.target: changed_values(t) for t in tunings}
    try:
        report_ref = str((report_dir / "report.md").relative_to(options.spec_path.parent))
    except ValueError:
        report_ref = str(report_dir / "report.md")
    # the report first: measurements that took minutes survive a models.toml that cannot be written
    report_dir.mkdir(parents=True, exist_ok=True)
    pngs = {t.space.target: report.plot(t, report_dir / f"{t.space.target}.png").name for t in tunings}
    report.write_measurements(report_dir / "measurements.json", conditions, options.criteria, tunings)
    (report_dir / "report.md").write_text(report.markdown(conditions, options.criteria, tunings, pngs, written),
                                          encoding="utf-8")
    if options.write:
        updates = {}
        for tuning in tunings:
            changed = changed_values(tuning)
            for entry in tuning.space.models:
                fields = tuple(d.field for d in tuning.space.dimensions if d.model == entry)
                updates[entry] = models_toml.EntryUpdate(changed.get(entry, {}),
                                                         pointer(tuning, conditions, report_ref), fields)
        models_toml.write(options.spec_path, updates)
    return Outcome(report_dir, tuple(tunings), written, options.write)
