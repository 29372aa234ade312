"""Files `make export` writes, as tests that read them require them: missing ones fail the test with the command to
run, never skip it (a skipped test looks like a passing one in a summary)."""

from __future__ import annotations

from pathlib import Path

import pytest


def require(*paths: Path | None) -> None:
    missing = [str(p) for p in paths if p is None or not Path(p).exists()]
    if missing:
        pytest.fail(f"not exported: {', '.join(missing)}; run `make export` (`make test` runs it first)", pytrace=False)
