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


def test_a_run_shorter_than_one_timeline_interval_still_gets_its_point_and_plot(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from loadtest.hdr import LatencyRecorder
    from loadtest.report import RunReport

    options = SimpleNamespace(timeline_interval=3.0, metrics_url="none", prometheus_url="none",
                              report_dir=str(tmp_path))
    recorder = LatencyRecorder()
    report = RunReport(SimpleNamespace(parsed_options=options, runner=None), recorder)
    # the master's side (not importing locust.runners here: locust would monkey-patch this whole test process)
    monkeypatch.setattr(report, "_is_worker", lambda: False)
    report.on_test_start(None)
    for _ in range(40):
        recorder.record("POST digits", 800)
    report.on_test_stop(None)  # before the sampler's first 3 s tick
    report.on_quitting(None)

    assert len(report.points) == 1 and report.points[0].rps > 40 / 3.0  # over the time the run really took
    assert (tmp_path / "timeline.png").is_file()
