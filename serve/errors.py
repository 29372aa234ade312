"""Failures of the serve step, split by who has to act. Each carries one actionable message and an exit code."""
from __future__ import annotations


class ServeError(Exception):
    """A failure the user can fix; the CLI prints the message alone (no traceback) and exits with `exit_code`."""

    exit_code = 2


class RepositoryError(ServeError):
    """The model repository is missing, empty, or holds a model whose generated files were never exported."""


class PortInUseError(ServeError):
    """A port the server needs is already bound by another process."""


class RuntimeMissingError(ServeError):
    """The Triton binary, its shared libraries, the python backend stub or a recent enough glibc is missing."""


class ServerStartError(ServeError):
    """Triton started but did not become ready (a model failed to load, or the process exited)."""

    exit_code = 1


class NotRunningError(ServeError):
    """`stop` / `status` found no server that `start` started."""

    exit_code = 3
