"""What the load test can call and with what: every served Triton model of models.toml, its payloads from the files
the spec names. Nothing here knows a model by name.

- `heldout` (onnx-kind models and their variants): one row of the held-out .npz per request, every input of the
  model (the .npz holds `x` for a single-input model, or one array per input name; core.heldout.load_npz reads it),
  an input with -1 dims at each row's own size (its `_lengths`), so the load is of varied sizes as the data is;
- `samples` (models whose one input is TYPE_STRING: ensembles, python models): a folder of files, each file's bytes
  one request, or a text file, each non-empty line one request (UTF-8).

A model with neither gets no task. A named file that is missing stops the run with the field and the fix: a load test
on invented data would measure the wrong thing.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from core.errors import ModelportError, UserError
from core.heldout import load_npz
from core.repository import served_names
from core.spec import ModelSpec, Spec

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SPEC = REPO_ROOT / "models.toml"
SPEC_ENV = "MODELPORT_SPEC"  # how Locust workers (and anyone running `locust -f` without --spec) find the spec
SAMPLES_PER_MODEL = 256


class PayloadUnavailable(UserError):
    """A model's payload file is missing or unusable; the message names the spec field and the fix."""


class ScenarioError(UserError):
    """The selected scenario cannot run (unknown tag, a tagged model without payloads, an empty mix)."""


@dataclass(frozen=True, eq=False)
class Input:
    """One input tensor of one request: a batch of one, [1, ...dims], with its KServe v2 datatype (FP32, BYTES)."""

    name: str
    datatype: str
    array: np.ndarray


@dataclass(frozen=True, eq=False)
class Sample:
    """One request's inputs, and every output the model declares (all are requested and checked)."""

    model: str  # the Triton model name
    inputs: tuple[Input, ...]
    outputs: tuple[str, ...]

    @property
    def rows(self) -> int:
        return int(self.inputs[0].array.shape[0])


@dataclass(frozen=True)
class Target:
    """One served Triton model: the task's tag and statistics row, the spec it is served from (a variant's is its
    base model's), and its share of the mixed scenario."""

    name: str
    model: ModelSpec = field(repr=False)
    weight: int

    @property
    def source(self) -> tuple[str, Path] | None:
        """(spec field, path) of the payload file, or None when the spec names none."""
        samples, onnx = self.model.loadtest.samples, self.model.source.onnx
        if samples is not None:
            return "samples", samples
        if onnx is not None and not onnx.keras_text_layer:  # that one's held-out set is text
            return "heldout", onnx.heldout
        return None


