from loadtest.hdr import new_histogram
from loadtest.report import TimelinePoint, plot_timeline, timeline_point


def test_a_timeline_point_turns_an_interval_histogram_into_rate_and_millisecond_percentiles():
    histogram = new_histogram()
    for _ in range(300):
        histogram.record_value(500)  # µs
    histogram.record_value(20_000)

    point = timeline_point(seconds=6.0, interval_s=3.0, histogram=histogram)

    assert point.seconds == 6.0 and point.rps == 301 / 3.0
    assert 0.49 < point.p50_ms < 0.51 and point.p99_ms < 1.0


def test_an_empty_interval_is_a_zero_point_not_an_error():
    assert timeline_point(3.0, 3.0, new_histogram()) == TimelinePoint(3.0, 0.0, 0.0, 0.0, 0.0)


def test_the_timeline_plot_is_written_as_a_png(tmp_path):
    points = [TimelinePoint(t, 100.0 + t, 1.0, 2.0, 3.0 + t) for t in (3.0, 6.0, 9.0)]

    plot_timeline(points, tmp_path / "timeline.png", "title")

    assert (tmp_path / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
