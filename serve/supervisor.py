"""Keep Triton serving: restart it when it crashes, reload a model whose backend stub died, and reload a model whose
config.pbtxt changed (a rollout action rewrote its version policy: core/lifecycle.py), so that Triton serves exactly
the versions the lifecycle names.

A python backend stub killed with `kill -9` stays a zombie child of tritonserver; Triton keeps routing requests to
that instance (HTTP 500 "Stub process ... is not healthy") while the model still reports READY. The supervisor
watches tritonserver's children in /proc, remembers which model each stub serves (from its argv, which names the
model file inside the repository), and when a stub turns into a zombie it reloads that model through the
repository API. A plain `load` of an unchanged model is a no-op, and so is a load repeating the last override, so
the reload passes the model's current config with a fresh marker parameter, which forces new instances.
A stub that exits normally (unload, reload) is reaped by Triton and simply disappears: that is not a death.

A reload does not always end the replaced instances: a request that reached the dead stub pins the old model in
Triton forever (python_backend creates a response factory per request, which holds the model, and does not free it
when the stub is found dead: `ProcessRequests` returns at `ReceiveMessageFromStub`'s error). The old model's other
stubs then stay alive, serving nothing, and its dead one stays a zombie. So after a reload the supervisor gives
Triton a grace period to end the old stubs, then kills the ones still running. Their zombies stay (only tritonserver
could reap them) and are not deaths.

A changed config is loaded from disk through the same repository API (a plain `load`: Triton reads config.pbtxt
again). Triton swaps the model in without a gap: the loaded versions keep answering until the new ones are ready,
and a failed load leaves the loaded model as it was. The supervisor tries a config once per change of the file.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable

from core.errors import ModelportError
from core.repository import parse
from core.triton import ADMIN_HEADER, ServeOptions
from core import triton_http
from serve.metrics import SupervisorMetrics
from core.triton_process import TritonProcess

STUB_NAME = "triton_python_b"  # /proc/<pid>/stat truncates the command name to 15 characters
POLL_S = 0.2
# After a crash tritonserver is restarted, always: the first time at once, then after a delay that doubles with each
# crash in a row, up to RESTART_BACKOFF_MAX_S (systemd's Restart=always with RestartSec; Kubernetes' CrashLoopBackOff).
# A server that then runs RESTART_STABLE_S without crashing starts the sequence over. Every restart is counted
# (serve/metrics.py) and alerts (operate/rules.py): deciding that Triton is beyond repair is the operator's call.
RESTART_BACKOFF_FIRST_S = 0.25
RESTART_BACKOFF_MAX_S = 4.0
RESTART_STABLE_S = 60.0
# Triton ends a replaced model's stubs one after another, about 1 s each (python_backend's UpdateHealth sleeps 1 s
# before it asks a stub to finalize); one still running well after that was left behind.
LEFTOVER_GRACE_S = 5.0
LEFTOVER_GRACE_PER_STUB_S = 1.5
CONFIG_POLL_S = 1.0  # how often the models' config.pbtxt files are checked for a change (a stat each)
LOAD_TIMEOUT_S = 120.0


@dataclasses.dataclass(frozen=True)
class Stub:
    pid: int
    zombie: bool
    model: str | None  # None when its argv is unreadable (a zombie's cmdline is empty)
    shm_region: str | None = None  # argv[2]: the /dev/shm region the parent made for this stub


def read_stat(pid: int) -> tuple[str, str, int] | None:
    """(command name, state, parent pid) of a process, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    return name, fields[0], int(fields[1])


def model_of_stub(argv: list[str], repository: Path) -> str | None:
    """The stub's argv[1] is <repository>/<model>/<version>/<file>; the model is its first component."""
    if len(argv) < 2:
        return None
    try:
        return Path(argv[1]).resolve().relative_to(repository.resolve()).parts[0]
    except (ValueError, IndexError):
        return None


def list_stubs(parent: int, repository: Path, proc: Path = Path("/proc")) -> list[Stub]:
    stubs = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        stat = read_stat(int(entry.name))
        if stat is None or stat[2] != parent or stat[0] != STUB_NAME:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            argv = []
        args = [a.decode(errors="replace") for a in argv if a]
        region = args[2] if len(args) > 2 else None
        stubs.append(Stub(int(entry.name), stat[1] == "Z", model_of_stub(args, repository), region))
    return stubs


