"""The four commands: run (foreground, supervised), start (background, waits for readiness), stop, status."""
from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from pathlib import Path

from core import process as core_process
from core.errors import NotRunningError, PortInUseError, ServerStartError, UserError
from core.triton import ADMIN_KEY_ENV, ServeOptions, redact, serve_command, shm_prefix, tritonserver_argv
from core import repository_scan, triton_http, triton_install, triton_process
from serve.metrics import SupervisorMetrics
from core.triton_process import TritonProcess
from serve.security import admin_key_exposure
from serve.state import COMMAND, ServerState, read_state, remove_state, state_path, write_state
from serve.supervisor import EventLog, Supervisor

STOP_GRACE_S = 10.0


def events_path(options: ServeOptions) -> Path:
    return options.log_file.with_name(options.log_file.stem + ".events.log")


def preflight(options: ServeOptions) -> tuple[triton_install.Runtime, list[str]]:
    """Everything that can fail with a clear message before Triton starts."""
    found = triton_install.locate(options.build_dir)
    models = [model.name for model in repository_scan.scan(options.repository)]
    triton_process.check_ports_free(options)
    return found, models


def summary(options: ServeOptions, models: list[str], seconds: float) -> str:
    return (
        f"Triton ready in {seconds:.1f} s with {len(models)} models: {', '.join(models)}\n"
        f"  HTTP     http://{options.http_url}\n"
        f"  gRPC     {options.grpc_url}\n"
        f"  metrics  http://{options.metrics_url}/metrics\n"
        f"  log      {options.log_file}\n"
        f"  events   {events_path(options)}"
    )


def run(options: ServeOptions, admin_key_source: str, background: bool = False) -> int:
    """Serve until Ctrl-C / SIGTERM. In background mode (child of `start`) also keep the state record."""
    log = EventLog(events_path(options), echo=not background)
    found, models = preflight(options)
    tag = f"{os.getpid()}_{secrets.token_hex(3)}"
    triton = TritonProcess(
        tritonserver_argv(options, found, tag), found.environment(), options, shm_prefix(tag)
    )
    started = threading.Event()
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()
        if not started.is_set():
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    def record(status: str, seconds: float | None = None) -> None:
        if background:
            write_state(options.state_dir, ServerState(
                pid=os.getpid(), status=status, http_url=options.http_url, grpc_url=options.grpc_url,
                metrics_url=options.metrics_url, log_file=str(options.log_file), events_log=str(events_path(options)),
                repository=str(options.repository), triton_pid=triton.pid, shm_prefix=triton.shm_prefix,
                models=tuple(models), startup_s=seconds,
            ))

    metrics = SupervisorMetrics(models)
    if options.supervisor_metrics_port:
        try:
            metrics.serve(options.address, options.supervisor_metrics_port)
        except OSError as error:
            raise PortInUseError(
                f"the supervisor's metrics port {options.supervisor_metrics_port} on {options.address} is already in "
                f"use ({error.strerror}): choose another with --supervisor-metrics-port N, or 0 for none"
            ) from None
        log(f"supervisor metrics on http://{options.url_host}:{options.supervisor_metrics_port}/metrics")
    supervisor = Supervisor(options, triton, models, log, on_start=lambda t: record("ready"), metrics=metrics)
    log(f"starting Triton on {options.address} (repository {options.repository}, admin key from {admin_key_source})")
    log(f"command: {' '.join(redact(triton.argv, options.admin_key))}")
    exposure = admin_key_exposure()
    if exposure:
        log(f"warning: {exposure}")
    try:
        seconds = supervisor.start_first(stop)
        record("ready", seconds)
        started.set()
        log(summary(options, models, seconds))
        if not background:
            log("press Ctrl-C to stop")
        supervisor.serve(stop)
    except KeyboardInterrupt:
        triton.stop()
    except BaseException:
        triton.stop()
        raise
    finally:
        metrics.close()
        if background:
            remove_state(options.state_dir, os.getpid())
    log("Triton stopped")
    return 0


def start(options: ServeOptions, admin_key_source: str) -> int:
    existing = read_state(options.state_dir)
    if existing is not None and core_process.running(existing.pid, *COMMAND):
        raise UserError(
            f"a server started by `make start` is already running (pid {existing.pid}, http://{existing.http_url}): "
            "run `make stop` first"
        )
    preflight(options)  # fail here, in the foreground, with the clear message
    events = events_path(options)

    def recorded_ready() -> bool:
        state = read_state(options.state_dir)
        return state is not None and state.pid == child.pid and state.status == "ready"

    child = core_process.Child(
        "the background server", [*serve_command(options), "--background"], events,
        recorded_ready, dict(os.environ, **{ADMIN_KEY_ENV: options.admin_key}), keep_log=True,
    )
    try:
        core_process.start(child, options.startup_timeout_s * triton_process.START_ATTEMPTS + 10, attempts=1)
    except core_process.StartFailed as failure:
        if failure.exit_code is None:
            raise ServerStartError(f"the background server did not become ready in time; see {events} and "
                                   f"{options.log_file}") from None
        raise ServerStartError(f"the background server exited (code {failure.exit_code}):\n"
                               f"{child.output(1000)[-4000:]}") from None
    child.detach()
    state = read_state(options.state_dir)
    print(summary(options, list(state.models), state.startup_s or 0.0))
    print(f"  admin key from {admin_key_source}\nStop it with `make stop` (python -m serve stop).")
    exposure = admin_key_exposure()
    if exposure:
        print(f"  warning: {exposure}")
    return 0


def stop_process(pid: int | None, triton_pid: int | None, shm_prefix: str) -> None:
    """SIGTERM the supervisor (it stops Triton fast); if anything is left, SIGKILL Triton's group and clean up."""
    if pid is not None:
        core_process.stop_group(pid, signal.SIGTERM, STOP_GRACE_S)
    if triton_pid is not None and core_process.running(triton_pid, "tritonserver"):
        core_process.signal_group(triton_pid, signal.SIGKILL)
    if shm_prefix:
        triton_process.clean_shm(shm_prefix)


def stop(state_dir: Path) -> int:
    state = read_state(state_dir)
    if state is None:
        raise NotRunningError(f"no server started by `make start` is recorded ({state_path(state_dir)} is missing)")
    began = time.monotonic()
    if core_process.running(state.pid, *COMMAND):
        stop_process(state.pid, state.triton_pid, state.shm_prefix)
        print(f"stopped the server on http://{state.http_url} (pid {state.pid}) in {time.monotonic() - began:.1f} s")
    else:
        # The supervisor is gone; its Triton may not be (for example after a kill -9 of the supervisor).
        stop_process(None, state.triton_pid, state.shm_prefix)
        print(f"the server recorded in {state_path(state_dir)} was no longer running; cleaned up its leftovers")
    state_path(state_dir).unlink(missing_ok=True)
    return 0


def status(state_dir: Path) -> int:
    state = read_state(state_dir)
    if state is None or not core_process.running(state.pid, *COMMAND):
        raise NotRunningError("no server started by `make start` is running: start one with `make start`")
    ready = triton_http.ready(state.http_url)
    print(f"server pid {state.pid} ({'ready' if ready else 'NOT ready'}) http://{state.http_url}  grpc {state.grpc_url}  "
          f"metrics http://{state.metrics_url}/metrics")
    for model in state.models:
        print(f"  {model:28s} {'READY' if triton_http.ready(state.http_url, model) else 'NOT READY'}")
    print(f"  log {state.log_file}\n  events {state.events_log}")
    return 0 if ready else 1
