"""Routing by label: which version of a model answers a request, and which one it is mirrored to.

Each served model's lifecycle (core/lifecycle.py: model_repository/<m>/lifecycle.json, or its newest version without
one) is read again when the file, its state.json or the model folder changes (their mtimes, checked once a second in
the background); a request reads only memory. A request names the version that answers it, so Triton's own policy
(the newest loaded version) never decides:

- no canary: stable answers;
- canary mode: `percent` % of requests at random, or by a hash of the `sticky` header's value (the same value always
  lands on the same version; a request without the header is routed at random), go to the canary; each of those is
  also mirrored to stable, and the two top-1 answers compared;
- shadow mode: stable answers, and the request is mirrored to the candidate and compared.

Mirrors run in the background after the answer is sent on its way, at most `mirror_max_in_flight` per model: beyond
that they are dropped and counted (`modelport_gateway_shadow_dropped_total`), so a slow candidate never slows or
queues stable's traffic. A new candidate gets requests only once Triton serves it (its metadata answers; checked
once a second). A canary call that fails is answered by stable instead: counted as the canary's error when the
canary failed, as `unavailable` when Triton no longer serves the version (rolled back and unloaded); a stable version
Triton does not serve (a reload under way) is answered by the version Triton picks. Every call is recorded in the
version's window (gateway/rollout.py), which the judge reads once a second for a model with a canary.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge

import modelport
from core import lifecycle as lifecycles
from core.lifecycle import LIFECYCLE_FILE, Lifecycle, LifecycleError
from core.spec import ROLLOUT_FIELDS, Rollout
from core.state import STATE_FILE, read_state
from gateway import problems
from gateway.backend import TritonBackend
from gateway.catalogue import Endpoint
from gateway.quality import DriftMonitor
from gateway.rollout import Figures, VersionWindow, act, judge

_log = logging.getLogger("modelport.gateway")
POLL_S = 1.0
HISTORY_SHOWN = 20
TRITON_CHOOSES = "unknown"  # the version that answered a request naming none (only on a fallback)
STICKY_BUCKETS = 10_000  # a sticky value's hash picks one of these; the first percent x 100 go to the canary


@dataclass(frozen=True)
class Route:
    version: Optional[str]  # the version asked to answer; None: Triton's choice (the model has no numbered version)
    mirror: Optional[str] = None  # the version the request is also sent to, to compare answers
    canary: bool = False  # the canary answers: a failure falls back to stable


def sticky_share(value: str) -> float:
    """Where a sticky header's value falls in 0..100: the same on every gateway replica (crc32, not hash())."""
    return (zlib.crc32(value.encode("utf-8", "surrogateescape")) % STICKY_BUCKETS) * 100 / STICKY_BUCKETS


def top1(outputs: list, output: str) -> Optional[list]:
    labels = []
    for item in outputs:
        value = item.get(output)
        if not isinstance(value, modelport.Prediction):
            return None
        labels.append(value.label)
    return labels


