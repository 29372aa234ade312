"""Child processes: every server modelport starts (Triton, the serve launcher, Prometheus, the gateway, the bench
baselines) is a `Child`. It runs in a process group of its own with its output in a log file; `start` waits until it
is ready (polling a URL or a predicate), starts it again on fresh ports when another process took one of its ports
meanwhile, and `stop` ends its whole group. The first child started from the main thread installs, once, a handler
for SIGTERM, SIGINT and SIGHUP that stops every running child before the signal does what it did before: a child in
a session of its own gets no signal from our terminal and would otherwise outlive us."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Callable, Mapping, Sequence

POLL_S = 0.1
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


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


def bind_error(port: int, host: str = "127.0.0.1") -> OSError | None:
    """Why a server could not bind `port` now, or None when it could."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # Like a server would: a port in TIME_WAIT after our own stop is free, a listening one is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            return error
    return None


def answers(url: str, timeout_s: float = 2.0) -> bool:
    """Whether GET `url` answers 200. An https URL is our own child's: its certificate is not checked."""
    context = None
    if url.startswith("https:"):
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=timeout_s, context=context) as response:
            return response.status == 200
    except (OSError, ValueError):  # refused, reset, HTTP errors (URLError and HTTPError are OSErrors), a bad URL
        return False


def wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Poll `condition` until it holds (True) or `timeout_s` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)
    return True


def tail(path: Path, lines: int = 30, offset: int = 0) -> str:
    """The last `lines` lines of a file from byte `offset` on; empty when it cannot be read."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def running(pid: int, *command: str) -> bool:
    """Whether `pid` is a live process, and one whose command line holds every word of `command` (its program
    counted by name): the guard against pid reuse for a pid read back from a state file, e.g.
    `running(pid, "serve", "run")`, `running(pid, "tritonserver")`. A zombie is not live once its last thread ended
    (its leader turns zombie first, while the others still hold its files: its sockets)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "Z" and len(os.listdir(f"/proc/{pid}/task")) <= 1:
            return False
        if not command:
            return True
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except (OSError, IndexError):
        return False
    words = {*argv, Path(argv[0]).name}
    return all(word in words for word in command)


def signal_group(group: int, signum: int) -> None:
    """Send `signum` to a process group; nothing when it has no process left. (A group's id is not reused while
    one of its processes lives, which makes this safe after its leader ended; a bare pid would not be.)"""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)


def stop_group(pid: int, stop_signal: int = signal.SIGTERM, grace_s: float = 10.0) -> None:
    """Stop a process group this process did not start (one recorded in a state file): `stop_signal`, then SIGKILL
    of whatever is left once its leader ended or `grace_s` passed."""
    signal_group(pid, stop_signal)
    wait_until(lambda: not running(pid), grace_s)
    signal_group(pid, signal.SIGKILL)


