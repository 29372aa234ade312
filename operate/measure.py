"""`python -m operate measure`: start Triton on the repository the way `make serve` does, time load + warmup of every
model, stop it, and record the figure in deploy/measured.json, from which the manifests size their startup probe."""
from __future__ import annotations

import dataclasses
import json
import platform
import secrets
from pathlib import Path

from core.triton import ServeOptions, shm_prefix, tritonserver_argv
from operate.k8s import Measured
from serve import launcher
from serve.process import TritonProcess, free_ports


def measure(repository: Path, workdir: Path) -> Measured:
    http, grpc, metrics = free_ports(3)
    options = ServeOptions(repository=repository, http_port=http, grpc_port=grpc, metrics_port=metrics,
                           log_file=workdir / "measure.log", state_dir=workdir, admin_key=secrets.token_hex(16))
    found, models = launcher.preflight(options)
    tag = f"measure_{secrets.token_hex(3)}"
    triton = TritonProcess(tritonserver_argv(options, found, tag), found.environment(), options,
                           shm_prefix(tag))
    try:
        seconds = triton.start(models)
    finally:
        triton.stop()
    where = f"{platform.machine()} CPU host, nvidia-pytriton's Triton, {options.repository.name}/"
    return Measured(startup_s=round(seconds, 1), models=len(models), where=where)


def record(measured: Measured, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dataclasses.asdict(measured), indent=2) + "\n")
