"""Visible progress for long steps: one line when a step starts, one with its duration when it ends or fails."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Log = Callable[[str], None]


def stdout_log(message: str) -> None:
    print(message, file=sys.stdout, flush=True)


@contextmanager
def step(log: Log, label: str) -> Iterator[None]:
    log(f"  {label} ...")
    start = time.perf_counter()
    try:
        yield
    except BaseException as e:
        log(f"  {label}: failed after {time.perf_counter() - start:.1f} s ({type(e).__name__})")
        raise
    log(f"  {label}: done in {time.perf_counter() - start:.1f} s")
