"""Start and stop the contenders on free ports: Triton as exported, Triton with batching off, Flask/gunicorn,
FastAPI/uvicorn, and the gateway in front of Triton. Each is a child process group of the benchmark; leaving the
`with` block stops it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from serve import endpoints
from serve.process import free_ports, tail

REPO_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 240.0


@dataclass(frozen=True)
class Running:
    name: str
    host: str
    port: int
    metrics_url: str | None  # Triton only (the gateway's is its Triton's)
    log_path: Path
    grpc_port: int | None = None  # Triton only: where the gateway calls it
    api_key: str | None = None  # the gateway only: the key its requests carry
    group: int | None = None  # its process group (the server and its children): what its CPU time is read from


def group_cpu_s(group: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of a process group, read from /proc."""
    total, tick = 0, os.sysconf("SC_CLK_TCK")
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[2]) == group:  # pgrp; then utime, stime at 11, 12
            total += int(fields[11]) + int(fields[12])
    return total / tick


class ServerFailed(RuntimeError):
    """A contender did not come up; the message carries its log tail."""


def free_port() -> int:
    return free_ports(1)[0]


def _post(url: str, body: bytes, content_type: str, timeout: float = 2.0) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


@contextlib.contextmanager
def _process(name: str, command: list[str], env: dict[str, str], log_path: Path, ready,
             stop_signal: int = signal.SIGTERM) -> Running:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready():
            if process.poll() is not None:
                raise ServerFailed(f"{name} exited with {process.returncode} while starting; {log_path}:\n{tail(log_path, 25) or '(no log)'}")
            if time.monotonic() > deadline:
                raise ServerFailed(f"{name} not ready after {START_TIMEOUT_S:.0f} s; {log_path}:\n{tail(log_path, 25) or '(no log)'}")
            time.sleep(0.2)
        yield process
    finally:
        _stop(process, stop_signal)


def _stop(process: subprocess.Popen, stop_signal: int) -> None:
    """Ask the parent to stop (it stops its own children: Triton and its stubs, or the workers); kill the whole group
    only if it does not within 30 s."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(stop_signal)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def without_dynamic_batching(source: Path, target: Path) -> Path:
    """A copy of the repository whose models keep max_batch_size (same request shapes) but have no dynamic batcher:
    every request executes alone."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, symlinks=False)
    for config_path in target.glob("*/config.pbtxt"):
        config = text_format.Parse(config_path.read_text(), model_config_pb2.ModelConfig())
        if config.HasField("dynamic_batching"):
            config.ClearField("dynamic_batching")
            config_path.write_text(text_format.MessageToString(config))
    return target


@contextlib.contextmanager
def triton(name: str, repository: Path, work_dir: Path, attempts: int = 3,
           extra_args: tuple[str, ...] = ()) -> Running:
    # a start can fail for reasons a retry fixes: a port taken between our probe and Triton's bind, or
    # boost::interprocess::lock_exception under heavy load
    with contextlib.ExitStack() as stack:
        for attempt in range(1, attempts + 1):
            try:
                running = stack.enter_context(_triton_once(name, repository, work_dir, extra_args))
                break
            except ServerFailed:
                if attempt == attempts:
                    raise
        yield running


@contextlib.contextmanager
def _triton_once(name: str, repository: Path, work_dir: Path, extra_args: tuple[str, ...] = ()) -> Running:
    http, grpc, metrics = free_ports(3)
    state_dir = work_dir / name
    env = {**os.environ, "MODELPORT_ADMIN_KEY": secrets.token_hex(16)}
    command = [
        sys.executable, "-m", "serve", "run", "--repository", str(repository),
        "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
        "--state-dir", str(state_dir), "--log-file", str(state_dir / "tritonserver.log"), *extra_args,
    ]
    log_path = state_dir / "launcher.log"
    # SIGINT is the launcher's Ctrl-C: it stops Triton, then the stubs, and cleans their shared memory
    with _process(name, command, env, log_path, lambda: endpoints.ready(f"127.0.0.1:{http}"), signal.SIGINT) as process:
        yield Running(name, "127.0.0.1", http, f"127.0.0.1:{metrics}", log_path, grpc, group=process.pid)


@contextlib.contextmanager
def gateway(triton: Running, work_dir: Path) -> Running:
    """The gateway (gateway/) in front of `triton` over gRPC as it is deployed: an API key on every request, its
    limits and the access log on; rates and load bounds set out of the way, so that the cells measure what every
    request costs there (key check, parsing, checks, the gRPC hop, rendering, the access log), not its refusals."""
    port = free_port()
    state = work_dir / "gateway"
    key = "mpk_" + secrets.token_urlsafe(32)
    command = [
        sys.executable, "-m", "gateway", "run", "--quiet", "--port", str(port), "--keys-file", str(state / "keys.json"),
        "--triton", f"127.0.0.1:{triton.grpc_port}", "--state-dir", str(state),
        "--access-log", str(state / "access.log"),
        "--rate", "1000000", "--burst", "1000000", "--max-in-flight", "4096",
    ]
    log_path = state / "gateway.log"
    with _process("gateway", command, {**os.environ, "MODELPORT_API_KEY": key}, log_path,
                  lambda: endpoints.request(f"127.0.0.1:{port}/readyz")[0] == 200) as process:
        yield Running("gateway", "127.0.0.1", port, triton.metrics_url, log_path, api_key=key, group=process.pid)


def _baseline_env(onnx_path: Path) -> dict[str, str]:
    return {**os.environ, "BENCH_ONNX_MODEL": str(onnx_path), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}


def _baseline_ready(port: int, probe: bytes):
    return lambda: _post(f"http://127.0.0.1:{port}/predict/binary", probe, "application/octet-stream") == 200


@contextlib.contextmanager
def flask_gunicorn(onnx_path: Path, workers: int, work_dir: Path, probe: bytes) -> Running:
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", "--workers", str(workers), "--bind", f"127.0.0.1:{port}",
        "--log-level", "warning", "bench.baselines.flask_app:app",
    ]
    log_path = work_dir / "flask" / "gunicorn.log"
    with _process("flask", command, _baseline_env(onnx_path), log_path, _baseline_ready(port, probe)):
        yield Running("flask", "127.0.0.1", port, None, log_path)


@contextlib.contextmanager
def fastapi_uvicorn(onnx_path: Path, workers: int, work_dir: Path, probe: bytes) -> Running:
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", "--workers", str(workers), "--host", "127.0.0.1", "--port", str(port),
        "--loop", "uvloop", "--http", "httptools", "--log-level", "warning", "--no-access-log",
        "bench.baselines.fastapi_app:app",
    ]
    log_path = work_dir / "fastapi" / "uvicorn.log"
    with _process("fastapi", command, _baseline_env(onnx_path), log_path, _baseline_ready(port, probe)):
        yield Running("fastapi", "127.0.0.1", port, None, log_path)


@contextlib.contextmanager
def trivial(work_dir: Path) -> Running:
    port = free_port()
    log_path = work_dir / "trivial.log"

    def ready() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    with _process("trivial", [sys.executable, "-m", "bench.trivial", str(port)], dict(os.environ), log_path, ready):
        yield Running("trivial", "127.0.0.1", port, None, log_path)