class ModelRouting:
    """One Triton model: its lifecycle as last read, the route for stable traffic, and its versions' windows."""

    def __init__(self, endpoint: Endpoint, directory: Path, reference: Mapping[str, float], compared: Optional[str],
                 drift_window: int, drift_min_samples: int):
        self.name = endpoint.name
        self.directory = directory
        self.limits: Optional[Rollout] = endpoint.spec.rollout
        self.window_s = (self.limits or Rollout(endpoint.name)).window_seconds
        self.compared_output = compared  # the labelled output whose top-1 is compared and drift-monitored
        self.reference = dict(reference)  # the model's drift reference for that output; a version may have its own
        self.version_references: dict[str, dict[str, float]] = {}
        self.drift = (drift_window, drift_min_samples)
        self.lifecycle: Optional[Lifecycle] = None
        self.stamp: object = ()
        self.stable_route = Route(None)
        self.windows: dict[str, VersionWindow] = {}
        self.call_counters: dict[tuple[str, str], object] = {}
        self.monitors: dict[str, DriftMonitor] = {}
        self.mirrors_in_flight = 0
        self.last_seen: Optional[dict] = None  # the newest history entry counted (or there at start)
        self.acting = False
        self.refused: object = None  # (canary, started) whose automatic action failed: not retried every second
        self.ready: Optional[str] = None  # the candidate version Triton was seen serving; routed to only then

    @property
    def canary(self) -> Optional[str]:
        return str(self.lifecycle.canary) if self.lifecycle is not None and self.lifecycle.canary is not None \
            else None

    def route(self, headers) -> Route:
        lifecycle = self.lifecycle
        if lifecycle is None or lifecycle.canary is None:
            return self.stable_route
        canary = str(lifecycle.canary)
        if canary != self.ready:  # Triton is still loading it (serve reloads the model when a rollout starts)
            return self.stable_route
        if lifecycle.mode == "shadow":
            return Route(self.stable_route.version, mirror=canary)
        value = headers.get(lifecycle.sticky) if lifecycle.sticky else None
        share = sticky_share(value) if value is not None else random.random() * 100
        if share < lifecycle.percent:
            return Route(canary, mirror=self.stable_route.version, canary=True)
        return self.stable_route

    def window(self, version: str) -> VersionWindow:
        found = self.windows.get(version)
        if found is None:
            found = self.windows[version] = VersionWindow(self.window_s)
        return found

    def observe(self, version: str, outputs: list) -> None:
        """The answer's top-1 labels, to the version's own drift monitor."""
        if self.compared_output is None:
            return
        monitor = self.monitors.get(version)
        if monitor is None:
            shares = self.version_references.get(version) or self.reference
            if not shares:
                return
            monitor = self.monitors[version] = DriftMonitor(shares, *self.drift)
        for item in outputs:
            value = item.get(self.compared_output)
            if isinstance(value, modelport.Prediction):
                monitor.observe(value.label)

    def psi(self, version: str) -> Optional[float]:
        monitor = self.monitors.get(version)
        value = monitor.value() if monitor is not None else math.nan
        return None if math.isnan(value) else round(value, 4)

    def read(self) -> Optional[tuple[Optional[Lifecycle], list[dict]]]:
        """Read the lifecycle again when its file or the model's folder changed: (lifecycle, new history entries),
        or None when nothing changed."""
        stamp = (_stamp(self.directory / LIFECYCLE_FILE), _stamp(self.directory), _stamp(self.directory / STATE_FILE))
        if stamp == self.stamp:
            return None
        first = self.stamp == ()
        self.stamp = stamp
        lifecycle = lifecycles.current(self.directory)
        references = _version_references(self.directory, self.compared_output)
        if references != self.version_references:  # a new export: drift is measured against the new references
            self.version_references = references
            self.monitors.clear()
        previous = self.lifecycle
        if lifecycle is None or previous is None or (lifecycle.canary, lifecycle.started) != (previous.canary,
                                                                                               previous.started):
            self.ready = None  # a new rollout: its candidate gets traffic once Triton is seen serving it
            if lifecycle is not None and lifecycle.canary is not None:
                # judged on its own calls since it started: not on an earlier rollout's within the same slot
                self.windows[str(lifecycle.canary)] = VersionWindow(self.window_s)
        self.lifecycle = lifecycle
        self.stable_route = Route(str(lifecycle.stable) if lifecycle is not None else None)
        history = list(lifecycle.history) if lifecycle is not None else []
        new = [] if first else _after(history, self.last_seen)
        if history:
            self.last_seen = history[-1]
        return lifecycle, new


def _after(history: list[dict], last_seen: Optional[dict]) -> list[dict]:
    """The entries appended since `last_seen` (the history only grows at its end; the file keeps its last 200)."""
    if last_seen is None:
        return history
    for i in range(len(history) - 1, -1, -1):
        if history[i] == last_seen:
            return history[i + 1:]
    # rewritten by hand: the entries not older than the last one seen
    return [h for h in history if float(h.get("time", 0)) >= float(last_seen.get("time", 0))]


def _stamp(path: Path) -> Optional[tuple[int, int, int]]:
    """A file's mtime, inode and size: writers replace the file (a new inode), so two writes within one tick of the
    file system's clock still differ."""
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_mtime_ns, found.st_ino, found.st_size


