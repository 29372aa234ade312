"""`python -m operate rollout start|status|promote|rollback MODEL`: move a model's numbered versions between stable
and canary (core/lifecycle.py), and show how each version does.

An action rewrites model_repository/<model>/lifecycle.json and the version policy in its config.pbtxt under the
model's lock; the running server's supervisor sees the config change and reloads the model in Triton (serve/
supervisor.py), and the gateway routes by the new labels within a second. `status` prints what is on disk, and the
live figures per version from the gateway's `GET /v1/rollouts/{model}` when it answers.
"""

from __future__ import annotations

import datetime
import json
import urllib.error
import urllib.request
from pathlib import Path

from core import lifecycle, repository
from core.lifecycle import Lifecycle, LifecycleError
from core.state import read_state

DEFAULT_GATEWAY = "http://127.0.0.1:8080"
KEY_ENV = "MODELPORT_GATEWAY_KEY"
DEFAULT_PERCENT = 10.0
HISTORY_SHOWN = 10
LIVE_COLUMNS = ("requests", "errors", "error_rate", "p50_ms", "p99_ms", "psi", "compared", "disagreement", "judged",
                "accuracy")


def model_directory(repo: Path, model: str) -> Path:
    """The model's directory, once it is known to be a versioned model with an exported version."""
    if not repo.is_dir():
        raise LifecycleError(f"--repository {repo}: no such directory; pass the model repository `make export` wrote")
    directory = repo / model
    config_path = directory / "config.pbtxt"
    if not config_path.is_file():
        versioned = sorted(p.parent.name for p in repo.glob("*/config.pbtxt") if _versioned(p.parent))
        raise LifecycleError(f"model {model!r} is not in {repo}; models with versions: {', '.join(versioned) or 'none'}")
    config = repository.parse(config_path.read_text(encoding="utf-8"))
    if config.platform == "ensemble" or config.backend == "python":
        kind = "an ensemble" if config.platform == "ensemble" else "a python model"
        raise LifecycleError(f"{model} is {kind}: only exported ONNX models have versions to roll out; roll out the "
                             f"ONNX model it calls instead")
    if not lifecycle.versions_on_disk(directory):
        raise LifecycleError(f"{model} has no exported version in {directory}; run `make export` first")
    return directory


