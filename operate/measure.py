"""`python -m operate measure`: start Triton on the repository the way `make serve` does, time load + warmup of every
model, stop it, and record the figure in deploy/measured.json, from which the manifests size their startup probe."""
from __future__ import annotations

import dataclasses
import json
import platform
import secrets
from pathlib import Path

from core.triton import ServeOptions
from operate.k8s import Measured
from core import repository_scan, triton_install
from core.triton_process import TritonProcess


def measure(repository: Path, workdir: Path) -> Measured:
    options = ServeOptions(repository=repository, log_file=workdir / "measure.log", state_dir=workdir,
                           admin_key=secrets.token_hex(16))
    found = triton_install.locate(options.build_dir)
    models = [model.name for model in repository_scan.scan(options.repository)]
    triton = TritonProcess.on_free_ports(options, found, f"measure_{secrets.token_hex(3)}")
    try:
        seconds = triton.start(models)
    finally:
        triton.stop()
    where = f"{platform.machine()} CPU host, nvidia-pytriton's Triton, {options.repository.name}/"
    return Measured(startup_s=round(seconds, 1), models=len(models), where=where)


def record(measured: Measured, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dataclasses.asdict(measured), indent=2) + "\n")
