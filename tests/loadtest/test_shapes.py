from types import SimpleNamespace

import pytest

from loadtest.shapes import Constant, Soak, Spike, StepRamp, plan_from_options


def test_step_ramp_adds_a_step_per_period_up_to_the_maximum_then_stops():
    ramp = StepRamp(step_users=4, step_seconds=10, max_users=10, duration_s=60)

    assert [ramp.at(t)[0] for t in (0, 9.9, 10, 20, 50)] == [4, 4, 8, 10, 10]
    assert ramp.at(60) is None


def test_spike_jumps_to_spike_users_only_inside_the_spike_window():
    spike = Spike(base_users=2, spike_users=20, spike_at_s=10, spike_seconds=5, duration_s=30)

    assert [spike.at(t)[0] for t in (0, 10, 14.9, 15, 29)] == [2, 20, 20, 2, 2]
    assert spike.at(30) is None


def test_soak_holds_its_users_until_the_duration_ends():
    soak = Soak(users=8, ramp_s=4, duration_s=100)

    assert soak.at(50) == (8, 2.0)
    assert soak.at(100) is None


def test_constant_ends_at_run_time_because_locust_waits_for_the_shape():
    assert Constant(3, 3, duration_s=5).at(4.9) == (3, 3)
    assert Constant(3, 3, duration_s=5).at(5) is None
    assert Constant(3, 3).at(10**6) == (3, 3)


def _options(**overrides):
    base = dict(num_users=16, spawn_rate=None, run_time=60, shape="constant", shape_duration=None, step_users=4,
                step_seconds=30.0, spike_users=64, spike_at=30.0, spike_seconds=20.0, soak_ramp=60.0)
    return SimpleNamespace(**{**base, **overrides})


def test_plan_from_options_reads_the_shape_and_its_parameters():
    assert plan_from_options(_options()) == Constant(16, 16, 60)
    assert plan_from_options(_options(shape="step", shape_duration=90)) == StepRamp(4, 30.0, 16, 90)
    assert plan_from_options(_options(shape="spike")) == Spike(16, 64, 30.0, 20.0, 120)


def test_a_spike_no_higher_than_the_base_is_rejected_with_both_values():
    with pytest.raises(ValueError, match="spike_users=8, base_users=16"):
        plan_from_options(_options(shape="spike", spike_users=8))
