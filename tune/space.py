"""What `make tune` may change, per model kind, as values of models.toml fields (named after model_config.proto).

An onnx model: its instance_count, max_queue_delay_microseconds, preferred_batch_size and ONNX Runtime's
intra_op_thread_count. An ensemble: the instance_count of each of its python steps (its ONNX step is tuned as a
model of its own). A candidate is one value per dimension; applying it to the spec goes through the spec's own
dataclasses, so a value the spec would refuse fails there, with the field's name.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from core.errors import UserError
from core.spec import ModelSpec, Spec

QUEUE_DELAYS_US = (0, 100, 500, 2000)


class TuneTargetError(UserError):
    """`--model` names nothing tunable; the message lists what is."""


@dataclass(frozen=True)
class Dimension:
    model: str  # the [[model]] entry (spec name) the field belongs to
    field: str  # a models.toml field of that entry
    values: tuple  # the domain, in order; `ordered`: neighbours are the adjacent values, else every other value
    ordered: bool = True

    def neighbours(self, value) -> tuple:
        if not self.ordered:
            return tuple(v for v in self.values if v != value)
        at = self.values.index(value)
        return tuple(self.values[i] for i in (at + 1, at - 1) if 0 <= i < len(self.values))


@dataclass(frozen=True)
class Candidate:
    """One value per dimension, as (model, field, value) in the space's order."""

    settings: tuple[tuple[str, str, object], ...]

    def value(self, model: str, field: str):
        return next(v for m, f, v in self.settings if (m, f) == (model, field))

    def with_value(self, model: str, field: str, value) -> Candidate:
        return Candidate(tuple((m, f, value if (m, f) == (model, field) else v) for m, f, v in self.settings))

    def label(self, own: str = "") -> str:
        """Short, for tables and plots: fields of `own` without the model name."""
        parts = []
        for model, field, value in self.settings:
            shown = f"[{', '.join(map(str, value))}]" if isinstance(value, tuple) else str(value)
            parts.append(f"{'' if model == own else model + '.'}{SHORT.get(field, field)} {shown}")
        return ", ".join(parts)

    def to_json(self) -> list:
        return [[m, f, list(v) if isinstance(v, tuple) else v] for m, f, v in self.settings]

    @classmethod
    def from_json(cls, data: list) -> Candidate:
        return cls(tuple((m, f, tuple(v) if isinstance(v, list) else v) for m, f, v in data))


SHORT = {"instance_count": "instances", "max_queue_delay_microseconds": "delay µs",
         "preferred_batch_size": "preferred", "intra_op_thread_count": "ORT threads"}


@dataclass(frozen=True)
class Space:
    target: str  # the Triton model the load goes to (an onnx entry's fp32 model, or the ensemble)
    entry: str  # its [[model]] entry
    dimensions: tuple[Dimension, ...]

    def untuned(self, spec: Spec) -> Candidate:
        """The values models.toml has now."""
        return Candidate(tuple((d.model, d.field, _entry(spec, d.model).value(d.field)) for d in self.dimensions))

    def neighbours(self, candidate: Candidate) -> list[Candidate]:
        """Candidates one step away along one dimension, in the dimensions' order (the likeliest gains first)."""
        return [candidate.with_value(d.model, d.field, v) for d in self.dimensions
                for v in d.neighbours(candidate.value(d.model, d.field))]

    @property
    def models(self) -> tuple[str, ...]:
        """The entries a candidate changes."""
        return tuple(dict.fromkeys(d.model for d in self.dimensions))


def _entry(spec: Spec, name: str) -> ModelSpec:
    return next(m for m in spec.models if m.name == name)


def apply(spec: Spec, candidate: Candidate) -> Spec:
    """The spec with the candidate's values; the spec's own validation runs on every changed entry."""
    changes: dict[str, dict] = {}
    for model, field, value in candidate.settings:
        changes.setdefault(model, {})[field] = value
    return dataclasses.replace(spec, models=tuple(
        m.with_values(**changes[m.name]) if m.name in changes else m for m in spec.models))


def _with(values: tuple, current) -> tuple:
    """The domain with the current value in it, kept in order for numbers."""
    if current in values:
        return values
    merged = values + (current,)
    return tuple(sorted(merged)) if all(isinstance(v, int) for v in merged) else merged


def onnx_space(model: ModelSpec, target: str, cores: int) -> Space:
    batching, runtime = model.batching, model.runtime
    mbs = batching.max_batch_size
    # No `()`: Triton 2.51 serves an empty preferred_batch_size as [max_batch_size], the same as (mbs,).
    preferred = tuple(dict.fromkeys([batching.preferred_batch_size, (mbs,), tuple(sorted({max(1, mbs // 4), mbs}))]))
    return Space(target, model.name, (
        Dimension(model.name, "instance_count", _with(tuple(range(1, 2 * cores + 1)), runtime.instance_count)),
        Dimension(model.name, "intra_op_thread_count",
                  _with(tuple(range(1, cores + 1)), runtime.intra_op_thread_count)),
        Dimension(model.name, "max_queue_delay_microseconds",
                  _with(QUEUE_DELAYS_US, batching.max_queue_delay_microseconds)),
        Dimension(model.name, "preferred_batch_size", preferred, ordered=False),
    ))


def ensemble_space(spec: Spec, model: ModelSpec, cores: int) -> Space:
    steps = [_entry(spec, s.model) for s in model.source.steps if spec.model(s.model) is not None]
    dims = tuple(Dimension(s.name, "instance_count", _with(tuple(range(1, 2 * cores + 1)), s.runtime.instance_count))
                 for s in steps if s.kind == "python")
    return Space(model.name, model.name, dims)


def space_for(spec: Spec, name: str, cores: int | None = None) -> Space:
    """The space for `--model NAME`: an onnx entry or one of its variants (tuned on that variant: they share one
    entry), or an ensemble with python steps."""
    cores = cores or os.cpu_count() or 1
    model = spec.model(name)
    if model is None:
        raise TuneTargetError(f"--model {name}: no model of that name in {spec.path}; tunable: "
                              f"{', '.join(tunable(spec)) or '(none)'}")
    if model.kind == "onnx":
        return onnx_space(model, name, cores)
    if model.kind == "ensemble":
        space = ensemble_space(spec, model, cores)
        if space.dimensions:
            return space
    users = [m.name for m in spec.models if m.kind == "ensemble" and any(s.model == name for s in m.source.steps)]
    hint = (f"tune the ensemble that runs it: --model {' / '.join(users)}" if users
            else f"tunable: {', '.join(tunable(spec))}")
    raise TuneTargetError(f"--model {name}: kind = {model.kind!r} has nothing to tune on its own "
                          f"(onnx models and ensembles with python steps are tuned); {hint}")


def tunable(spec: Spec) -> list[str]:
    """What a run without --model tunes, in order: every onnx entry (on its fp32 model), then every ensemble with a
    python step, so that an ensemble is measured with its ONNX step already tuned."""
    onnx = [m.name for m in spec.models if m.kind == "onnx"]
    ensembles = [m.name for m in spec.models if m.kind == "ensemble"
                 and any(spec.model(s.model) is not None and spec.model(s.model).kind == "python"
                         for s in m.source.steps)]
    return onnx + ensembles