def _version_references(directory: Path, output: Optional[str]) -> dict[str, dict[str, float]]:
    """state.json `versions`: {"N": {"reference_predictions": {output: {"shares": ...}}}}, per version, if the export
    recorded them; a version without its own is compared with the model's reference."""
    if output is None:
        return {}
    versions = read_state(directory).versions  # an unreadable state.json reads as empty
    if not isinstance(versions, dict):
        return {}
    references = {}
    for version, figures in versions.items():
        try:
            references[str(version)] = figures["reference_predictions"][output]["shares"]
        except (TypeError, KeyError):
            continue  # a version recorded without this output's reference
    return references


class Routing:
    def __init__(self, endpoints: Mapping[str, Endpoint], repository: Path, backend: TritonBackend,
                 registry: CollectorRegistry, references: Mapping[str, Mapping[str, Mapping[str, float]]],
                 drift_window: int, drift_min_samples: int, mirror_max_in_flight: int):
        self.backend = backend
        self.mirror_max_in_flight = mirror_max_in_flight
        self.models: dict[str, ModelRouting] = {}
        for name, endpoint in endpoints.items():
            labelled = [t.name for t in endpoint.outputs if t.labels]
            output = labelled[0] if labelled else None
            reference = references.get(name, {}).get(output, {}) if output else {}
            self.models[name] = ModelRouting(endpoint, repository / name, reference, output, drift_window,
                                             drift_min_samples)
        self._tasks: set[asyncio.Task] = set()
        r = registry
        self.compared = Counter("modelport_gateway_shadow_compared_total",
                                "Requests whose top-1 answers of the candidate (canary or shadow) and stable were "
                                "compared, by model and candidate version", ["model", "version"], registry=r)
        self.disagreed = Counter("modelport_gateway_shadow_disagreed_total",
                                 "Compared requests where the candidate's top-1 differed from stable's",
                                 ["model", "version"], registry=r)
        self.calls = Counter("modelport_gateway_version_calls_total",
                             "Calls to each version, answered or mirrored: ok, error (the version failed; a canary's "
                             "failed request is answered by stable) or unavailable (Triton did not serve it then)",
                             ["model", "version", "result"], registry=r)
        self.dropped = Counter("modelport_gateway_shadow_dropped_total",
                               "Mirrored requests dropped: the model's mirrors in flight were at the bound",
                               ["model", "version"], registry=r)
        self.actions = Counter("modelport_gateway_rollout_actions_total",
                               "Lifecycle actions seen in the models' lifecycle history (CLI or automatic)",
                               ["model", "action", "by"], registry=r)
        self.canary_percent = Gauge("modelport_gateway_rollout_canary_percent",
                                    "The canary's share of requests (0 in shadow mode), while one runs",
                                    ["model", "version"], registry=r)
        self.stable_version = Gauge("modelport_gateway_rollout_stable_version", "The stable version of each model",
                                    ["model"], registry=r)
        self._canary_series: dict[str, str] = {}
        for model in self.models.values():
            self.refresh(model)

    # ---- the request path --------------------------------------------------------------------------------------

    def route(self, model: str, headers) -> Route:
        return self.models[model].route(headers)

    def stable(self, model: str) -> Optional[str]:
        """The stable version of a served model (what explanations use), None for one the gateway does not route."""
        routing = self.models.get(model)
        return routing.stable_route.version if routing is not None else None

    async def predict(self, endpoint: Endpoint, arrays, top: Optional[int], route: Route) -> tuple[list, str]:
        """The answer of the routed version, and which version gave it."""
        model = self.models[endpoint.name]
        if not route.canary:
            outputs, version = await self._stable(model, route.version, arrays, top)
            if route.mirror is not None:
                self._mirror(model, route.mirror, arrays, top, outputs, candidate=route.mirror)
            return outputs, version
        try:
            outputs = await self._call(model, route.version, arrays, top)
        except problems.Problem as failure:
            _log.warning("%s: canary version %s failed (%s): stable answers", model.name, route.version,
                         type(failure).__name__)
            outputs, version = await self._stable(model, model.stable_route.version, arrays, top)
            if isinstance(failure, problems.InvalidInput):  # stable took what the canary refused: the canary's fault
                model.window(route.version).failed(time.time())
                self._count(model, route.version, "error")
            return outputs, version
        if route.mirror is not None:
            self._mirror(model, route.mirror, arrays, top, outputs, candidate=route.version)
        return outputs, route.version

    async def _stable(self, model: ModelRouting, version: Optional[str], arrays, top) -> tuple[list, str]:
        try:
            return await self._call(model, version, arrays, top), version or self.backend.versions.get(
                model.name, TRITON_CHOOSES)
        except problems.UpstreamUnavailable:
            if version is None:
                raise
        # Triton does not serve that version (yet, or any more: a reload under way): the version it picks answers
        _log.warning("%s: version %s is not served: Triton's choice answers", model.name, version)
        return await self._call(model, None, arrays, top), TRITON_CHOOSES

    async def _call(self, model: ModelRouting, version: Optional[str], arrays, top) -> list:
        started = time.perf_counter()
        try:
            outputs = await self.backend.predict(model.name, arrays, top, version)
        except (problems.InvalidInput, problems.UpstreamUnavailable) as failure:
            # the input's fault (the canary path checks it against stable), or the version is not served (loading,
            # unloaded): neither is the version's error
            if version is not None and isinstance(failure, problems.UpstreamUnavailable):
                model.window(version).unavailable(time.time())
                self._count(model, version, "unavailable")
            raise
        except problems.Problem:
            if version is not None:
                model.window(version).failed(time.time())
                self._count(model, version, "error")
            raise
        if version is not None:
            model.window(version).served(time.time(), time.perf_counter() - started)
            self._count(model, version, "ok")
            model.observe(version, outputs)
        return outputs

    def _count(self, model: ModelRouting, version: str, result: str) -> None:
        counter = model.call_counters.get((version, result))
        if counter is None:  # bound once per version and result: labels() on every call would cost more
            counter = model.call_counters[(version, result)] = self.calls.labels(model.name, version, result)
        counter.inc()

    def _mirror(self, model: ModelRouting, version: str, arrays, top, outputs: list, candidate: str) -> None:
        if model.compared_output is None:
            return
        if model.mirrors_in_flight >= self.mirror_max_in_flight:
            self.dropped.labels(model.name, candidate).inc()
            return
        model.mirrors_in_flight += 1
        task = asyncio.get_running_loop().create_task(self._compare(model, version, arrays, top, outputs, candidate))
        self._tasks.add(task)
        task.add_done_callback(self._mirror_done(model))

    def _mirror_done(self, model: ModelRouting):
        def done(task: asyncio.Task) -> None:
            model.mirrors_in_flight -= 1
            self._tasks.discard(task)
        return done

    async def _compare(self, model: ModelRouting, version: str, arrays, top, answered: list, candidate: str) -> None:
        try:
            mirrored = await self._call(model, version, arrays, top)
        except problems.Problem as failure:
            _log.info("%s: the mirror to version %s failed: %s", model.name, version, failure.detail)
            return
        except Exception:  # noqa: BLE001 - a mirror never fails anything but itself
            _log.exception("%s: the mirror to version %s failed", model.name, version)
            return
        a, b = top1(answered, model.compared_output), top1(mirrored, model.compared_output)
        if a is None or b is None:
            return
        disagreed = a != b
        model.window(candidate).compared(time.time(), disagreed)
        self.compared.labels(model.name, candidate).inc()
        if disagreed:
            self.disagreed.labels(model.name, candidate).inc()

    def observe_feedback(self, model: str, version: str, correct: Optional[bool]) -> None:
        routing = self.models.get(model)
        if routing is not None and correct is not None and version.isdigit():
            routing.window(version).judged(time.time(), correct)

    # ---- the background watch -----------------------------------------------------------------------------------

    def refresh(self, model: ModelRouting) -> None:
        try:
            changed = model.read()
        except LifecycleError as error:
            _log.error("%s: %s; routing stays as it was", model.name, error.message)
            return
        if changed is None:
            return
        lifecycle, new = changed
        for entry in new:
            self.actions.labels(model.name, str(entry.get("action")), str(entry.get("by"))).inc()
            _log.info("%s: rollout %s of version %s by %s%s", model.name, entry.get("action"), entry.get("version"),
                      entry.get("by"), f": {entry['reason']}" if entry.get("reason") else "")
        if lifecycle is not None:
            self.stable_version.labels(model.name).set(lifecycle.stable)
        previous, canary = self._canary_series.pop(model.name, None), model.canary
        if previous is not None and previous != canary:
            self.canary_percent.remove(model.name, previous)
        if canary is not None:
            self._canary_series[model.name] = canary
            self.canary_percent.labels(model.name, canary).set(lifecycle.percent if lifecycle.mode == "canary"
                                                               else 0.0)

    async def watch(self) -> None:
        """Once a second: read changed lifecycles, and judge every running canary."""
        while True:
            await asyncio.sleep(POLL_S)
            for model in self.models.values():
                self.refresh(model)
                try:
                    await self._check_ready(model)
                    await self._judge(model)
                except Exception:  # noqa: BLE001 - the watch goes on for the other models
                    _log.exception("%s: judging the canary failed", model.name)

    async def _check_ready(self, model: ModelRouting) -> None:
        """Route to a new candidate once Triton serves it: its metadata answers when the version is loaded."""
        candidate = model.canary
        if candidate is None or candidate == model.ready:
            return
        try:
            await asyncio.wait_for(self.backend.client.metadata(model.name, candidate), POLL_S)
        except (modelport.ModelportError, asyncio.TimeoutError):
            return
        if model.canary == candidate:
            model.ready = candidate
            _log.info("%s: version %s is served: it gets its traffic", model.name, candidate)

    async def _judge(self, model: ModelRouting) -> None:
        lifecycle = model.lifecycle
        if lifecycle is None or lifecycle.canary is None or model.limits is None or model.acting:
            return
        if model.refused == (lifecycle.canary, lifecycle.started):
            return
        now = time.time()
        started = lifecycle.started if lifecycle.started is not None else now
        verdict = judge(model.limits, model.window(str(lifecycle.canary)).figures(now, started),
                        model.window(str(lifecycle.stable)).figures(now, started), started, now)
        if verdict is None:
            return
        model.acting = True
        try:
            done = await asyncio.to_thread(act, model.directory, lifecycle, verdict)
        except (OSError, LifecycleError) as error:
            model.refused = (lifecycle.canary, lifecycle.started)
            _log.error("%s: automatic %s of version %s failed: %s (%s)", model.name, verdict.action,
                       lifecycle.canary, getattr(error, "message", error), verdict.reason)
            return
        finally:
            model.acting = False
        if done is not None:
            _log.warning("%s: automatic %s of version %s: %s", model.name, verdict.action, lifecycle.canary,
                         verdict.reason)
            self.refresh(model)

    # ---- GET /v1/rollouts/{model} -------------------------------------------------------------------------------

    def report(self, name: str) -> dict:
        model = self.models[name]
        lifecycle = model.lifecycle
        now = time.time()
        running = lifecycle is not None and lifecycle.canary is not None
        since = lifecycle.started if running and lifecycle.started is not None else None
        labels = {}
        if lifecycle is not None:
            labels[str(lifecycle.stable)] = "stable"
            if lifecycle.canary is not None:
                labels[str(lifecycle.canary)] = "canary"
        versions = {}
        for version in sorted(set(labels) | set(model.windows), key=lambda v: int(v) if v.isdigit() else -1):
            figures = model.windows[version].figures(now, since) if version in model.windows else Figures()
            if version not in labels and not figures.requests:
                continue
            versions[version] = {"label": labels.get(version, ""), **figures.to_dict(), "psi": model.psi(version)}
        return {
            "model": name, "stable": lifecycle.stable if lifecycle else None,
            "canary": lifecycle.canary if lifecycle else None, "mode": lifecycle.mode if running else None,
            "percent": lifecycle.percent if running else 0.0, "sticky": lifecycle.sticky if running else "",
            "started": lifecycle.started if running else None,
            "canary_served": running and model.ready == str(lifecycle.canary),
            "window": {"seconds": model.window_s, "from": round(max(since or 0.0, now - model.window_s), 3),
                       "to": round(now, 3)},
            "limits": {f: getattr(model.limits, f) for f in ROLLOUT_FIELDS} if model.limits else None,
            "versions": versions,
            "history": list(lifecycle.history[-HISTORY_SHOWN:]) if lifecycle else [],
        }

    def summary(self, name: str) -> dict:
        """The rollout in /v1/status: stable, canary, mode and share."""
        lifecycle = self.models[name].lifecycle
        if lifecycle is None:
            return {"stable": None, "canary": None}
        return {"stable": lifecycle.stable, "canary": lifecycle.canary,
                **({"mode": lifecycle.mode, "percent": lifecycle.percent} if lifecycle.canary is not None else {})}

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