@dataclasses.dataclass
class StubWatch:
    """Remembers each live stub's model, so that a zombie (whose argv is gone) can still be mapped to its model."""

    repository: Path
    seen: dict[int, Stub] = dataclasses.field(default_factory=dict)
    handled: set[int] = dataclasses.field(default_factory=set)
    retired: set[int] = dataclasses.field(default_factory=set)  # stubs of a replaced model: their end is no death

    def stubs_of(self, model: str) -> list[Stub]:
        """The stubs seen serving `model` (a dead one stays here while it is a zombie)."""
        return [stub for stub in self.seen.values() if stub.model == model]

    def retire(self, stubs: list[Stub]) -> None:
        for stub in stubs:
            self.retired.add(stub.pid)
            self.seen.pop(stub.pid, None)

    def dead_models(self, stubs: list[Stub]) -> dict[str, list[Stub]]:
        """Models with a newly dead stub, each with the live-time record of those stubs."""
        dead: dict[str, list[Stub]] = {}
        for stub in stubs:
            if stub.pid in self.retired:
                continue
            if stub.model is not None and not stub.zombie:
                self.seen[stub.pid] = stub
            elif stub.zombie and stub.pid not in self.handled:
                self.handled.add(stub.pid)
                record = self.seen.get(stub.pid)
                if record is not None:
                    dead.setdefault(record.model, []).append(record)
        present = {stub.pid for stub in stubs}
        self.seen = {pid: stub for pid, stub in self.seen.items() if pid in present}
        self.handled &= present
        self.retired &= present
        return dead


@dataclasses.dataclass(frozen=True)
class Leftover:
    """A stub of a replaced model version, to be killed if Triton has not ended it by `deadline` (monotonic)."""

    stub: Stub
    deadline: float


RELOAD_MARKER = "modelport_reloaded_at"


def reload_model(options: ServeOptions, model: str) -> tuple[bool, str]:
    status, body = triton_http.request(f"{options.http_url}/v2/models/{model}/config", timeout=5)
    if status != 200:
        return False, f"could not read its config (HTTP {status}: {body[:200]!r})"
    config = json.loads(body)
    # Triton skips a load whose config equals the loaded one, even after an earlier override: a fresh marker
    # parameter makes every heal a real reload. Backends ignore parameters they do not know.
    config.setdefault("parameters", {})[RELOAD_MARKER] = {"string_value": f"{time.time():.6f}"}
    override = {"parameters": {"config": json.dumps(config)}}
    status, body = triton_http.request(
        f"{options.http_url}/v2/repository/models/{model}/load", override, {ADMIN_HEADER: options.admin_key}, timeout=60
    )
    return status == 200, f"HTTP {status} {body[:300].decode(errors='replace')}".strip()


@dataclasses.dataclass
class ConfigWatch:
    """The config.pbtxt each model was last loaded with (or last tried), to reload a model whose config changed."""

    repository: Path
    models: list[str]
    loaded: dict[str, tuple[tuple[int, int, int], bytes]] = dataclasses.field(default_factory=dict)

    def _read(self, model: str) -> tuple[tuple[int, int, int], bytes] | None:
        path = self.repository / model / "config.pbtxt"
        try:
            st = path.stat()
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
            known = self.loaded.get(model)
            return known if known is not None and known[0] == key else (key, path.read_bytes())
        except OSError:
            return None  # gone for a moment (the export swaps the repository): judged at the next check

    def snapshot(self) -> None:
        """Record every config as Triton is about to load it."""
        self.loaded = {m: found for m in self.models if (found := self._read(m)) is not None}

    def is_ensemble(self, model: str) -> bool:
        known = self.loaded.get(model)
        return known is not None and b"ensemble_scheduling" in known[1]

    def steps(self, model: str) -> list[tuple[str, int]]:
        """(model, version) of each step of an ensemble, as its config on disk names them."""
        try:
            config = parse(self.loaded[model][1].decode())
        except (KeyError, ValueError, UnicodeDecodeError):
            return []
        return [(s.model_name, s.model_version) for s in config.ensemble_scheduling.step]

    def changed(self) -> list[str]:
        """Models whose config text differs from the one last loaded; recorded as loaded (tried once per change)."""
        found = []
        for model in self.models:
            now = self._read(model)
            if now is None:
                continue
            before = self.loaded.get(model)
            self.loaded[model] = now
            if before is not None and before[1] != now[1]:
                found.append(model)
        return found


def load_model(options: ServeOptions, model: str) -> tuple[bool, str]:
    """Load the model as its repository folder now holds it (config.pbtxt and version folders)."""
    status, body = triton_http.request(f"{options.http_url}/v2/repository/models/{model}/load", {},
                                       {ADMIN_HEADER: options.admin_key}, timeout=LOAD_TIMEOUT_S)
    return status == 200, f"HTTP {status} {body[:300].decode(errors='replace')}".strip()


