"""The gateway as users run it: `python -m gateway run` in a subprocess on a free loopback port, in front of the
session's real Triton. `gateway` is one per session with keys, CORS, short timeouts and a small drift window;
`launch_gateway` starts others (TLS, shedding on and off)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
import requests

from gateway.keys import ApiKey, new_key, save
from core import process
from core.process import tail

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


@contextlib.contextmanager
def launch_gateway(triton, workdir: Path, *flags: str, env: dict | None = None, scheme: str = "http",
                   keys: dict | None = None) -> Iterator[RunningGateway]:
    """Start a gateway in front of `triton` on a free port; `keys` (role -> ApiKey fields) go into its keys file, the
    first role's key is `.key`. Without keys the gateway runs with whatever `flags` say (--no-auth, or
    $MODELPORT_API_KEY)."""
    workdir.mkdir(parents=True, exist_ok=True)
    made = {role: new_key() for role in (keys or {})}
    keys_file = workdir / "keys.json"
    if keys:
        save(keys_file, tuple(ApiKey.for_key(made[role], id=role, **fields) for role, fields in keys.items()))
    output, access_log = workdir / "gateway.out", workdir / "access.log"

    def launch(ports: list[int]) -> process.Child:
        argv = [sys.executable, "-m", "gateway", "run", "--port", str(ports[0]), "--triton", triton.grpc_url,
                "--state-dir", str(workdir / "state"), "--keys-file", str(keys_file), "--access-log", str(access_log),
                *flags]
        # an https gateway's readiness is polled without checking our own test certificate
        return process.Child("the gateway", argv, output, f"{scheme}://127.0.0.1:{ports[0]}/readyz",
                             {**os.environ, **(env or {})}, ROOT, ports, grace_s=15)

    try:
        child = process.start(launch, READY_TIMEOUT_S, ports=1)
    except process.StartFailed as failure:
        pytest.fail(str(failure), pytrace=False)
    first = next(iter(made.values()), (env or {}).get("MODELPORT_API_KEY", ""))
    with child:
        yield RunningGateway(f"{scheme}://127.0.0.1:{child.ports[0]}", first, made, output, access_log, child.pid)


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
