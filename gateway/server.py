"""Run the gateway (uvicorn, uvloop, the header-timeout protocol, TLS when given), or start it in the background
and stop it again: the record in <state dir>/gateway.json says which process `stop` stops."""

from __future__ import annotations

import functools
import json
import signal
import sys
from pathlib import Path

import prometheus_client
import uvicorn

from core import process
from core.errors import ServerError
from core.spec import load_spec
from gateway import keys as api_keys
from gateway.app import create_app
from gateway.options import GatewayOptions
from gateway.protocol import with_limits

STATE_FILE = "gateway.json"
COMMAND = ("gateway", "run")  # what the recorded pid's command line holds while it is ours (pid reuse)
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
    return process.answers(f"{url}/readyz", timeout)


def start(options: GatewayOptions, argv: list[str]) -> int:
    existing = read_state(options.state_dir)
    if existing and process.running(existing["pid"], *COMMAND):
        raise GatewayError(f"a gateway started by `make start` is already running (pid {existing['pid']}, "
                           f"{existing['url']}): run `make stop` first")
    store, note = api_keys.resolve(options) if options.auth else (None, "")  # generate the key here, and say so
    log = options.state_dir / "gateway.log"
    child = process.Child("the gateway", [sys.executable, "-m", "gateway", "run", "--quiet", *argv], log,
                          functools.partial(ready, options.url), keep_log=True, grace_s=STOP_GRACE_S)
    try:
        process.start(child, options.startup_timeout_s, attempts=1)
    except process.StartFailed as failure:
        if failure.exit_code is None:
            raise GatewayError(f"the gateway did not become ready in {options.startup_timeout_s:g} s (is Triton up "
                               f"at {options.triton_url}?); see {log}") from None
        raise GatewayError(f"the gateway exited with code {failure.exit_code} while starting; see {log}:\n"
                           + child.output(15)) from None
    child.detach()
    state_path(options.state_dir).write_text(json.dumps({"pid": child.pid, "url": options.url, "log": str(log)}))
    print(summary(options, note) + f"\n  log      {log}\nStop it with `make stop` (python -m gateway stop).")
    return 0


def stop(state_dir: Path) -> int:
    state = read_state(state_dir)
    if state is None:
        print(f"gateway: none started by `make start` is recorded ({state_path(state_dir)} is missing)")
        return 0
    pid = state["pid"]
    if process.running(pid, *COMMAND):
        process.stop_group(pid, signal.SIGTERM, STOP_GRACE_S)  # uvicorn drains in-flight requests, then exits
        print(f"stopped the gateway on {state['url']} (pid {pid})")
    else:
        print(f"the gateway recorded in {state_path(state_dir)} was no longer running")
    state_path(state_dir).unlink(missing_ok=True)
    return 0


def status(state_dir: Path) -> int:
    state = read_state(state_dir)
    if state is None or not process.running(state["pid"], *COMMAND):
        print("gateway: not running (start it with `make start`)")
        return 1
    up = ready(state["url"])
    print(f"gateway pid {state['pid']} ({'ready' if up else 'NOT ready'}) {state['url']}  log {state['log']}")
    return 0 if up else 1

