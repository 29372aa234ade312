"""Start and stop the contenders on free ports: Triton as exported, Triton with batching off, Flask/gunicorn,
FastAPI/uvicorn, and the gateway in front of Triton. Each is a child process group of the benchmark; leaving the
`with` block stops it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import shutil
import signal
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from core import process
from core.triton import ADMIN_KEY_ENV, ServeOptions, serve_command

REPO_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 240.0


@dataclasses.dataclass(frozen=True)
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
def _server(launch: Callable[[list[int]], tuple[process.Child, Running]], ports: int = 1) -> Iterator[Running]:
    """The contender `launch` builds for free ports, ready (on new ports if another process takes one first); its
    process group is stopped on the way out."""
    built: list[Running] = []

    def child(picked: list[int]) -> process.Child:
        started, running = launch(picked)
        built.append(running)
        return started

    with process.start(child, START_TIMEOUT_S, ports=ports) as started:
        yield dataclasses.replace(built[-1], group=started.pid)


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
def triton(name: str, repository: Path, work_dir: Path, **options) -> Iterator[Running]:
    """`python -m serve run` on free ports, with ServeOptions `options` (cache_size_bytes=...)."""
    state_dir = work_dir / name
    key = secrets.token_hex(16)
    env = {**os.environ, ADMIN_KEY_ENV: key}

    def launch(ports: list[int]) -> tuple[process.Child, Running]:
        http, grpc, metrics = ports
        command = serve_command(ServeOptions(
            repository=repository, http_port=http, grpc_port=grpc, metrics_port=metrics, state_dir=state_dir,
            log_file=state_dir / "tritonserver.log", admin_key=key, **options))
        log_path = state_dir / "launcher.log"
        # SIGINT is the launcher's Ctrl-C: it stops Triton, then the stubs, and cleans their shared memory
        child = process.Child(name, command, log_path, f"http://127.0.0.1:{http}/v2/health/ready", env, REPO_ROOT,
                              ports, signal.SIGINT, grace_s=30)
        return child, Running(name, "127.0.0.1", http, f"127.0.0.1:{metrics}", log_path, grpc)

    with _server(launch, ports=3) as running:
        yield running


@contextlib.contextmanager
def gateway(triton: Running, work_dir: Path) -> Iterator[Running]:
    """The gateway (gateway/) in front of `triton` over gRPC as it is deployed: an API key on every request, its
    limits and the access log on; rates and load bounds set out of the way, so that the cells measure what every
    request costs there (key check, parsing, checks, the gRPC hop, rendering, the access log), not its refusals."""
    state = work_dir / "gateway"
    key = "mpk_" + secrets.token_urlsafe(32)

    def launch(ports: list[int]) -> tuple[process.Child, Running]:
        command = [
            sys.executable, "-m", "gateway", "run", "--quiet", "--port", str(ports[0]),
            "--keys-file", str(state / "keys.json"), "--triton", f"127.0.0.1:{triton.grpc_port}",
            "--state-dir", str(state), "--access-log", str(state / "access.log"),
            "--rate", "1000000", "--burst", "1000000", "--max-in-flight", "4096",
        ]
        log_path = state / "gateway.log"
        child = process.Child("gateway", command, log_path, f"http://127.0.0.1:{ports[0]}/readyz",
                              {**os.environ, "MODELPORT_API_KEY": key}, REPO_ROOT, ports, grace_s=30)
        return child, Running("gateway", "127.0.0.1", ports[0], triton.metrics_url, log_path, api_key=key)

    with _server(launch) as running:
        yield running


def _baseline(name: str, command: Callable[[int], list[str]], onnx_path: Path, log_path: Path,
              probe: bytes) -> contextlib.AbstractContextManager[Running]:
    env = {**os.environ, "BENCH_ONNX_MODEL": str(onnx_path), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}

    def launch(ports: list[int]) -> tuple[process.Child, Running]:
        (port,) = ports

        def ready() -> bool:
            return _post(f"http://127.0.0.1:{port}/predict/binary", probe, "application/octet-stream") == 200

        child = process.Child(name, command(port), log_path, ready, env, REPO_ROOT, ports, grace_s=30)
        return child, Running(name, "127.0.0.1", port, None, log_path)

    return _server(launch)


def flask_gunicorn(onnx_path: Path, workers: int, work_dir: Path,
                   probe: bytes) -> contextlib.AbstractContextManager[Running]:
    return _baseline("flask", lambda port: [
        sys.executable, "-m", "gunicorn", "--workers", str(workers), "--bind", f"127.0.0.1:{port}",
        "--log-level", "warning", "bench.baselines.flask_app:app",
    ], onnx_path, work_dir / "flask" / "gunicorn.log", probe)


def fastapi_uvicorn(onnx_path: Path, workers: int, work_dir: Path,
                    probe: bytes) -> contextlib.AbstractContextManager[Running]:
    return _baseline("fastapi", lambda port: [
        sys.executable, "-m", "uvicorn", "--workers", str(workers), "--host", "127.0.0.1", "--port", str(port),
        "--loop", "uvloop", "--http", "httptools", "--log-level", "warning", "--no-access-log",
        "bench.baselines.fastapi_app:app",
    ], onnx_path, work_dir / "fastapi" / "uvicorn.log", probe)


@contextlib.contextmanager
def trivial(work_dir: Path) -> Iterator[Running]:
    log_path = work_dir / "trivial.log"

    def launch(ports: list[int]) -> tuple[process.Child, Running]:
        (port,) = ports

        def ready() -> bool:
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", port)) == 0

        child = process.Child("trivial", [sys.executable, "-m", "bench.trivial", str(port)], log_path, ready,
                              cwd=REPO_ROOT, ports=ports, grace_s=30)
        return child, Running("trivial", "127.0.0.1", port, None, log_path)

    with _server(launch) as running:
        yield running
