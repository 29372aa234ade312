"""Shared fixtures. `triton`: one real Triton per test session, started by our launcher on free loopback ports."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import signal
import sys
import urllib.request
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from core import process
from core.triton import ServeOptions, serve_command

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = ROOT / "model_repository"
STARTUP_TIMEOUT_S = 180.0
# The reference models' load-test mix (models.toml's loadtest_weight): part of their contract. A user's own models
# join the mix with their own weights; tests check these three exactly and every other model from the spec.
REFERENCE_MIX = {"digits": 5, "digits_image": 2, "sentiment": 3}


@dataclasses.dataclass(frozen=True)
class TritonServer:
    http_url: str  # "127.0.0.1:PORT", the form tritonclient expects
    grpc_url: str
    metrics_url: str
    admin_key: str = dataclasses.field(repr=False)
    log_path: Path
    events_path: Path
    repository: Path
    pid: int  # the supervising `python -m serve run` process

    @property
    def admin_headers(self) -> dict[str, str]:
        """HTTP headers that unlock the restricted APIs."""
        return {"modelport-admin-key": self.admin_key}

    @property
    def grpc_admin_headers(self) -> dict[str, str]:
        """gRPC metadata that unlocks the restricted protocols: Triton prefixes the key with `triton-grpc-protocol-`."""
        return {"triton-grpc-protocol-modelport-admin-key": self.admin_key}

    def tritonserver(self) -> psutil.Process:
        return next(p for p in psutil.Process(self.pid).children() if p.name() == "tritonserver")

    def instance_names(self, model: str) -> list[str]:
        """Triton's names of the model's instances, from its served config: <group name>_<index> (digits_0_1)."""
        with urllib.request.urlopen(f"http://{self.http_url}/v2/models/{model}/config", timeout=5) as response:
            groups = json.load(response)["instance_group"]
        return [f"{group['name']}_{index}" for group in groups for index in range(group["count"])]

    def backend_stubs(self, model: str) -> list[psutil.Process]:
        """Running python backend stubs of `model`: children of tritonserver whose argv[1] is the model's file,
        <repository>/<model>/<version>/<file>. A killed stub stays a zombie child without a command line: left out."""
        model_dir = self.repository.resolve() / model
        stubs = []
        for child in self.tritonserver().children():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
                argv = child.cmdline()
                serves_model = len(argv) > 1 and Path(argv[1]).parent.parent == model_dir
                if serves_model and child.status() != psutil.STATUS_ZOMBIE:
                    stubs.append(child)
        return stubs

    def log_tail(self, lines: int = 60) -> str:
        parts = []
        for path in (self.events_path, self.log_path):
            with contextlib.suppress(OSError):
                parts.append(f"--- {path} ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(parts)


@contextlib.contextmanager
def launch_triton(repository: Path, workdir: Path, attempts: int = 3, wrapper: tuple[str, ...] = (),
                  **options) -> Iterator[TritonServer]:
    """Run `python -m serve run` on free ports against `repository`, with ServeOptions `options` (heal=False, ...);
    yield once the server and its models are ready. `wrapper` goes before the command (e.g. `unshare ...` to run it
    in namespaces of its own)."""
    workdir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(16)
    servers: list[TritonServer] = []

    def launch(ports: list[int]) -> process.Child:
        http_port, grpc_port, metrics_port = ports
        attempt = len(servers) + 1
        log_path = workdir / f"triton-{attempt}.log"
        servers.append(TritonServer(
            http_url=f"127.0.0.1:{http_port}", grpc_url=f"127.0.0.1:{grpc_port}",
            metrics_url=f"127.0.0.1:{metrics_port}",
            admin_key=key, log_path=log_path, events_path=log_path.with_name(log_path.stem + ".events.log"),
            repository=repository, pid=0,
        ))
        argv = [*wrapper, *serve_command(ServeOptions(
            repository=repository, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port,
            log_file=log_path, state_dir=workdir / "state", admin_key=key, **options))]
        # SIGINT is what Ctrl-C does: the launcher stops Triton and its stubs
        return process.Child("the launcher", argv, workdir / f"serve-{attempt}.out",
                             f"http://127.0.0.1:{http_port}/v2/health/ready", dict(os.environ, MODELPORT_ADMIN_KEY=key),
                             ROOT, ports, signal.SIGINT, grace_s=30)

    try:
        launcher = process.start(launch, STARTUP_TIMEOUT_S, ports=3, attempts=attempts)
    except process.StartFailed as failure:
        pytest.fail(f"Triton did not become ready (launcher exit code {failure.exit_code}).\n"
                    f"--- launcher output ---\n{failure.child.output(1000)[-4000:]}\n{servers[-1].log_tail()}",
                    pytrace=False)
    with launcher:
        yield dataclasses.replace(servers[-1], pid=launcher.pid)


def exported_repository(*paths: Path | None) -> Path:
    """The exported model repository, and the other files `make export` writes that a test reads (`paths`): missing
    ones fail the test naming the command to run, never skip it (a skipped test looks like a passing one)."""
    from core.errors import RepositoryError
    from core.repository_scan import scan

    missing = [str(p) for p in paths if p is None or not Path(p).exists()]
    if missing:
        pytest.fail(f"not exported: {', '.join(missing)}; run `make export` (`make test` runs it first)", pytrace=False)
    try:
        scan(REPOSITORY)
    except RepositoryError as error:
        pytest.fail(f"{error} (make test runs `make export` first)", pytrace=False)
    return REPOSITORY


@pytest.fixture(scope="session")
def triton(tmp_path_factory, request) -> Iterator[TritonServer]:
    repository = exported_repository()
    workdir = tmp_path_factory.mktemp("triton")
    with launch_triton(repository, workdir) as server:
        failed_before = request.session.testsfailed
        yield server
        if request.session.testsfailed > failed_before:
            # Show what the server said when tests that used it failed, past pytest's output capture.
            capture = request.config.pluginmanager.getplugin("capturemanager")
            with capture.global_and_fixture_disabled():
                print(f"\n--- tail of the Triton logs ---\n{server.log_tail()}", file=sys.stderr)