def spec_path(argv: list[str]) -> Path:
    """`--spec PATH` from a command line, else $MODELPORT_SPEC, else the repository's models.toml. Read before Locust
    parses its options, because the tasks are built when the locustfile is imported."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--spec")
    known, _ = parser.parse_known_args(argv)
    return Path(known.spec or os.environ.get(SPEC_ENV) or DEFAULT_SPEC)


def targets(spec: Spec) -> tuple[Target, ...]:
    """Every Triton model the spec serves, in spec order. Variants (digits_int8) get weight 0: reachable by tag,
    not part of the mix, whose weights are the spec's `loadtest_weight`. An optional variant the export left out (its
    card says so, in the repository beside the spec) is not served, so it gets no task."""
    repository = spec.root / "model_repository"
    return tuple(
        Target(name, m, m.loadtest.loadtest_weight if name == m.name else 0)
        for m in spec.models for name in served_names(m, repository)
    )


def target(spec: Spec, name: str) -> Target:
    return next(t for t in targets(spec) if t.name == name)


def select(catalogue: tuple[Target, ...], tags: list[str] | None,
           exclude_tags: list[str] | None = None) -> tuple[tuple[Target, ...], tuple[str, ...]]:
    """The targets a run with these Locust tags calls, and notes on what it leaves out. No tags: the mixed scenario
    (weight > 0). A tag must name a served model that has payloads."""
    by_name = {t.name: t for t in catalogue}
    excluded = set(exclude_tags or ())
    without = [t for t in catalogue if t.source is None]
    if tags:
        unknown = [tag for tag in tags if tag not in by_name]
        if unknown:
            raise ScenarioError(f"--tags {' '.join(unknown)}: no served model of that name; the spec serves "
                                f"{', '.join(by_name)}")
        for tag in tags:
            if by_name[tag].source is None:
                raise ScenarioError(_no_payloads(by_name[tag]))
        picked = [by_name[tag] for tag in dict.fromkeys(tags) if tag not in excluded]
        notes = ()
    else:
        picked = [t for t in catalogue if t.weight > 0 and t.source is not None and t.name not in excluded]
        notes = tuple(f"{t.name} skipped: {_no_payloads(t)}" for t in without)
        if not picked:
            raise ScenarioError("the mixed scenario is empty: no served model with payloads has loadtest_weight > 0 "
                                "(set loadtest_weight in models.toml, or pick models with --tags)")
    return tuple(picked), notes


def share(target: Target, tagged: bool) -> int:
    """How many times the target's task is in a user's list: its weight in the mix (0: left out, as variants are),
    at least once when the run picks models by tag."""
    return max(target.weight, 1) if tagged else target.weight


def _no_payloads(target: Target) -> str:
    return (f"model {target.model.name!r} has no load-test payloads: add `heldout` (an .npz of model inputs) or "
            f"`samples` (a folder of files, or a text file of one request per line) to its [[model]] in models.toml")


@lru_cache(maxsize=None)
def samples(target: Target, limit: int = SAMPLES_PER_MODEL) -> tuple[Sample, ...]:
    """Up to `limit` requests for target, built once per process."""
    if target.source is None:
        raise ScenarioError(_no_payloads(target))
    spec_field, path = target.source
    if not path.exists():
        raise PayloadUnavailable(
            f"{target.name}: models.toml field `{spec_field}` of model {target.model.name!r} names {path}, which does "
            f"not exist: run `make export` (a model's trainer writes it) or fix the path")
    if spec_field == "samples":
        return _sample_files(target, path, limit)
    return _heldout_rows(target, path, limit)


def _heldout_rows(target: Target, path: Path, limit: int) -> tuple[Sample, ...]:
    try:
        data = load_npz(target.model, path, with_labels=False)
    except ModelportError as error:
        raise PayloadUnavailable(f"{target.name}: models.toml field `heldout`: {error}") from None
    model = target.model
    outputs = tuple(t.name for t in model.outputs)
    return tuple(
        Sample(target.name, tuple(Input(t.name, v2_datatype(t.dtype), row[t.name]) for t in model.inputs), outputs)
        for row in map(data.row, range(min(limit, len(data))))
    )


def _sample_files(target: Target, path: Path, limit: int) -> tuple[Sample, ...]:
    model = target.model
    tensor = model.inputs[0]
    if len(model.inputs) != 1 or tensor.dtype != "TYPE_STRING" or tensor.dims != (1,):
        raise PayloadUnavailable(
            f"{target.name}: models.toml field `samples` needs a model with one TYPE_STRING input of dims [1]; "
            f"{model.name!r} has {', '.join(f'{t.name} {t.dtype} {list(t.dims)}' for t in model.inputs)}")
    if path.is_dir():
        items = [p.read_bytes() for p in sorted(path.iterdir()) if p.is_file() and not p.name.startswith(".")]
    else:
        items = [line.encode("utf-8") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not items:
        raise PayloadUnavailable(f"{target.name}: models.toml field `samples` names {path}, which holds no samples "
                                 f"(a folder needs files, a text file non-empty lines): run `make export` or fill it")
    outputs = tuple(t.name for t in model.outputs)
    return tuple(
        Sample(target.name, (Input(tensor.name, "BYTES", np.array([[item]], dtype=np.object_)),), outputs)
        for item in items[:limit]
    )


def v2_datatype(spec_dtype: str) -> str:
    """models.toml's (Triton config) TYPE_FP32 -> KServe v2's FP32; TYPE_STRING -> BYTES."""
    name = spec_dtype.removeprefix("TYPE_")
    return "BYTES" if name == "STRING" else name
