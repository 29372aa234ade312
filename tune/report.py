"""What a tune run leaves in reports/tune-<UTC time>/: report.md, one PNG per tuned model (throughput against p99
for every candidate, the winner marked) and measurements.json, every trial as measured, which `load_measurements`
reads back so the choice can be re-made (and tested) on recorded data.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict
from pathlib import Path

from tune.choose import Choice, Criteria, Point, Summary, Trial, choose
from tune.search import Tuning
from tune.space import Candidate, Dimension, Space


# ---- measurements.json -----------------------------------------------------------------------------------------


def trial_to_json(trial: Trial) -> dict:
    return {**asdict(trial), "candidate": trial.candidate.to_json(), "points": [asdict(p) for p in trial.points]}


def trial_from_json(data: dict) -> Trial:
    return Trial(**{**data, "candidate": Candidate.from_json(data["candidate"]),
                    "points": tuple(Point(**p) for p in data["points"])})


def tuning_to_json(tuning: Tuning) -> dict:
    return {
        "target": tuning.space.target, "entry": tuning.space.entry,
        "dimensions": [{"model": d.model, "field": d.field, "values": [list(v) if isinstance(v, tuple) else v
                                                                       for v in d.values], "ordered": d.ordered}
                       for d in tuning.space.dimensions],
        "untuned": tuning.untuned.to_json(), "winner": tuning.choice.winner.candidate.to_json(),
        "note": tuning.choice.note, "stopped": tuning.stopped,
        "confirmed": [c.to_json() for c in tuning.confirmed],
        "seconds": round(tuning.seconds, 1), "trials": [trial_to_json(t) for t in tuning.trials],
    }


def load_measurements(path: Path) -> tuple[dict, Criteria, list[Tuning]]:
    """(conditions, criteria, tunings) from a measurements.json; each choice re-made from the recorded trials."""
    data = json.loads(path.read_text(encoding="utf-8"))
    criteria = Criteria(**data["criteria"])
    tunings = []
    for m in data["models"]:
        space = Space(m["target"], m["entry"], tuple(
            Dimension(d["model"], d["field"], tuple(tuple(v) if isinstance(v, list) else v for v in d["values"]),
                      d["ordered"]) for d in m["dimensions"]))
        trials = tuple(trial_from_json(t) for t in m["trials"])
        untuned = Candidate.from_json(m["untuned"])
        confirmed = tuple(Candidate.from_json(c) for c in m["confirmed"])
        tunings.append(Tuning(space, untuned, trials, choose(list(trials), untuned, criteria), m["stopped"],
                              confirmed, m["seconds"]))
    return data["conditions"], criteria, tunings


def write_measurements(path: Path, conditions: dict, criteria: Criteria, tunings: list[Tuning]) -> None:
    payload = {"conditions": conditions, "criteria": asdict(criteria), "models": [tuning_to_json(t) for t in tunings]}
    path.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


# ---- plot ------------------------------------------------------------------------------------------------------


def plot(tuning: Tuning, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on a server
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    choice = tuning.choice
    budget = choice.criteria.latency_budget_ms
    fig, ax = plt.subplots(figsize=(11, 5.5))
    palette = itertools.cycle(["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink",
                               "tab:olive", "tab:cyan"])  # red is the winner's
    for verdict in choice.verdicts:
        s = verdict.summary
        if not s.points:
            continue
        winner, untuned = s is choice.winner, s is choice.untuned
        xs, ys = [p.p99_ms for p in s.points], [p.rps for p in s.points]
        style = dict(linewidth=3.0, color="tab:red", zorder=3) if winner else \
            dict(linewidth=1.6, color="black", linestyle="--", zorder=2) if untuned else \
            dict(linewidth=0.9, alpha=0.75, zorder=1, color=next(palette))
        tag = " (untuned, chosen)" if winner and untuned else " (chosen)" if winner else " (untuned)" if untuned \
            else "" if verdict.eligible else " (not eligible)"
        ax.plot(xs, ys, marker="o", markersize=4, label=s.candidate.label(tuning.space.entry) + tag, **style)
        for p in s.points:
            if winner or untuned:
                ax.annotate(str(p.connections), (p.p99_ms, p.rps), textcoords="offset points", xytext=(4, 4),
                            fontsize=7)
        if winner and verdict.best is not None:
            ax.plot([verdict.best.p99_ms], [verdict.best.rps], marker="*", markersize=18, color="tab:red", zorder=4)
    ax.axvline(budget, color="grey", linestyle=":", label=f"p99 budget {budget:g} ms")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1, 2, 5)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("p99 latency, ms (log scale; points labelled with their connection count)")
    ax.set_ylabel("throughput, req/s")
    ax.set_title(f"{tuning.space.target}: throughput vs p99 per candidate (★ chosen operating point)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.savefig(path, dpi=110, bbox_inches="tight")  # the legend sits outside the axes
    plt.close(fig)
    return path


# ---- markdown --------------------------------------------------------------------------------------------------


def _points(s: Summary) -> str:
    return " · ".join(f"{p.connections}: {p.rps:.0f}/{p.p99_ms:.1f}" for p in s.points) or "—"


def figures(choice: Choice, summary: Summary) -> str:
    best = choice.verdict(summary.candidate).best
    idle = summary.idle_p50_ms
    at = f"{best.rps:.0f} req/s at {best.connections} connections, p99 {best.p99_ms:.1f} ms" if best else \
        "no load within the p99 budget"
    return at + (f", 1-connection p50 {idle:.3f} ms" if idle is not None else "")


def summary_line(tuning: Tuning) -> str:
    choice = tuning.choice
    untuned = figures(choice, choice.untuned)
    if not choice.changed:
        return f"kept {choice.untuned.candidate.label(tuning.space.entry)}: {untuned}. {choice.note}."
    return (f"chose {choice.winner.candidate.label(tuning.space.entry)}: {figures(choice, choice.winner)}; untuned "
            f"{choice.untuned.candidate.label(tuning.space.entry)}: {untuned}. {choice.note}.")


def model_section(tuning: Tuning, png: str, written: dict[str, dict]) -> list[str]:
    choice = tuning.choice
    again = "; ".join(c.label(tuning.space.entry) for c in tuning.confirmed)
    lines = [f"## {tuning.space.target}", "", summary_line(tuning), "",
             f"Search: {len(tuning.trials)} trials of {len({t.candidate for t in tuning.trials})} candidates in "
             f"{tuning.seconds:.0f} s; {tuning.stopped}; "
             + (f"measured again, each followed by the untuned config: {again}." if again
                else "no contender measured again."), ""]
    changes = [f"`{entry}.{k} = {json.dumps(list(v) if isinstance(v, tuple) else v)}`"
               for entry, values in written.items() for k, v in values.items()]
    what = ", ".join(changes) if changes else "no value changed (figures comment only)"
    lines += [f"Written to models.toml: {what}.",
              "", f"![throughput vs p99]({png})", "",
              "| candidate | trials | load average | 1-conn p50 ms | best req/s in budget | at conns | p99 ms | "
              "batch formed | verdict | points (connections: req/s / p99 ms) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for v in choice.verdicts:
        s, b = v.summary, v.best
        loads = ", ".join(f"{t.load_average:g}" for t in tuning.trials
                          if t.candidate == s.candidate and t.load_average is not None) or "—"
        idle = f"{s.idle_p50_ms:.3f}" if s.idle_p50_ms is not None else "—"
        batch = f"{b.avg_batch:.2f}" if b and b.avg_batch else "—"
        cells = [s.candidate.label(tuning.space.entry), str(s.trials), loads, idle, f"{b.rps:.0f}" if b else "—",
                 str(b.connections) if b else "—", f"{b.p99_ms:.1f}" if b else "—", batch,
                 f"**{v.reason}**" if s is choice.winner else v.reason, _points(s)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def markdown(conditions: dict, criteria: Criteria, tunings: list[Tuning], pngs: dict[str, str],
             written: dict[str, dict[str, dict]]) -> str:
    c = conditions
    parts = [
        f"# make tune — {c['date']}", "",
        f"{c['cpus']} CPUs · load average {c['load_average_start']} at start, {c['load_average_end']} at end "
        f"(other work on the machine shows here: figures are noisy when it is high) · budget {c['budget_s']:g} s, "
        f"took {c['seconds']:.0f} s · generator `{c['generator']}` · sweep {c['connections']} connections × "
        f"{c['duration_s']:g} s (+{c['warmup_s']:g} s warm-up) · p99 budget {criteria.latency_budget_ms:g} ms · "
        f"idle slack {criteria.idle_slack:.0%} · min gain {criteria.min_gain:.0%}", "",
        f"Command: `{c['command']}` · spec `{c['spec']}`" + (" (written)" if c.get("written") else " (not written)"),
        "",
        "Choice rule: the highest throughput at any connection count whose p99 is within the budget, among "
        "candidates without errors whose one-connection p50 is at most the idle slack above the untuned config's; "
        "it replaces the untuned config only when at least the min gain better. A candidate measured more than once "
        "counts with its best run per connection count and its lowest one-connection p50 (other work on the "
        "machine only takes throughput away and adds latency).", "",
    ]
    if c.get("note"):
        parts += [c["note"], ""]
    for tuning in tunings:
        parts += model_section(tuning, pngs[tuning.space.target], written.get(tuning.space.target, {}))
    return "\n".join(parts)
