"""Building recorded-looking trials by hand, and the recorded runs under data/."""

from __future__ import annotations

from pathlib import Path

from tune.choose import Point, Trial
from tune.space import Candidate

DATA = Path(__file__).parent / "data"
RECORDED_DIGITS = DATA / "digits-2026-12-02.json"  # `--model digits --budget 90`, load average 1.9-4.8
RECORDED_DEFAULT = DATA / "default-run-2026-12-02.json"  # a default run (4 models, 300 s) at load average 5-10
RECORDED_CHANGE = DATA / "default-run-changed-2026-12-02.json"  # another, at 5-7: digits got preferred [32]


def candidate(instances: int = 1, threads: int = 1, delay: int = 0, preferred: tuple = (8, 32)) -> Candidate:
    return Candidate((("digits", "instance_count", instances), ("digits", "intra_op_thread_count", threads),
                      ("digits", "max_queue_delay_microseconds", delay), ("digits", "preferred_batch_size", preferred)))


def trial(c: Candidate, *points: tuple, error: str = "", seconds: float = 10.0) -> Trial:
    """points: (connections, req/s, p50 ms, p99 ms[, errors])."""
    return Trial(c, tuple(Point(p[0], p[1], p[2], p[3], p[4] if len(p) > 4 else 0) for p in points), seconds,
                 error=error)


def entry_figures(spec_text: str, name: str) -> list[str]:
    """The `# make tune:` lines of the [[model]] named `name` (a run replaces these, and only these, comments)."""
    from tune.models_toml import MARK

    for block in spec_text.split("\n[[model]]\n")[1:]:
        if block.startswith(f'name = "{name}"'):
            return [line for line in block.splitlines() if line.startswith(f"# {MARK}")]
    raise KeyError(name)
