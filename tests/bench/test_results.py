"""The benchmark's table and target arithmetic, on numbers recorded from a run (no servers)."""

from dataclasses import replace

from bench.results import (BenchResults, Cell, CellResult, ClientOverhead, GeneratorCeiling, InProcess, Round,
                           format_markdown, from_json, targets, to_json)


def _cell(model, server, encoding, connections, *rps_p99, batch=None, cpu=0.4):
    rounds = tuple(Round(rps=rps, p50_ms=p99 / 3, p99_ms=p99, errors=0, generator_cpu=cpu, avg_batch=batch)
                   for rps, p99 in rps_p99)
    return CellResult(Cell(model, server, encoding, connections), rounds)


# what a run of the reference plan records: models.toml's [bench] roles
ROLES = {"targets_on": {"tensors": "digits", "pipeline": "sentiment", "compute": "digits_mobilenet"}}
RECORDED = BenchResults(
    conditions={"date": "2026-11-23 12:00 UTC", "mode": "full", "cpus": 2, "rounds": 3, "duration_s": 5,
                "warmup_s": 1, "workers": 2, **ROLES},
    ceiling=GeneratorCeiling(64, 80000, 0.92),
    cells=(
        _cell("digits", "triton", "binary", 64, (6000, 20), (6200, 18), (9000, 30), batch=12.0),
        _cell("digits", "flask", "binary", 64, (1500, 60), (1600, 55), (1400, 70)),
        _cell("digits", "fastapi", "binary", 64, (4000, 25), (4100, 24), (3900, 26)),
        _cell("digits", "triton", "binary", 1, (900, 2), (950, 2), (1000, 2)),
        _cell("digits", "fastapi", "binary", 1, (1000, 1.5), (1000, 1.5), (1000, 1.5)),
        _cell("sentiment", "triton", "binary", 64, (3000, 40), (3000, 40), (3000, 40), batch=16.4),
        _cell("sentiment", "triton-nobatch", "binary", 64, (1000, 90), (1000, 90), (1000, 90), batch=1.0),
    ),
    in_process=(InProcess("sentiment", 16, 5000.0, "tokenizer + ONNX Runtime"),),
    client=ClientOverhead(raw_us=500.0, modelport_us=530.0),
)


def test_cells_report_medians_over_rounds_not_means():
    triton = RECORDED.find("digits", "triton", "binary", 64)

    assert triton.rps == 6200 and triton.p99_ms == 20


def test_targets_compare_throughput_ratios_and_p99_as_the_issue_states():
    checks = {c.name: c for c in targets(RECORDED)}

    flask = checks["digits, 64 connections: Triton vs Flask (binary)"]
    assert flask.met is True and flask.observed.startswith("4.13×")
    fastapi = checks["digits, 64 connections: Triton vs FastAPI (binary)"]
    assert fastapi.met is False and "22 % short of 2×" in fastapi.notes[0]
    assert checks["sentiment, 64 connections: dynamic batching on vs off"].met is True
    in_process = checks["sentiment: served samples/s vs in-process at the batch Triton formed"]
    assert in_process.met is False and in_process.observed.startswith("0.60×") and "batch 16" in in_process.observed
    single = checks["digits, 1 connection: Triton vs FastAPI (binary)"]
    assert single.met is True and single.observed.startswith("0.95×")
    assert checks["modelport client overhead over raw tritonclient"].met is True
    assert checks["digits, 64 connections: Triton vs Flask (JSON)"].met is None  # not measured in this recording


def test_a_worse_p99_misses_the_target_even_with_enough_throughput():
    slow_tail = BenchResults(ROLES, None, (
        _cell("digits", "triton", "binary", 64, (9000, 80)),
        _cell("digits", "flask", "binary", 64, (1000, 60)),
    ))

    check = targets(slow_tail)[0]

    assert check.met is False and "p99 33% worse" in check.notes