@dataclasses.dataclass(eq=False)
class Child:
    name: str
    argv: Sequence[str]
    log: Path | None  # its stdout and stderr; None: ours (a tool run in the foreground, such as Locust)
    ready: Callable[[], bool] | str | None = None  # a predicate, or a URL answering 200; None: started is ready
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    ports: Sequence[int] = ()  # the loopback ports it binds: one taken by another process explains a failed start
    stop_signal: int = signal.SIGTERM
    grace_s: float = 10.0  # from stop_signal to SIGKILL
    keep_log: bool = False  # append to the log instead of starting it afresh
    popen: subprocess.Popen | None = dataclasses.field(default=None, init=False, repr=False)
    log_offset: int = dataclasses.field(default=0, init=False, repr=False)  # where this run's output begins

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    @property
    def returncode(self) -> int | None:
        """None while it runs (or before it started); negative: killed by that signal."""
        return self.popen.poll() if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def output(self, lines: int = 30) -> str:
        """The end of what this run wrote."""
        return tail(self.log, lines, self.log_offset) if self.log is not None else ""

    def spawn(self) -> Child:
        with contextlib.ExitStack() as stack:
            out = None
            if self.log is not None:
                self.log.parent.mkdir(parents=True, exist_ok=True)
                out = stack.enter_context(open(self.log, "ab" if self.keep_log else "wb"))
                self.log_offset = out.tell()
            self.popen = subprocess.Popen(
                list(self.argv), cwd=self.cwd, env=None if self.env is None else dict(self.env),
                stdin=subprocess.DEVNULL, stdout=out, stderr=None if out is None else subprocess.STDOUT,
                start_new_session=True,
            )
        _children.track(self)
        return self

    def wait(self) -> int:
        """Wait until it exits by itself; its exit code. (Polled: the signal handler may stop it meanwhile.)"""
        wait_until(lambda: self.returncode is not None, float("inf"))
        _children.forget(self)
        return self.returncode

    def wait_ready(self, timeout_s: float) -> str | None:
        """None once it is ready, else why not: it exited, or `timeout_s` passed."""
        ready = self.ready if callable(self.ready) else functools.partial(answers, self.ready) if self.ready else None
        exited = None

        def settled() -> bool:
            nonlocal exited
            exited = self.returncode
            return exited is not None or ready is None or ready()

        if not wait_until(settled, timeout_s):
            return f"not ready after {timeout_s:g} s"
        return None if exited is None else f"exited with code {exited} while starting"

    def stop(self) -> int | None:
        """`stop_signal` to its group, SIGKILL to what is left after `grace_s` (or at once once its leader ended: a
        child it left behind must not outlive it); its exit code."""
        if self.popen is None:
            return None
        pid = self.popen.pid

        def ended() -> bool:  # polled, not Popen.wait(): the signal handler may stop it while we block in that wait
            return self.popen.poll() is not None or not running(pid)

        if not ended():
            signal_group(pid, self.stop_signal)
            wait_until(ended, self.grace_s)
        signal_group(pid, signal.SIGKILL)
        wait_until(ended, 5)
        _children.forget(self)
        return self.popen.poll()  # reaps it, unless the main thread is doing that now

    def detach(self) -> None:
        """Leave it running when this process ends (a server started in the background)."""
        _children.forget(self)

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class StartFailed(RuntimeError):
    """A child exited while starting or was not ready in time; the message carries the end of its output."""

    def __init__(self, child: Child, reason: str, exit_code: int | None = None, busy_ports: Sequence[int] = ()):
        self.child, self.reason, self.busy_ports = child, reason, tuple(busy_ports)
        self.exit_code = exit_code  # None: it was still running, and was stopped for not being ready in time
        if busy_ports:
            self.reason += f": port {', '.join(map(str, busy_ports))} is taken by another process"
        super().__init__(f"{child.name} {self.reason}; {child.log}:\n{child.output(25) or '(no output)'}")


def start(launch: Child | Callable[[list[int]], Child], timeout_s: float, ports: int = 0, attempts: int = 3,
          retry_if: Callable[[StartFailed], bool] = lambda failure: False) -> Child:
    """Start a child and wait until it is ready; stop it and raise StartFailed when it does not get there.

    `launch` builds the child for `ports` fresh free ports. One that exits while one of them is taken by another
    process (it went between our pick and the child's bind) is started again on new ones, up to `attempts` times in
    all, and so is a failure `retry_if` accepts."""
    for attempt in range(1, attempts + 1):
        child = launch(free_ports(ports) if ports else []) if callable(launch) else launch
        try:
            reason = child.spawn().wait_ready(timeout_s)
        except BaseException:
            child.stop()
            raise
        if reason is None:
            return child
        code = child.returncode  # by itself, before the stop below
        child.stop()
        busy = [port for port in child.ports if code is not None and bind_error(port)]
        failure = StartFailed(child, reason, code, busy)
        if attempt == attempts or not ((ports and failure.busy_ports) or retry_if(failure)):
            raise failure
        if not failure.busy_ports:
            time.sleep(0.5 * attempt)  # what retry_if retries is contention (a lock at start): let it pass
    raise AssertionError("unreachable")


class _Running:
    """The children running now, and the signal handler that stops them."""

    def __init__(self):
        self.children: list[Child] = []
        self.lock = threading.RLock()  # the handler may interrupt the main thread inside track() or forget()
        self.installed = False

    def track(self, child: Child) -> None:
        with self.lock:
            if child not in self.children:
                self.children.append(child)
            install = not self.installed and threading.current_thread() is threading.main_thread()
            self.installed |= install
        if install:
            for signum in STOP_SIGNALS:
                previous = signal.getsignal(signum)
                if previous not in (signal.SIG_IGN, None):  # ignored (nohup): we go on, and so do the children
                    signal.signal(signum, functools.partial(self.on_signal, previous))

    def forget(self, child: Child) -> None:
        with self.lock:
            if child in self.children:
                self.children.remove(child)

    def on_signal(self, previous, signum: int, frame) -> None:
        with self.lock:
            children = list(reversed(self.children))
        for child in children:
            child.stop()
        if callable(previous):
            previous(signum, frame)  # SIGINT's default raises KeyboardInterrupt; an application's own handler
        else:  # SIG_DFL: end the way the signal would have ended us
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)


_children = _Running()
