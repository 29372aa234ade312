"""Serve one candidate after another: a real Triton on free loopback ports over a scratch copy of the exported
repository holding just the models one search needs.

Each candidate's config.pbtxt is built the way `make export` builds it (export.repository from the spec with the
candidate's values applied), written into the copy, and loaded through Triton's repository API (explicit model
control, as `python -m serve` runs it): Triton swaps in the new instances while it keeps serving. A candidate counts
as served only once Triton's own view of the config shows its values.
"""

from __future__ import annotations

import json
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as mc

from core import repository as export_repository
from core.process import wait_until
from core.spec import Spec
from core.triton import ADMIN_HEADER, ServeOptions
from core import triton_http, triton_install
from core.triton_process import TritonProcess
from tune.space import Candidate, Space, apply

REPO_ROOT = Path(__file__).resolve().parents[1]
LOAD_TIMEOUT_S = 120.0


class CandidateNotServed(RuntimeError):
    """Triton refused the candidate's config, or serves something else than it was given."""


def served_models(spec: Spec, space: Space) -> list[str]:
    """The Triton models the target needs, steps before the ensemble that uses them."""
    model = spec.model(space.target)
    steps = [s.model for s in model.source.steps] if model.kind == "ensemble" else []
    return [*steps, space.target]


def configs_for(spec: Spec, names: list[str]) -> dict[str, mc.ModelConfig]:
    """The config `make export` would write for each named Triton model, from this spec."""
    built = {}
    for name in names:
        model = spec.model(name)
        for config in export_repository.model_configs(model):
            if config.name == name:
                built[name] = config
    return built


def checked_fields(config: mc.ModelConfig) -> dict:
    """What tuning changes, as comparable values: Triton fills in defaults elsewhere in the config it serves."""
    preferred = list(config.dynamic_batching.preferred_batch_size)
    if config.HasField("dynamic_batching") and not preferred:
        preferred = [config.max_batch_size]  # what Triton 2.51 serves for an empty list
    return {
        "instance_count": [g.count for g in config.instance_group],
        "max_queue_delay_microseconds": config.dynamic_batching.max_queue_delay_microseconds,
        "preferred_batch_size": preferred,
        "intra_op_thread_count": config.parameters["intra_op_thread_count"].string_value
        if "intra_op_thread_count" in config.parameters else None,
    }


@dataclass
class TuneServer:
    """A Triton over `repository` (a scratch copy); `serve(candidate)` makes it serve that candidate."""

    spec: Spec
    space: Space
    repository: Path
    process: TritonProcess

    @property
    def options(self) -> ServeOptions:
        return self.process.options

    @property
    def http_url(self) -> str:
        return self.options.http_url

    @property
    def grpc_url(self) -> str:
        return self.options.grpc_url

    @property
    def metrics_url(self) -> str:
        return self.options.metrics_url

    @property
    def models(self) -> list[str]:
        return served_models(self.spec, self.space)

    def write(self, candidate: Candidate) -> list[str]:
        """Write the candidate's configs into the copy; the models whose config changed."""
        changed = []
        for name, config in configs_for(apply(self.spec, candidate), self.models).items():
            path = self.repository / name / "config.pbtxt"
            text = export_repository.render(config)
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
                changed.append(name)
        return changed

    def serve(self, candidate: Candidate) -> None:
        """Load the candidate's changed models (steps first) and check that Triton serves its values."""
        changed = self.write(candidate)
        if changed and self.space.target not in changed and self.spec.model(self.space.target).kind == "ensemble":
            changed.append(self.space.target)  # reload the ensemble after its steps
        for name in changed:
            status, body = triton_http.request(f"{self.http_url}/v2/repository/models/{name}/load", {},
                                             {ADMIN_HEADER: self.options.admin_key}, timeout=LOAD_TIMEOUT_S)
            if status != 200:
                raise CandidateNotServed(f"Triton refused to load {name} with {candidate.label()}: HTTP {status} "
                                         f"{body[:300].decode(errors='replace')}")
        if not wait_until(lambda: all(triton_http.ready(self.http_url, m, timeout=2.0) for m in self.models),
                          LOAD_TIMEOUT_S):
            raise CandidateNotServed(f"{', '.join(self.models)} not ready {LOAD_TIMEOUT_S:.0f} s after loading "
                                     f"{candidate.label()}")
        wanted = configs_for(apply(self.spec, candidate), self.models)
        for name in self.models:
            status, body = triton_http.request(f"{self.http_url}/v2/models/{name}/config", timeout=5)
            served = json_format.ParseDict(json.loads(body), mc.ModelConfig(), ignore_unknown_fields=True) \
                if status == 200 else None
            if served is None or checked_fields(served) != checked_fields(wanted[name]):
                raise CandidateNotServed(f"{name}: Triton serves {checked_fields(served) if served else status}, "
                                         f"expected {checked_fields(wanted[name])}")

    def stop(self) -> None:
        self.process.stop()


def copy_repository(source: Path, target: Path, models: list[str]) -> Path:
    """The named model directories of the exported repository, copied (they are small: configs, model files)."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in models:
        if not (source / name / "config.pbtxt").is_file():
            raise FileNotFoundError(f"{source / name} is not exported: run `make export` (or pass --repository DIR)")
        shutil.copytree(source / name, target / name, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def start(spec: Spec, space: Space, source: Path, work_dir: Path, untuned: Candidate,
          startup_timeout_s: float = 180.0) -> TuneServer:
    """Triton serving the untuned candidate, ready, on free loopback ports (new ones if another process takes one)."""
    repository = copy_repository(source, work_dir / "repository", served_models(spec, space))
    found = triton_install.locate(REPO_ROOT / "build" / "backends")
    options = ServeOptions(repository=repository, log_file=work_dir / "tritonserver.log", state_dir=work_dir,
                           build_dir=REPO_ROOT / "build" / "backends", admin_key=secrets.token_hex(16),
                           startup_timeout_s=startup_timeout_s)
    process = TritonProcess.on_free_ports(options, found, f"tune_{secrets.token_hex(4)}")
    server = TuneServer(spec, space, repository, process)
    server.write(untuned)
    process.start(server.models)
    return server
