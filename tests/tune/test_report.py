"""The report of a recorded run: Markdown, the PNG, and measurements.json read back to the same trials."""

from __future__ import annotations

from tests.tune.helpers import RECORDED_DIGITS
from tune import report


def test_measurements_survive_a_write_and_read_back(tmp_path):
    conditions, criteria, tunings = report.load_measurements(RECORDED_DIGITS)

    report.write_measurements(tmp_path / "m.json", conditions, criteria, tunings)
    again = report.load_measurements(tmp_path / "m.json")

    assert again[0] == conditions and again[1] == criteria
    assert [t.trials for t in again[2]] == [t.trials for t in tunings]
    assert [t.choice.winner.candidate for t in again[2]] == [t.choice.winner.candidate for t in tunings]


def test_the_markdown_lists_every_candidate_with_its_verdict_and_the_plot(tmp_path):
    conditions, criteria, [tuning] = report.load_measurements(RECORDED_DIGITS)
    png = report.plot(tuning, tmp_path / "digits.png")

    text = report.markdown(conditions, criteria, [tuning], {"digits": png.name}, {"digits": {}})

    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "## digits" in text and "![throughput vs p99](digits.png)" in text
    assert f"load average {conditions['load_average_start']} at start" in text
    rows = [line for line in text.splitlines() if line.startswith("| instances")]
    assert len(rows) == len({t.candidate for t in tuning.trials})
    assert sum("**chosen (untuned)**" in row for row in rows) == 1
    assert "no value changed" in text
