import pytest

from loadtest.slo import Observed, Thresholds, evaluate

RUN = Observed(requests=1000, failures=5, rps=400.0, p95_ms=2.0, p99_ms=4.0)


def test_met_thresholds_report_no_miss():
    assert evaluate(Thresholds(p95_ms=3, p99_ms=5, max_error_rate=0.01, min_rps=100), RUN) == []


def test_every_missed_threshold_is_named_with_limit_and_observed_value():
    misses = evaluate(Thresholds(p95_ms=1, p99_ms=3, max_error_rate=0.001, min_rps=500), RUN)

    assert len(misses) == 4
    assert misses[0].startswith("--slo-p95-ms") and "2.000 ms > limit 1 ms" in misses[0]
    assert misses[1].startswith("--slo-p99-ms") and "4.000 ms > limit 3 ms" in misses[1]
    assert misses[2].startswith("--slo-error-rate") and "(5/1000)" in misses[2]
    assert misses[3].startswith("--slo-min-rps") and "400.0 req/s < minimum 500" in misses[3]


def test_a_run_without_requests_misses_any_slo():
    misses = evaluate(Thresholds(max_error_rate=0.0), Observed(0, 0, 0.0, 0.0, 0.0))

    assert misses and "no requests" in misses[0]


def test_no_thresholds_means_no_gate():
    assert evaluate(Thresholds(), Observed(0, 0, 0.0, 0.0, 0.0)) == []


@pytest.mark.parametrize("bad", [dict(p99_ms=0), dict(min_rps=-1), dict(max_error_rate=5)])
def test_thresholds_out_of_range_fail_at_construction_naming_the_field(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        Thresholds(**bad)