def version_ready(options: ServeOptions, model: str, version: int) -> bool:
    return triton_http.request(f"{options.http_url}/v2/models/{model}/versions/{version}/ready", timeout=2)[0] == 200


def ready_versions(options: ServeOptions, model: str) -> list[int]:
    """The model's versions Triton reports READY (the repository index, an admin API)."""
    status, body = triton_http.request(f"{options.http_url}/v2/repository/index", {"ready": True},
                                       {ADMIN_HEADER: options.admin_key}, timeout=5)
    if status != 200:
        return []
    try:
        return sorted(int(m["version"]) for m in json.loads(body)
                      if m.get("name") == model and m.get("state") == "READY" and str(m.get("version", "")).isdigit())
    except (ValueError, TypeError):
        return []


def restart_delay(crashes_in_a_row: int) -> float:
    """Seconds to wait before restarting after the n-th crash in a row: 0, then doubling from the first step, capped."""
    if crashes_in_a_row <= 1:
        return 0.0
    return min(RESTART_BACKOFF_MAX_S, RESTART_BACKOFF_FIRST_S * 2 ** (crashes_in_a_row - 2))


class EventLog:
    """The launcher's own log: what it started, healed and stopped. Printed and appended to a file."""

    def __init__(self, path: Path, echo: bool = True):
        self.path = path
        self.echo = echo
        path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()

    def __call__(self, message: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} serve: {message}"
        with self.lock:
            with open(self.path, "a") as f:
                f.write(line + "\n")
            if self.echo:
                print(line, flush=True)


