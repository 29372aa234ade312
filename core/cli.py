"""How every `python -m <step>` program starts and ends.

`parser` names the program as it is typed; `program` wraps its `main(argv) -> int` so that a failure ends the same
way everywhere: a ModelportError prints `<name>: error: <message>` on stderr and exits with its class's code
(core/errors.py), Ctrl-C exits 130, and anything else is a bug in modelport: one line naming it, exit 70, and the
traceback only when MODELPORT_TRACEBACK=1. argparse's own usage errors keep argparse's exit code 2.
"""

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

Main = Callable[[list[str] | None], int]


def parser(name: str, description: str | None = None, **kwargs) -> argparse.ArgumentParser:
    """The program's parser, named as it is typed: `python -m <name>`."""
    return argparse.ArgumentParser(prog=f"python -m {name}", description=description, **kwargs)


def program(name: str, usage_errors: tuple[type[Exception], ...] = ()) -> Callable[[Main], Main]:
    """Decorate a step's main. `usage_errors`: builtin exceptions the step's validation raises for bad input (its
    dataclasses' ValueError), reported as a UserError."""

    def wrap(main: Main) -> Main:
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
