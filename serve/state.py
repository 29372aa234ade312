"""The record `serve start` leaves under .cache/serve/ so that `stop` and `status` act on that server and no other."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

STATE_FILE = "server.json"
# What the recorded pid's command line holds while it is still our server (core.process.running: pid reuse).
COMMAND = ("serve", "run")


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
