"""Model lifecycle: which numbered versions of a Triton model are served, and under which label.

model_repository/<m>/lifecycle.json (generated, git-ignored, beside state.json) names the `stable` version and an
optional `canary` with how it gets traffic: a share of requests (at random, or sticky by a request header), or a
shadow copy of every request whose answer is only compared. Every action is appended to its history. models.toml
holds no labels: it says how many versions to keep and when to roll back (core/spec.py Rollout).

Everything that moves versions goes through this file: the export (a changed model becomes a new version, a
candidate), `python -m operate rollout` (start, promote, rollback), and the gateway (automatic rollback and
promotion). The version policy in config.pbtxt follows it (`apply_version_policy`), and serve reloads a model whose
config changed, so Triton serves exactly the versions named here. A model without the file serves its newest version.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

from core import repository
from core.errors import UserError

LIFECYCLE_FILE = "lifecycle.json"
MODES = ("canary", "shadow")
HISTORY_KEPT = 200  # actions kept in the file; the gateway's log and counters have all of them


class LifecycleError(UserError):
    """A rollout action that does not apply to the model's current state (no canary to promote, unknown version)."""


@dataclass(frozen=True)
class Lifecycle:
    stable: int
    canary: int | None = None
    mode: str = "canary"  # canary: a share of requests answered by the canary; shadow: mirrored, answered by stable
    percent: float = 0.0  # canary mode: the canary's share of requests, 0-100
    sticky: str = ""  # canary mode: a request header whose value picks the version (same value, same version)
    started: float | None = None  # unix time the canary started: its judging window counts from here
    history: tuple[dict, ...] = field(default=(), compare=False)

    @property
    def served(self) -> tuple[int, ...]:
        return tuple(sorted({self.stable} | ({self.canary} if self.canary is not None else set())))


def versions_on_disk(directory: Path) -> tuple[int, ...]:
    """The numbered version folders of a model directory, in order."""
    if not directory.is_dir():
        return ()
    return tuple(sorted(int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit()))


def read_lifecycle(directory: Path) -> Lifecycle | None:
    """The lifecycle recorded for a model directory, or None where none is (the newest version is then served)."""
    try:
        raw = json.loads((Path(directory) / LIFECYCLE_FILE).read_text(encoding="utf-8"))
        return Lifecycle(**{**raw, "history": tuple(raw.get("history", ()))})
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as e:
        raise LifecycleError(f"{Path(directory) / LIFECYCLE_FILE}: unreadable ({e}); fix or delete it (deleting it "
                             f"serves the newest version)") from None


def current(directory: Path) -> Lifecycle | None:
    """The lifecycle in effect: the file's, else stable = the newest version on disk; None for a model with none."""
    recorded = read_lifecycle(directory)
    if recorded is not None:
        return recorded
    versions = versions_on_disk(directory)
    return Lifecycle(stable=versions[-1]) if versions else None


def write_lifecycle(lifecycle: Lifecycle, directory: Path) -> None:
    """Replace the file atomically: readers (the gateway polls it) never see half of it."""
    directory.mkdir(parents=True, exist_ok=True)
    record = {**asdict(lifecycle), "history": list(lifecycle.history[-HISTORY_KEPT:])}
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".lifecycle-", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, directory / LIFECYCLE_FILE)


@contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold the model's lifecycle lock: actions (update) and the export's swap of the repository wait for it."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lifecycle.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def update(directory: Path, change: Callable[[Lifecycle | None], Lifecycle]) -> Lifecycle:
    """Read, change and write the lifecycle under a lock (the CLI and the gateway may act at the same moment), then
    make config.pbtxt's version policy follow it."""
    with locked(directory):
        lifecycle = change(current(directory))
        write_lifecycle(lifecycle, directory)
        apply_version_policy(directory, lifecycle)
        apply_step_versions(directory)
    return lifecycle


def _entry(action: str, version: int | None, by: str, reason: str, **extra) -> dict:
    return {"time": round(time.time(), 3), "action": action, "version": version, "by": by, "reason": reason, **extra}


def start(lifecycle: Lifecycle | None, version: int, on_disk: tuple[int, ...], mode: str = "canary",
          percent: float = 10.0, sticky: str = "", by: str = "cli", reason: str = "") -> Lifecycle:
    if lifecycle is None:
        raise LifecycleError("the model has no exported version; run `make export` first")
    if version not in on_disk:
        raise LifecycleError(f"version {version} is not on disk (versions: {', '.join(map(str, on_disk))}); "
                             f"`make export` writes a changed model as a new version")
    if version == lifecycle.stable:
        raise LifecycleError(f"version {version} is already stable; export a changed model to get a candidate")
    if lifecycle.canary is not None:
        raise LifecycleError(f"version {lifecycle.canary} is already the canary ({lifecycle.mode}); promote or roll "
                             f"it back first")
    if mode not in MODES:
        raise LifecycleError(f"mode {mode!r}: use one of {', '.join(MODES)}")
    if mode == "canary" and not 0 < percent <= 100:
        raise LifecycleError(f"--percent {percent}: a share between 0 (excluded) and 100")
    return replace(lifecycle, canary=version, mode=mode, percent=float(percent) if mode == "canary" else 0.0,
                   sticky=sticky if mode == "canary" else "", started=time.time(),
                   history=lifecycle.history + (_entry("start", version, by, reason, mode=mode, percent=percent,
                                                       sticky=sticky),))