class Supervisor:
    def __init__(self, options: ServeOptions, triton: TritonProcess, model_names: list[str], log: Callable[[str], None],
                 on_start: Callable[[TritonProcess], None] = lambda triton: None,
                 metrics: SupervisorMetrics | None = None):
        self.options = options
        self.triton = triton
        self.model_names = model_names
        self.log = log
        self.on_start = on_start
        self.metrics = metrics or SupervisorMetrics(model_names)
        self.metrics.triton_up.set_function(lambda: 1.0 if self.triton.alive() else 0.0)
        self.watch = StubWatch(options.repository)
        self.configs = ConfigWatch(options.repository, model_names)
        self.configs_checked = 0.0
        self.failed_loads: set[str] = set()
        self.leftovers: list[Leftover] = []
        self.crashes_in_a_row = 0
        self.started_at = time.monotonic()

    def start(self) -> float:
        self.watch = StubWatch(self.options.repository)
        self.leftovers = []  # a new tritonserver: the old one's stubs went with its process group
        self.configs.snapshot()  # before Triton reads them: a change from here on is reloaded
        self.failed_loads = set()
        seconds = self.triton.start(self.model_names)
        self.started_at = time.monotonic()
        self.scan()  # learn every stub's model now: one killed before the first poll would be a zombie without argv
        self.on_start(self.triton)
        return seconds

    def start_first(self, stop: threading.Event) -> float:
        """The first start. A server that fails to start by itself (a model that does not load, a library missing)
        is the user's to fix and raises at once; one killed after its endpoint came up, before every model answered
        ready (a request it cannot survive, sent the moment its port opened), is restarted like any crash."""
        began = time.monotonic()
        try:
            return self.start()
        except ModelportError:
            if not self.triton.crashed_after_coming_up():
                raise
        self.restart_after_crash(stop)
        return time.monotonic() - began

    def scan(self) -> dict[str, list[Stub]]:
        return self.watch.dead_models(list_stubs(self.triton.pid, self.options.repository))

    def serve(self, stop: threading.Event) -> None:
        """Supervise until `stop` is set; then stop Triton. Call start() first."""
        try:
            while not stop.wait(POLL_S):
                if not self.triton.alive():
                    self.restart_after_crash(stop)
                    continue
                if self.options.heal:
                    self.heal_dead_stubs()
                    self.stop_leftover_stubs()
                if time.monotonic() - self.configs_checked >= CONFIG_POLL_S:
                    self.configs_checked = time.monotonic()
                    self.reload_changed_configs()
        finally:
            self.triton.stop()

    def restart_after_crash(self, stop: threading.Event) -> None:
        """Restart tritonserver until it is ready again or `stop` is set; never gives up."""
        if time.monotonic() - self.started_at >= RESTART_STABLE_S:
            self.crashes_in_a_row = 0
        while not stop.is_set():
            self.crashes_in_a_row += 1
            code = self.triton.returncode
            delay = restart_delay(self.crashes_in_a_row)
            self.log(f"tritonserver exited unexpectedly (code {code}, {self.crashes_in_a_row} in a row); "
                     f"restarting it" + (f" in {delay:.2f} s" if delay else ""))
            self.triton.stop()  # reap its stubs and shared memory
            if stop.wait(delay):
                return
            try:
                seconds = self.start()
            except (ModelportError, OSError) as error:
                # Seen here: a restart that segfaults while clients keep calling; it counts as one more crash. A
                # port taken or a file gone meanwhile may come back too: keep trying, the alerts tell a person.
                self.log(f"restarting tritonserver failed: {str(error).splitlines()[0]}")
                self.metrics.restart(ok=False)
                continue
            self.log(f"tritonserver restarted, all models ready in {seconds:.1f} s")
            self.metrics.restart(ok=True)
            return

    def heal_dead_stubs(self) -> None:
        pending = self.scan()
        while pending:
            model, dead = pending.popitem()
            began = time.monotonic()
            self.log(f"backend stub(s) {[s.pid for s in dead]} of model '{model}' died; reloading '{model}'")
            replaced = self.watch.stubs_of(model)
            ok, detail = reload_model(self.options, model)
            seconds = time.monotonic() - began
            self.metrics.heal(model, ok)
            if ok:
                # A killed stub leaves its shared-memory region behind; the new instances have their own.
                for stub in dead:
                    self.remove_shm_region(stub)
                self.watch.retire(replaced)
                deadline = time.monotonic() + LEFTOVER_GRACE_S + LEFTOVER_GRACE_PER_STUB_S * len(replaced)
                self.leftovers += [Leftover(stub, deadline) for stub in replaced]
                self.log(f"model '{model}' reloaded in {seconds:.1f} s")
            else:
                self.log(f"reloading model '{model}' failed after {seconds:.1f} s: {detail}")
            # Learn the new stubs at once (and any death during the reload) before anything kills them unseen.
            for other, stubs in self.scan().items():
                pending.setdefault(other, []).extend(stubs)

    def reload_changed_configs(self) -> None:
        """Load each model whose config.pbtxt changed, and log what Triton serves after it. An ensemble whose steps'
        versions are served goes first (it moves its requests to a step's new stable before the step drops the old
        one), one naming a version not loaded yet goes last; a load that failed is tried again after another
        succeeds (an ensemble pinned to a version its step only now serves)."""
        changed = self.configs.changed()
        if not changed:
            return
        ensembles = [m for m in changed if self.configs.is_ensemble(m)]
        first = [m for m in ensembles if all(version == -1 or version_ready(self.options, step, version)
                                             for step, version in self.configs.steps(m))]
        order = first + [m for m in changed if m not in ensembles] + [m for m in ensembles if m not in first]
        succeeded = False
        for model in order:
            succeeded |= self.reload_config(model)
        if succeeded:
            for model in sorted(self.failed_loads):
                self.reload_config(model, again=True)

    def reload_config(self, model: str, again: bool = False) -> bool:
        began = time.monotonic()
        self.log(f"config.pbtxt of model '{model}' changed; reloading '{model}'" + (" again" if again else ""))
        ok, detail = load_model(self.options, model)
        seconds = time.monotonic() - began
        if ok:
            self.failed_loads.discard(model)
            versions = ", ".join(map(str, ready_versions(self.options, model))) or "none"
            self.log(f"model '{model}' reloaded in {seconds:.1f} s; versions ready: {versions}")
        else:
            self.failed_loads.add(model)
            self.log(f"reloading model '{model}' failed after {seconds:.1f} s, Triton keeps serving it as it was "
                     f"loaded: {detail}")
        return ok

    def stop_leftover_stubs(self) -> None:
        """Kill the stubs of replaced models that Triton left running past their grace period (see the module doc)."""
        now = time.monotonic()
        due = [leftover.stub for leftover in self.leftovers if leftover.deadline <= now]
        if not due:
            return
        self.leftovers = [leftover for leftover in self.leftovers if leftover.deadline > now]
        # Match the shared-memory region too: a pid that ended and was reused is another process.
        running = {(s.pid, s.shm_region) for s in list_stubs(self.triton.pid, self.options.repository) if not s.zombie}
        stopped = [stub for stub in due if (stub.pid, stub.shm_region) in running]
        for stub in stopped:
            try:
                os.kill(stub.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.remove_shm_region(stub)
        for model in sorted({stub.model for stub in stopped}):
            pids = [stub.pid for stub in stopped if stub.model == model]
            self.log(f"stopped backend stub(s) {pids} of the replaced model '{model}', which Triton left running")

    def remove_shm_region(self, stub: Stub) -> None:
        if stub.shm_region and stub.shm_region.startswith(self.triton.shm_prefix):
            Path("/dev/shm", stub.shm_region).unlink(missing_ok=True)