def test_a_saturated_generator_is_named_as_a_possible_cause_of_a_miss():
    bound = BenchResults(ROLES, None, (
        _cell("digits", "triton", "binary", 64, (2000, 10), cpu=0.97),
        _cell("digits", "flask", "binary", 64, (1000, 60)),
    ))

    assert any("load generator at 97% CPU" in note for note in targets(bound)[0].notes)


def test_requests_waiting_in_tritons_queue_longer_than_the_median_latency_are_named_as_scheduler_stalls():
    stalled = CellResult(Cell("digits", "triton", "binary", 64), (
        Round(rps=900, p50_ms=2.0, p99_ms=500.0, errors=0, generator_cpu=0.1, avg_batch=20.0, queue_us=30000.0),))
    results = BenchResults(ROLES, None, (stalled, _cell("digits", "flask", "binary", 64, (1000, 60))))

    notes = targets(results)[0].notes

    assert any("waited 30.0 ms on average in Triton's queue" in note for note in notes)


def test_markdown_holds_the_table_the_generator_ceiling_and_the_targets():
    text = format_markdown(RECORDED)

    assert "| digits | 64 | triton | binary | 6200 | 6.67 | 20.00 | 0 | 12.00 | — | 40% |" in text
    assert "80000 req/s at 64 connections" in text
    assert "| sentiment | 16 | 5000 | tokenizer + ONNX Runtime |" in text
    assert "+6.0%" in text
    assert "## Targets (issues 5 and 9)" in text


def test_json_round_trips_to_the_same_results():
    assert from_json(to_json(RECORDED)) == RECORDED


def test_a_model_run_checks_every_target_on_its_own_model_and_names_it():
    mine = BenchResults({"model": "churn"}, None, (
        _cell("churn", "triton", "binary", 64, (3000, 10), batch=8.0),
        _cell("churn", "flask", "binary", 64, (1000, 20)),
        _cell("churn", "triton-nobatch", "binary", 64, (1000, 30), batch=1.0),
    ), in_process=(InProcess("churn", 8, 10000.0, "ONNX Runtime"),))

    checks = {c.name: c for c in targets(mine)}

    assert checks["churn, 64 connections: Triton vs Flask (binary)"].observed.startswith("3.00×")
    assert checks["churn, 64 connections: dynamic batching on vs off"].met is True
    assert checks["churn: served samples/s vs in-process at the batch Triton formed"].observed.startswith("0.30×")
    assert not any("digits" in name or "sentiment" in name for name in checks)
    assert "· model `churn` ·" in format_markdown(mine).splitlines()[2]
    assert "Sequential churn calls" in format_markdown(replace(mine, client=ClientOverhead(500.0, 520.0)))


def test_the_compute_bound_model_is_judged_by_served_samples_against_in_process_at_the_batch_formed():
    def recorded(served_rps: float) -> BenchResults:
        return BenchResults(ROLES, None, (_cell("digits_mobilenet", "triton", "binary", 64, (served_rps, 40), batch=9.6),),
                            in_process=(InProcess("digits_mobilenet", 10, 3600.0, "ONNX Runtime, 2 threads"),))

    name = "digits_mobilenet: served samples/s vs in-process at the batch Triton formed"
    met = next(c for c in targets(recorded(2700.0)) if c.name == name)
    missed = next(c for c in targets(recorded(1800.0)) if c.name == name)

    assert met.met is True and met.observed.startswith("0.75× (2700 vs 3600 samples/s at batch 10")
    assert missed.met is False and missed.notes[0] == "29 % short of 0.7×"
    assert next(c for c in targets(RECORDED) if c.name == name).met is None  # no such cells in that recording


def test_a_model_run_checks_the_in_process_target_once():
    mine = BenchResults({"model": "churn"}, None, (_cell("churn", "triton", "binary", 64, (3000, 10), batch=8.0),),
                        in_process=(InProcess("churn", 8, 10000.0, "ONNX Runtime"),))

    names = [c.name for c in targets(mine)]

    assert names.count("churn: served samples/s vs in-process at the batch Triton formed") == 1
