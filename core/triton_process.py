"""One tritonserver process: start it in its own process group, wait until every model is ready, stop it fast."""
from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Callable

from core import process
from core.errors import PortInUseError, RuntimeMissingError, ServerStartError
from core.triton import ServeOptions, shm_prefix, tritonserver_argv
from core import triton_http, triton_install

# Under heavy load Triton can abort at start with this boost error; a second try succeeds.
LOCK_EXCEPTION = "boost::interprocess::lock_exception"
START_ATTEMPTS = 3


def check_ports_free(options: ServeOptions) -> None:
    for flag, port in (("--http-port", options.http_port), ("--grpc-port", options.grpc_port), ("--metrics-port", options.metrics_port)):
        error = process.bind_error(port, options.address)
        if error is not None:
            raise PortInUseError(
                f"port {port} on {options.address} is already in use ({error.strerror}): "
                f"stop whatever listens there (`make stop` if it is ours, `ss -ltnp 'sport = :{port}'` to see who) "
                f"or choose another port with {flag} N"
            )


@dataclasses.dataclass
class TritonProcess:
    argv: list[str]
    env: dict[str, str]
    options: ServeOptions
    shm_prefix: str
    # Set: every start takes free loopback ports and builds argv for them with this (a Triton nobody else calls).
    argv_for: Callable[[ServeOptions], list[str]] | None = None
    child: process.Child | None = None
    # Whether this run's server endpoint answered ready: a crash after that came from something it was sent (a
    # request), not from anything it was started with.
    came_up: bool = False
    not_ready: list[str] = dataclasses.field(default_factory=list)  # the models not ready yet in this start

    @classmethod
    def on_free_ports(cls, options: ServeOptions, found: triton_install.Runtime, tag: str) -> TritonProcess:
        return cls([], found.environment(), options, shm_prefix(tag),
                   argv_for=lambda options: tritonserver_argv(options, found, tag))

    @property
    def console_path(self) -> Path:
        """Where tritonserver's own stdout/stderr go: messages printed before its log file opens (loader errors)."""
        return self.options.log_file.with_suffix(".console")

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child else None

    @property
    def returncode(self) -> int | None:
        return self.child.returncode if self.child else None

    def alive(self) -> bool:
        return self.child is not None and self.child.alive()

    def crashed_after_coming_up(self) -> bool:
        """Killed by a signal (a segfault, a kill) after its endpoint answered: not a start that failed by itself."""
        return self.came_up and (self.returncode or 0) < 0

    def launch(self, model_names: list[str], ports: list[int]) -> process.Child:
        if ports:
            http, grpc, metrics = ports
            self.options = dataclasses.replace(self.options, http_port=http, grpc_port=grpc, metrics_port=metrics)
            self.argv = self.argv_for(self.options)
        self.came_up, self.not_ready = False, list(model_names)
        self.child = process.Child("tritonserver", self.argv, self.console_path, self.ready, self.env, ports=ports,
                                   grace_s=self.options.exit_timeout_s + 2.0)
        return self.child

    def ready(self) -> bool:
        if not triton_http.ready(self.options.http_url, timeout=1.0):
            return False
        self.came_up = True
        self.not_ready = [m for m in self.not_ready if not triton_http.ready(self.options.http_url, m, timeout=1.0)]
        return not self.not_ready

    def start(self, model_names: list[str]) -> float:
        """Start and wait until the server and every model are ready; seconds it took. Retries the boost lock abort."""
        began = time.monotonic()
        try:
            process.start(functools.partial(self.launch, model_names), self.options.startup_timeout_s,
                          ports=3 if self.argv_for else 0, attempts=START_ATTEMPTS,
                          retry_if=lambda failure: LOCK_EXCEPTION in self.output())
        except process.StartFailed as failure:
            pending = ", ".join(self.not_ready) or "server"
            why = f"tritonserver exited with code {failure.exit_code}" if failure.exit_code is not None else \
                f"not ready after {self.options.startup_timeout_s:.0f} s (models not ready: {pending})"
            raise explain_start_failure(why, self.output(), self.options) from None
        return time.monotonic() - began

    def output(self) -> str:
        return (self.child.output(200) if self.child else "") + "\n" + process.tail(self.options.log_file, 200)

    def stop(self) -> None:
        """SIGTERM (Triton waits at most --exit-timeout-secs for in-flight work), then SIGKILL the whole group: stubs
        share Triton's process group, and a dead or stuck one must not outlive the server."""
        if self.child is None:
            return
        self.child.stop()
        clean_shm(self.shm_prefix)


def clean_shm(prefix: str, shm_dir: Path = Path("/dev/shm")) -> list[Path]:
    removed = []
    for path in shm_dir.glob(prefix + "*"):
        try:
            path.unlink()
            removed.append(path)
        except OSError:
            pass
    return removed


def explain_start_failure(failure: str, output: str, options: ServeOptions) -> Exception:
    """Turn Triton's log into one actionable message."""
    for line in output.splitlines():
        if "error while loading shared libraries" in line:
            return RuntimeMissingError(f"tritonserver could not start: {line.strip()}; install that library or reinstall with `make venv`")
        if "GLIBC_" in line and "not found" in line:
            return RuntimeMissingError(
                f"tritonserver needs a newer glibc: {line.strip()}; serve on Ubuntu 22.04+/Debian 12+ or use the container"
            )
        if "Address already in use" in line or "address already in use" in line:
            return PortInUseError(
                f"tritonserver could not bind a port ({line.strip()}): choose free ports with --http-port/--grpc-port/--metrics-port"
            )
    errors = [line.strip() for line in output.splitlines() if line.startswith("E") or "failed to load" in line or "error:" in line.lower()]
    detail = "\n  ".join(errors[-8:]) if errors else "(no error lines; see the log)"
    return ServerStartError(f"Triton did not become ready: {failure}.\n  {detail}\nFull log: {options.log_file}")
