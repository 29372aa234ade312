"""How every `python -m <step>` program starts and ends (docs/core.md): a ModelportError prints one line,
`<name>: error: <message>`, and exits with its class's code; Ctrl-C exits 130; anything else is a bug: one line,
exit 70, and the traceback only with MODELPORT_TRACEBACK=1."""

from __future__ import annotations

import argparse
import functools
import os
import sys
import traceback
from collections.abc import Callable

from core.errors import BugError, ModelportError, UserError

TRACEBACK_ENV = "MODELPORT_TRACEBACK"
INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a program Ctrl-C stopped


def parser(name: str, description: str | None = None, **kwargs) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=f"python -m {name}", description=description, **kwargs)


def program(name: str, usage_errors: tuple[type[Exception], ...] = ()) -> Callable:
    """Decorate a step's `main(argv) -> int`. `usage_errors`: builtin exceptions its options' validation raises for
    bad input (a dataclass's ValueError), reported as a UserError."""
    def wrap(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
        @functools.wraps(main)
        def run(argv: list[str] | None = None) -> int:
            try:
                return main(argv)
            except ModelportError as error:
                return fail(name, str(error), error.exit_code)
            except usage_errors as error:
                return fail(name, str(error), UserError.exit_code)
            except KeyboardInterrupt:
                return INTERRUPTED
            except Exception as error:  # noqa: BLE001 (the last line of defence: a bug, said in one line)
                if os.environ.get(TRACEBACK_ENV):
                    traceback.print_exc()
                return fail(name, f"{type(error).__name__}: {error} (a bug in modelport; {TRACEBACK_ENV}=1 shows "
                                  "the traceback)", BugError.exit_code)
        return run
    return wrap


def fail(name: str, message: str, code: int) -> int:
    print(f"{name}: error: {message}", file=sys.stderr)
    return code
