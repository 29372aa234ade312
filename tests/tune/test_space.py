"""What the tuner may change, per model kind, read from the project's own spec."""

from __future__ import annotations

import pytest

from core.errors import SpecError
from core.spec import load_spec
from tests.conftest import ROOT
from tune.space import Candidate, TuneTargetError, apply, space_for, tunable

SPEC = load_spec(ROOT / "models.toml")


def test_a_run_without_model_tunes_every_onnx_entry_then_every_ensemble_with_a_python_step():
    names = tunable(SPEC)

    onnx = [m.name for m in SPEC.models if m.kind == "onnx"]
    assert names[:len(onnx)] == onnx
    assert set(names[len(onnx):]) == {m.name for m in SPEC.models if m.kind == "ensemble"
                                      and any(SPEC.model(s.model).kind == "python" for s in m.source.steps)}


def test_an_onnx_model_is_tuned_on_instances_ort_threads_queue_delay_and_preferred_sizes():
    space = space_for(SPEC, "digits", cores=2)

    assert [d.field for d in space.dimensions] == ["instance_count", "intra_op_thread_count",
                                                   "max_queue_delay_microseconds", "preferred_batch_size"]
    assert space.dimensions[0].values == (1, 2, 3, 4) and space.dimensions[1].values == (1, 2)
    untuned = space.untuned(SPEC)
    digits = SPEC.model("digits")
    assert untuned.value("digits", "instance_count") == digits.runtime.instance_count
    assert untuned.value("digits", "preferred_batch_size") == digits.batching.preferred_batch_size


def test_a_variant_is_measured_itself_but_tunes_its_shared_entry():
    space = space_for(SPEC, "digits_int8", cores=2)

    assert (space.target, space.entry, space.models) == ("digits_int8", "digits", ("digits",))


def test_an_ensemble_is_tuned_on_its_python_steps_instance_counts_only():
    space = space_for(SPEC, "sentiment", cores=2)

    assert [(d.model, d.field) for d in space.dimensions] == [("sentiment_tokenizer", "instance_count")]


def test_neighbours_are_one_step_along_one_dimension_in_the_dimensions_order():
    space = space_for(SPEC, "digits", cores=2)
    start = Candidate(tuple((d.model, d.field, d.values[0]) for d in space.dimensions))

    neighbours = space.neighbours(start)

    changed = [[f for (_, f, v), (_, _, w) in zip(n.settings, start.settings) if v != w] for n in neighbours]
    assert all(len(c) == 1 for c in changed)
    assert changed[0] == ["instance_count"] and neighbours[0].value("digits", "instance_count") == 2
    assert [c[0] for c in changed] == sorted((c[0] for c in changed),
                                             key=[d.field for d in space.dimensions].index)


def test_applying_a_candidate_goes_through_the_specs_own_validation():
    space = space_for(SPEC, "digits", cores=2)
    bad = space.untuned(SPEC).with_value("digits", "preferred_batch_size", (64,))  # above max_batch_size 32

    three = space.untuned(SPEC).with_value("digits", "instance_count", 3)
    assert apply(SPEC, three).model("digits").runtime.instance_count == 3
    with pytest.raises(SpecError, match="preferred_batch_size"):
        apply(SPEC, bad)


def test_a_python_model_is_refused_with_the_ensemble_that_runs_it():
    with pytest.raises(TuneTargetError, match="--model digits_image"):
        space_for(SPEC, "digits_image_decode")
    with pytest.raises(TuneTargetError, match="no model of that name"):
        space_for(SPEC, "nope")
