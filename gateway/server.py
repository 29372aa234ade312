"""Run the gateway (uvicorn, uvloop, the header-timeout protocol, TLS when given), or start it in the background
and stop it again: the record in <state dir>/gateway.json says which process `stop` stops."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import prometheus_client
import uvicorn

from core.errors import ServerError
from core.spec import load_spec
from gateway import keys as api_keys
from gateway.app import create_app
from gateway.options import GatewayOptions
from gateway.protocol import with_limits
from serve.state import pid_alive

STATE_FILE = "gateway.json"
STOP_GRACE_S = 10.0


class GatewayError(ServerError):
    """A start or stop that cannot go ahead; the message says why and what to do."""

    exit_code = 2


def summary(options: GatewayOptions, key_note: str) -> str:
    metrics = (f"http://{options.metrics_host}:{options.metrics_port}/metrics (open)" if options.metrics_port
               else f"{options.url}/metrics" + (" (a key for every model)" if options.auth else ""))
    auth = key_note if options.auth else "API keys: OFF (--no-auth): anyone who reaches the port can call every model"
    return (f"gateway on {options.url} -> Triton gRPC {options.triton_url}\n"
            f"  page     {options.url}/\n  API      {options.url}/v1/models  (docs {options.url}/docs)\n"
            f"  metrics  {metrics}\n  {auth}")


def run(options: GatewayOptions, quiet: bool = False) -> int:
    store, note = api_keys.resolve(options) if options.auth else (None, "")
    app = create_app(options, load_spec(options.spec), store)
    config = uvicorn.Config(
        app, host=options.host, port=options.port, loop="uvloop", http=with_limits(options.limits), lifespan="on",
        access_log=False, log_level="warning", ssl_certfile=str(options.tls_cert) if options.tls_cert else None,
        ssl_keyfile=str(options.tls_key) if options.tls_key else None, server_header=False,
        timeout_keep_alive=options.limits.keep_alive_timeout_s,
        # X-Forwarded-For only from the proxies named; with none, the socket's peer is the client, whatever it says
        proxy_headers=bool(options.trusted_proxies), forwarded_allow_ips=list(options.trusted_proxies) or None,
        h11_max_incomplete_event_size=options.limits.max_header_bytes)
    if options.metrics_port is not None:
        prometheus_client.start_http_server(options.metrics_port, addr=options.metrics_host,
                                            registry=app.metrics_registry)
    if not quiet:
        print(summary(options, note), flush=True)
    uvicorn.Server(config).run()
    return 0


# ---- background ---------------------------------------------------------------------------------------------------

def state_path(state_dir: Path) -> Path:
    return state_dir / STATE_FILE


def read_state(state_dir: Path) -> dict | None:
    try:
        return json.loads(state_path(state_dir).read_text())
    except (OSError, ValueError):
        return None


def ready(url: str, timeout: float = 2.0) -> bool:
    context = ssl._create_unverified_context() if url.startswith("https") else None  # our own child's certificate
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=timeout, context=context) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start(options: GatewayOptions, argv: list[str]) -> int:
    existing = read_state(options.state_dir)
    if existing and pid_alive(existing["pid"]):
        raise GatewayError(f"a gateway started by `make start` is already running (pid {existing['pid']}, "
                           f"{existing['url']}): run `make stop` first")
    store, note = api_keys.resolve(options) if options.auth else (None, "")  # generate the key here, and say so
    log = options.state_dir / "gateway.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        child = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--quiet", *argv], stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    state_path(options.state_dir).write_text(json.dumps({"pid": child.pid, "url": options.url, "log": str(log)}))
    deadline = time.monotonic() + options.startup_timeout_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            state_path(options.state_dir).unlink(missing_ok=True)
            raise GatewayError(f"the gateway exited with code {child.returncode} while starting; see {log}:\n"
                               + "\n".join(log.read_text(errors="replace").splitlines()[-15:]))
        if ready(options.url):
            print(summary(options, note) + f"\n  log      {log}\nStop it with `make stop` (python -m gateway stop).")
            return 0
        time.sleep(0.2)
    stop(options.state_dir)
    raise GatewayError(f"the gateway did not become ready in {options.startup_timeout_s:g} s (is Triton up at "
                       f"{options.triton_url}?); see {log}")


def stop(state_dir: Path) -> int:
    state = read_state(state_dir)
    if state is None:
        print(f"gateway: none started by `make start` is recorded ({state_path(state_dir)} is missing)")
        return 0
    pid = state["pid"]
    if pid_alive(pid) and _is_gateway(pid):
        os.killpg(pid, signal.SIGTERM)  # uvicorn drains in-flight requests, then exits
        deadline = time.monotonic() + STOP_GRACE_S
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)
        print(f"stopped the gateway on {state['url']} (pid {pid})")
    else:
        print(f"the gateway recorded in {state_path(state_dir)} was no longer running")
    state_path(state_dir).unlink(missing_ok=True)
    return 0


def _is_gateway(pid: int) -> bool:
    """Guard against pid reuse: the recorded pid must still be a `gateway run` process."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"gateway" in argv and b"run" in argv


def status(state_dir: Path) -> int:
    state = read_state(state_dir)
    if state is None or not pid_alive(state["pid"]):
        print("gateway: not running (start it with `make start`)")
        return 1
    up = ready(state["url"])
    print(f"gateway pid {state['pid']} ({'ready' if up else 'NOT ready'}) {state['url']}  log {state['log']}")
    return 0 if up else 1

