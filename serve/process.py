"""One tritonserver process: start it in its own process group, wait until every model is ready, stop it fast."""
from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from core.errors import PortInUseError, RuntimeMissingError, ServerStartError
from core.triton import ServeOptions
from serve import endpoints

# Under heavy load Triton can abort at start with this boost error; a second try succeeds.
LOCK_EXCEPTION = "boost::interprocess::lock_exception"
START_ATTEMPTS = 3


def free_ports(count: int) -> list[int]:
    """Distinct ports the kernel just handed out; all held open together so that none repeats."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def check_ports_free(options: ServeOptions) -> None:
    for flag, port in (("--http-port", options.http_port), ("--grpc-port", options.grpc_port), ("--metrics-port", options.metrics_port)):
        with socket.socket(socket.AF_INET6 if ":" in options.address else socket.AF_INET) as probe:
            # Like a server would: a port in TIME_WAIT after our own stop is free, a listening one is not.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((options.address, port))
            except OSError as error:
                raise PortInUseError(
                    f"port {port} on {options.address} is already in use ({error.strerror}): "
                    f"stop whatever listens there (`make stop` if it is ours, `ss -ltnp 'sport = :{port}'` to see who) "
                    f"or choose another port with {flag} N"
                ) from None


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclasses.dataclass
class TritonProcess:
    argv: list[str]
    env: dict[str, str]
    options: ServeOptions
    shm_prefix: str
    popen: subprocess.Popen | None = None
    # Whether this run's server endpoint answered ready: a crash after that came from something it was sent (a
    # request), not from anything it was started with.
    came_up: bool = False

    @property
    def console_path(self) -> Path:
        """Where tritonserver's own stdout/stderr go: messages printed before its log file opens (loader errors)."""
        return self.options.log_file.with_suffix(".console")

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def crashed_after_coming_up(self) -> bool:
        """Killed by a signal (a segfault, a kill) after its endpoint answered: not a start that failed by itself."""
        return self.came_up and self.popen is not None and (self.popen.poll() or 0) < 0

    def spawn(self) -> None:
        self.came_up = False
        self.options.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.console_path, "wb") as console:
            # Own session: Ctrl-C in a terminal reaches the launcher, which then stops Triton and its stubs as a group.
            self.popen = subprocess.Popen(
                self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start(self, model_names: list[str]) -> float:
        """Start and wait until the server and every model are ready; seconds it took. Retries the boost lock abort."""
        began = time.monotonic()
        for attempt in range(1, START_ATTEMPTS + 1):
            self.spawn()
            failure = self.wait_ready(model_names, began + self.options.startup_timeout_s)
            if failure is None:
                return time.monotonic() - began
            self.stop()
            output = tail(self.console_path, 200) + "\n" + tail(self.options.log_file, 200)
            if LOCK_EXCEPTION in output and attempt < START_ATTEMPTS:
                time.sleep(0.5 * attempt)
                continue
            raise explain_start_failure(failure, output, self.options)
        raise AssertionError("unreachable")

    def wait_ready(self, model_names: list[str], deadline: float) -> str | None:
        """None when ready, else why not."""
        pending = list(model_names)
        while time.monotonic() < deadline:
            if not self.alive():
                return f"tritonserver exited with code {self.popen.returncode}"
            if endpoints.ready(self.options.http_url, timeout=1.0):
                self.came_up = True
                pending = [m for m in pending if not endpoints.ready(self.options.http_url, m, timeout=1.0)]
                if not pending:
                    return None
            time.sleep(0.1)
        return f"not ready after {self.options.startup_timeout_s:.0f} s (models not ready: {', '.join(pending) or 'server'})"

    def stop(self) -> None:
        """SIGTERM (Triton waits at most --exit-timeout-secs for in-flight work), then SIGKILL the whole group."""
        if self.popen is None:
            return
        grace = self.options.exit_timeout_s + 2.0
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        # Stubs share Triton's process group; a dead or stuck one must not outlive the server.
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
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
