"""The record `serve start` leaves under .cache/serve/ so that `stop` and `status` act on that server and no other."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from serve.supervisor import read_stat

STATE_FILE = "server.json"


@dataclasses.dataclass(frozen=True)
class ServerState:
    pid: int  # the background `python -m serve run` process
    status: str  # "starting" or "ready"
    http_url: str
    grpc_url: str
    metrics_url: str
    log_file: str
    events_log: str
    repository: str
    triton_pid: int | None = None
    shm_prefix: str = ""
    models: tuple[str, ...] = ()
    startup_s: float | None = None


def state_path(state_dir: Path) -> Path:
    return state_dir / STATE_FILE


def write_state(state_dir: Path, state: ServerState) -> None:
    path = state_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(state), indent=2))
    tmp.replace(path)


def read_state(state_dir: Path) -> ServerState | None:
    try:
        data = json.loads(state_path(state_dir).read_text())
        data["models"] = tuple(data.get("models", ()))
        return ServerState(**data)
    except (OSError, ValueError, TypeError):
        return None


def remove_state(state_dir: Path, pid: int) -> None:
    """Remove the record only if it is still the given process's (a newer start may have replaced it)."""
    state = read_state(state_dir)
    if state is not None and state.pid == pid:
        state_path(state_dir).unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = read_stat(pid)
    return stat is not None and stat[1] != "Z"


def is_our_server(pid: int) -> bool:
    """Guard against pid reuse: the recorded pid must still be a `serve run` process."""
    if not pid_alive(pid):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"serve" in argv and b"run" in argv