def _versioned(directory: Path) -> bool:
    try:
        config = repository.parse((directory / "config.pbtxt").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return config.platform != "ensemble" and config.backend != "python"


def ensembles_calling(repo: Path, model: str) -> list[str]:
    """The ensembles in the repository with a step that runs `model`."""
    found = []
    for path in sorted(repo.glob("*/config.pbtxt")):
        try:
            config = repository.parse(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if config.platform == "ensemble" and any(s.model_name == model for s in config.ensemble_scheduling.step):
            found.append(config.name)
    return found


def start(repo: Path, model: str, version: int | None = None, percent: float | None = None, shadow: bool = False,
          sticky: str = "", reason: str = "") -> Lifecycle:
    directory = model_directory(repo, model)
    if shadow and (percent is not None or sticky):
        raise LifecycleError("--shadow mirrors every request and answers from stable: leave out --percent and --sticky")
    on_disk = lifecycle.versions_on_disk(directory)
    chosen = on_disk[-1] if version is None else version
    return lifecycle.update(directory, lambda lc: lifecycle.start(
        lc, chosen, on_disk, mode="shadow" if shadow else "canary",
        percent=DEFAULT_PERCENT if percent is None else percent, sticky=sticky, reason=reason))


def promote(repo: Path, model: str, version: int | None = None, reason: str = "") -> Lifecycle:
    directory = model_directory(repo, model)
    on_disk = lifecycle.versions_on_disk(directory)
    return lifecycle.update(directory, lambda lc: lifecycle.promote(lc, reason=reason, version=version,
                                                                   on_disk=on_disk))


def rollback(repo: Path, model: str, reason: str = "") -> Lifecycle:
    return lifecycle.update(model_directory(repo, model), lambda lc: lifecycle.rollback(lc, reason=reason))


def summary(model: str, lc: Lifecycle) -> str:
    """One line: what serves the model now."""
    if lc.canary is None:
        return f"{model}: stable version {lc.stable}, no canary"
    how = (f"shadow: every request mirrored to it, answers from stable" if lc.mode == "shadow" else
           f"canary: {lc.percent:g} % of requests" + (f", sticky by header {lc.sticky!r}" if lc.sticky else ""))
    return f"{model}: stable version {lc.stable}, canary version {lc.canary} ({how})"


def action_line(action: str, model: str, lc: Lifecycle, ensembles: list[str] = ()) -> str:
    last = lc.history[-1] if lc.history else {}
    done = {"start": f"started version {last.get('version')}", "promote": f"promoted version {last.get('version')}",
            "rollback": f"rolled back version {last.get('version')}"}[action]
    line = (f"rollout: {model}: {done}. {summary(model, lc)}; Triton serves version(s) "
            f"{', '.join(map(str, lc.served))} once the running server reloads the model (within about a second)")
    if ensembles and lc.canary is not None:
        # core/lifecycle.py pins the ensemble's step to stable: the canary sees only requests that name the model
        line += (f". Requests through the ensemble {', '.join(ensembles)} stay on version {lc.stable}; only "
                 f"requests to {model} itself are split")
    return line


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _figure(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(header: tuple[str, ...], rows: list[tuple]) -> str:
    cells = [tuple(map(str, header))] + [tuple(_figure(v) for v in row) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def label(lc: Lifecycle, version: int) -> str:
    if version == lc.stable:
        return "stable"
    if version == lc.canary:
        return lc.mode  # canary or shadow
    return "candidate" if version > lc.stable else "old"


def describe(repo: Path, model: str) -> str:
    """The lifecycle as the repository holds it: labels, versions on disk with their export figures, history."""
    directory = model_directory(repo, model)
    lc = lifecycle.current(directory)
    records = read_state(directory).versions
    lines = [summary(model, lc) + (f", started {_when(lc.started)}" if lc.canary is not None else "")]
    lines.append("versions on disk:")
    lines.append(table(("version", "label", "held-out accuracy", "exported"),
                       [(v, label(lc, v), records.get(str(v), {}).get("accuracy"),
                         records.get(str(v), {}).get("exported")) for v in lifecycle.versions_on_disk(directory)]))
    history = list(lc.history[-HISTORY_SHOWN:])
    lines.append(f"history (last {len(history)} of {len(lc.history)}):" if history else "history: no actions yet")
    for h in history:
        extra = ", ".join(f"{k} {h[k]}" for k in ("mode", "percent", "sticky", "previous", "to") if h.get(k))
        lines.append(f"  {_when(h.get('time'))}  {h.get('action')} version {h.get('version')} by {h.get('by')}"
                     + (f" ({extra})" if extra else "") + (f": {h['reason']}" if h.get("reason") else ""))
    return "\n".join(lines)


def fetch_live(gateway: str, model: str, key: str, timeout: float = 5.0) -> dict:
    """The gateway's rollout report; LifecycleError saying why there is none."""
    url = f"{gateway.rstrip('/')}/v1/rollouts/{model}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        detail = error.read()[:300].decode(errors="replace")
        fix = {401: f"pass an admin key with --key or ${KEY_ENV}", 403: "the key needs the admin scope",
               404: "the gateway does not know this model or has no rollouts endpoint"}.get(error.code, "")
        raise LifecycleError(f"{url} answered HTTP {error.code}{': ' + fix if fix else ''} ({detail})") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise LifecycleError(f"could not reach the gateway at {url} ({reason}); start it with `make gateway` or pass "
                             f"--gateway URL") from None


def live_table(report: dict) -> str:
    versions = report.get("versions") or {}
    rows = [(v, r.get("label"), *(r.get(c) for c in LIVE_COLUMNS))
            for v, r in sorted(versions.items(), key=lambda item: int(item[0]) if str(item[0]).isdigit() else 0)]
    return table(("version", "label", *LIVE_COLUMNS), rows) if rows else "  no requests recorded yet"