def promote(lifecycle: Lifecycle | None, by: str = "cli", reason: str = "", version: int | None = None,
            on_disk: tuple[int, ...] = ()) -> Lifecycle:
    """The canary becomes stable; with `version`, that version does directly (no canary running)."""
    if lifecycle is None:
        raise LifecycleError("the model has no exported version; run `make export` first")
    target = lifecycle.canary if version is None else version
    if target is None:
        raise LifecycleError("there is no canary to promote; `rollout start` one, or name a version to promote")
    if version is not None and version not in on_disk:
        raise LifecycleError(f"version {version} is not on disk (versions: {', '.join(map(str, on_disk))})")
    if lifecycle.canary is not None and target != lifecycle.canary:
        raise LifecycleError(f"version {lifecycle.canary} is the canary; promote or roll it back first")
    return Lifecycle(stable=target, history=lifecycle.history + (_entry("promote", target, by, reason,
                                                                        previous=lifecycle.stable),))


def rollback(lifecycle: Lifecycle | None, by: str = "cli", reason: str = "") -> Lifecycle:
    """The canary stops getting traffic; stable stays. Without a canary, stable goes back to the version it
    replaced (the last promotion's `previous`)."""
    if lifecycle is None:
        raise LifecycleError("the model has no exported version; run `make export` first")
    if lifecycle.canary is not None:
        return Lifecycle(stable=lifecycle.stable, history=lifecycle.history + (
            _entry("rollback", lifecycle.canary, by, reason),))
    promotions = [h for h in lifecycle.history if h.get("action") == "promote" and h.get("version") == lifecycle.stable]
    if not promotions or promotions[-1].get("previous") is None:
        raise LifecycleError(f"there is no canary, and version {lifecycle.stable} replaced no earlier version: "
                             f"nothing to roll back to")
    previous = int(promotions[-1]["previous"])
    return Lifecycle(stable=previous, history=lifecycle.history + (
        _entry("rollback", lifecycle.stable, by, reason, to=previous),))


def version_policy(config, lifecycle: Lifecycle | None, on_disk: tuple[int, ...]) -> None:
    """Set a ModelConfig's version_policy: `latest 1` while that is what the lifecycle serves (so a model with one
    version keeps the config it always had), else `specific` with the stable and canary versions."""
    config.ClearField("version_policy")
    if lifecycle is None or (on_disk and lifecycle.served == (on_disk[-1],)):
        config.version_policy.latest.num_versions = 1
    else:
        config.version_policy.specific.versions.extend(lifecycle.served)


def apply_version_policy(directory: Path, lifecycle: Lifecycle | None = None) -> bool:
    """Rewrite config.pbtxt's version policy from the lifecycle; True when the file changed (serve then reloads it)."""
    path = directory / "config.pbtxt"
    if not path.is_file():
        return False
    old = path.read_text(encoding="utf-8")
    config = repository.parse(old)
    version_policy(config, lifecycle if lifecycle is not None else read_lifecycle(directory),
                   versions_on_disk(directory))
    new = repository.render(config)
    if new == old:
        return False
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".config-", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(new)
    os.replace(tmp, path)
    return True


def step_version(directory: Path) -> int:
    """The version an ensemble's step names for the model in `directory`: -1 (Triton's newest served) while the model
    serves its newest version alone, else its stable version. A canary or shadow beside stable would otherwise be
    the newest served, and every request through the ensemble would go to it."""
    lifecycle = read_lifecycle(directory)
    on_disk = versions_on_disk(directory)
    if lifecycle is None or (on_disk and lifecycle.served == (on_disk[-1],)):
        return -1
    return lifecycle.stable


def pin_steps(config, repository_dir: Path) -> None:
    """Set an ensemble ModelConfig's step versions from its step models' lifecycles (`step_version`)."""
    for s in config.ensemble_scheduling.step:
        s.model_version = step_version(Path(repository_dir) / s.model_name)


def apply_step_versions(directory: Path) -> list[str]:
    """Rewrite the configs of the ensembles beside `directory` that have a step running its model; the names of
    those whose config changed (serve reloads them)."""
    changed = []
    for path in sorted(Path(directory).parent.glob("*/config.pbtxt")):
        try:
            old = path.read_text(encoding="utf-8")
        except OSError:
            continue
        if "ensemble_scheduling" not in old:
            continue
        config = repository.parse(old)
        if not any(s.model_name == Path(directory).name for s in config.ensemble_scheduling.step):
            continue
        pin_steps(config, path.parent.parent)
        new = repository.render(config)
        if new != old:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(new)
            os.replace(tmp, path)
            changed.append(path.parent.name)
    return changed
