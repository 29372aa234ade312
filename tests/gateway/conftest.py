"""The gateway as users run it: `python -m gateway run` in a subprocess on a free loopback port, in front of the
session's real Triton. `gateway` is one per session with keys, CORS, short timeouts and a small drift window;
`launch_gateway` starts others (TLS, shedding on and off)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path
from typing import Iterator

import pytest
import requests
import urllib3

from gateway.keys import ApiKey, new_key, save
from core.process import free_ports, tail

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 90.0
ORIGIN = "http://app.example.test"  # the session gateway's one allowed CORS origin


@dataclasses.dataclass(frozen=True)
class RunningGateway:
    url: str
    key: str = dataclasses.field(repr=False)
    keys: dict = dataclasses.field(repr=False)  # role -> key: full, digits_only, slow
    output: Path
    access_log: Path
    pid: int

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    def predict(self, model: str, document, key: str | None = None, **kwargs) -> requests.Response:
        return requests.post(f"{self.url}/v1/models/{model}:predict", json=document,
                             headers={**self.auth(key), **kwargs.pop("headers", {})}, timeout=30, **kwargs)

    def metric(self, name: str, **labels) -> float | None:
        """One sample of /metrics (the first whose labels include `labels`), or None."""
        text = requests.get(f"{self.url}/metrics", headers=self.auth(), timeout=10).text
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            head, value = line.rsplit(" ", 1)
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                return float(value)
        return None

    def log_tail(self) -> str:
        return f"--- gateway output ---\n{tail(self.output, 40)}"


def _ready(url: str) -> bool:
    with warnings.catch_warnings():  # our own test certificate: not verified while waiting for the start
        warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
        try:
            return requests.get(f"{url}/readyz", timeout=2, verify=False).status_code == 200
        except requests.RequestException:
            return False


@contextlib.contextmanager
def launch_gateway(triton, workdir: Path, *flags: str, env: dict | None = None, scheme: str = "http",
                   keys: dict | None = None) -> Iterator[RunningGateway]:
    """Start a gateway in front of `triton`; `keys` (role -> ApiKey fields) go into its keys file, the first role's
    key is `.key`. Without keys the gateway runs with whatever `flags` say (--no-auth, or $MODELPORT_API_KEY)."""
    workdir.mkdir(parents=True, exist_ok=True)
    made = {role: new_key() for role in (keys or {})}
    keys_file = workdir / "keys.json"
    if keys:
        save(keys_file, tuple(ApiKey.for_key(made[role], id=role, **fields) for role, fields in keys.items()))
    port = free_ports(1)[0]
    output, access_log = workdir / "gateway.out", workdir / "access.log"
    argv = [sys.executable, "-m", "gateway", "run", "--port", str(port), "--triton", triton.grpc_url,
            "--state-dir", str(workdir / "state"), "--keys-file", str(keys_file), "--access-log", str(access_log),
            *flags]
    with open(output, "wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    url = f"{scheme}://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None and not _ready(url):
        time.sleep(0.2)
    if proc.poll() is not None or not _ready(url):
        _stop(proc)
        pytest.fail(f"the gateway did not become ready (exit {proc.returncode}):\n{tail(output, 40)}", pytrace=False)
    first = next(iter(made.values()), (env or {}).get("MODELPORT_API_KEY", ""))
    try:
        yield RunningGateway(url, first, made, output, access_log, proc.pid)
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def gateway(triton, tmp_path_factory) -> Iterator[RunningGateway]:
    workdir = tmp_path_factory.mktemp("gateway")
    keys = {"full": {}, "digits_only": {"models": ("digits",)}, "slow": {"rate_per_s": 1.0, "burst": 2}}
    with launch_gateway(triton, workdir, "--cors-origin", ORIGIN, "--body-timeout", "1", "--header-timeout", "1",
                        "--drift-window", "100", "--drift-min-samples", "50", "--failed-auth-burst", "100000",
                        keys=keys,
                        env={"MODELPORT_API_KEY": "env-key-for-tests-0123456789"}) as running:
        yield running


def triton_requests(triton) -> int:
    """Every inference Triton has counted, successful or failed, over all models (its statistics API)."""
    with urllib.request.urlopen(f"http://{triton.http_url}/v2/models/stats", timeout=10) as response:
        stats = json.load(response)["model_stats"]
    return sum(int(m["inference_stats"][k]["count"]) for m in stats for k in ("success", "fail"))
