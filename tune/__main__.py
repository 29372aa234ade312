"""`make tune` (python -m tune): measure candidate serving configs on this machine and write the best into models.toml.

    python -m tune                          # every onnx model and every ensemble with python steps, 5 minutes
    python -m tune --model digits --budget 2m
    python -m tune --no-write               # report only; models.toml untouched

For each model: a real Triton on free loopback ports serves a scratch copy of the exported repository, and each
candidate (instance_count, max_queue_delay_microseconds, preferred_batch_size, ORT intra_op_thread_count; for an
ensemble its python steps' instance_count) is loaded in turn and measured at one connection and across a sweep of
connections. The winner goes into models.toml with a comment of its figures, so the next `make export` writes it
into config.pbtxt; the report goes to reports/tune-<UTC time>/. Needs `make export` first.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import signal
import sys
from pathlib import Path

from core import cli
from tune.choose import Criteria
from tune.measure import GENERATORS, Sweep
from tune.run import TuneOptions, run

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUDGET_S = 300.0


def duration(text: str) -> float:
    """Seconds from `300`, `300s`, `5m` or `1.5m`."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|min)?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected seconds or minutes such as 300, 300s or 5m, got {text!r}")
    return float(match[1]) * (60 if match[2] in ("m", "min") else 1)


def connection_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated connection counts such as 1,8,32,64, "
                                         f"got {text!r}") from None


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = cli.parser("tune", __doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", action="append", default=[],
                        help="a model to tune (repeatable): an onnx model or variant, or an ensemble with python "
                             "steps; default: all of them")
    parser.add_argument("--budget", type=duration, default=DEFAULT_BUDGET_S,
                        help="time for the measurements of all models together: seconds, or minutes as 5m")
    parser.add_argument("--latency-budget-ms", type=float, default=25.0,
                        help="a load counts only where its p99 is at most this")
    parser.add_argument("--idle-slack", type=float, default=0.10,
                        help="how much slower than the untuned config one connection may get (0.10 = 10 %%)")
    parser.add_argument("--min-gain", type=float, default=0.05,
                        help="how much more throughput than the untuned config a winner needs (0.05 = 5 %%)")
    parser.add_argument("--connections", type=connection_list, default=(1, 8, 32, 64),
                        help="the sweep, starting at 1")
    parser.add_argument("--duration", type=float, default=1.5, help="measured seconds per connection count")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds of load before each measurement")
    parser.add_argument("--generator", choices=GENERATORS, default="loadgen",
                        help="core/measure/loadgen.py, or NVIDIA's perf_analyzer (downloaded once into build/)")
    parser.add_argument("--spec", type=Path, default=REPO_ROOT / "models.toml",
                        help="the models.toml to read and write")
    parser.add_argument("--repository", type=Path, default=REPO_ROOT / "model_repository",
                        help="the exported repository the candidates are copied from")
    parser.add_argument("--reports-dir", type=Path, default=REPO_ROOT / "reports",
                        help="where the run's tune-<UTC time>/ report folder goes")
    parser.add_argument("--write", action=argparse.BooleanOptionalAction, default=True,
                        help="write the winners into --spec")
    return parser.parse_args(argv)


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # a SIGTERM (a stopped `make`) stops the Triton we started, as Ctrl-C does


# The options' dataclasses refuse bad values with ValueError; a repository that lacks the exported models is
# FileNotFoundError (run `make export`).
@cli.program("tune", usage_errors=(ValueError, FileNotFoundError))
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    options = TuneOptions(
        spec_path=args.spec.resolve(), repository=args.repository.resolve(), models=tuple(args.model),
        budget_s=args.budget,
        criteria=Criteria(args.latency_budget_ms, args.idle_slack, args.min_gain),
        sweep=Sweep(args.connections, args.duration, args.warmup), generator=args.generator,
        reports_dir=args.reports_dir.resolve(), work_dir=REPO_ROOT / "build" / "tune", write=args.write,
        command=shlex.join(["python", "-m", "tune", *argv]),
    )
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        outcome = run(options, log=lambda line: print(f"[tune] {line}", flush=True))
    except KeyboardInterrupt:
        print("tune: interrupted; models.toml was not changed", file=sys.stderr)
        return cli.INTERRUPTED
    print(f"\nreport: {outcome.report_dir / 'report.md'}")
    for tuning in outcome.tunings:
        changed = outcome.written.get(tuning.space.target, {})
        what = "; ".join(f"{entry}: " + ", ".join(f"{k} = {json.dumps(list(v) if isinstance(v, tuple) else v)}"
                                                  for k, v in values.items())
                         for entry, values in changed.items()) or "no change"
        print(f"  {tuning.space.target}: {what}")
    state = "updated: run `make export` to write the configs" if outcome.spec_written else "not written (--no-write)"
    print(f"models.toml {state} ({options.spec_path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
