"""Property-based, no server: hypothesis throws arbitrary JSON documents and explain bodies with hostile options at the
explain route's parser (gateway/explaining.py). Each either parses or is a 422 problem naming a field, never another
error, and within a time budget per case."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.spec import load_spec
from gateway.catalogue import endpoints
from gateway.explaining import MAX_BUDGET, ExplainRequest, decoding_of, parse
from gateway.problems import InvalidInput
from core.measure import payloads
from tests.conftest import REPOSITORY

SPEC = load_spec(payloads.DEFAULT_SPEC)
SERVED = {e.name: e for e in endpoints(SPEC, REPOSITORY)}
MODELS = ("digits", "digits_image", "sentiment", "sentiment_classifier", "digits_mobilenet")
WITHIN_S = 1.0

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                    st.text(max_size=40), st.just("x" * 5000))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=6),
                                                            st.dictionaries(st.text(max_size=8), inner, max_size=6)),
                           max_leaves=60)
options = st.fixed_dictionaries({}, optional={
    "method": st.one_of(st.sampled_from(["occlusion", "leave-one-out", "kernel-shap"]), json_values),
    "output": st.one_of(st.sampled_from(["probabilities"]), json_values),
    "budget": st.one_of(st.integers(-3, MAX_BUDGET + 3), json_values),
    "baseline": json_values, "patch": st.one_of(st.integers(-2, 70), json_values),
    "seed": st.one_of(st.integers(-1, 2**40), json_values)})
items = st.one_of(json_values, st.lists(st.lists(st.lists(st.lists(st.integers(0, 255), min_size=1, max_size=1),
                                                          min_size=8, max_size=8), min_size=8, max_size=8),
                                        min_size=1, max_size=2),
                  st.lists(st.text(max_size=60), min_size=1, max_size=2))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from(MODELS), document=st.one_of(json_values, st.builds(
    lambda inputs, extra: {"inputs": inputs, **extra}, items, options)))
def test_any_explain_body_parses_or_is_a_problem_naming_a_field(model, document):
    endpoint = SERVED[model]
    started = time.perf_counter()
    try:
        parsed = parse(endpoint, document, decoding_of(endpoint, SPEC))
    except InvalidInput as problem:
        assert problem.status == 422 and problem.field is not None and problem.fix, problem.detail
    else:
        assert isinstance(parsed, ExplainRequest) and 1 <= parsed.budget <= MAX_BUDGET
        assert all(len(a) == 1 for a in parsed.arrays.values())
    assert time.perf_counter() - started < WITHIN_S


@pytest.mark.parametrize("budget", [0, MAX_BUDGET + 1, True, 2.5])
def test_a_budget_outside_its_range_names_the_field(budget):
    with pytest.raises(InvalidInput) as refused:
        parse(SERVED["digits"], {"inputs": [[[[0]] * 8] * 8], "budget": budget})
    assert refused.value.field == "/budget"
