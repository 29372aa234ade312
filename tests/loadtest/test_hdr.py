from loadtest.hdr import TOTAL, LatencyRecorder, Percentiles, new_histogram, to_microseconds


def test_sub_millisecond_latencies_keep_microsecond_resolution():
    recorder = LatencyRecorder()
    for _ in range(1000):
        recorder.on_request("POST", "digits", response_time=0.25, exception=None)
    for _ in range(10):
        recorder.on_request("POST", "digits", response_time=0.9, exception=None)

    p = recorder.percentiles()["POST digits"]

    assert p.count == 1010
    assert 249 <= p.p50_us <= 251  # Locust's own buckets would say 0 ms
    assert 899 <= p.p999_us <= 901


def test_failed_requests_are_left_out_of_the_latency_distribution():
    recorder = LatencyRecorder()
    recorder.on_request("POST", "digits", response_time=5.0, exception=None)
    recorder.on_request("POST", "digits", response_time=0.01, exception=RuntimeError("HTTP 400"))

    assert recorder.percentiles()[TOTAL].count == 1


def test_worker_histograms_merge_on_the_master_and_the_worker_starts_afresh():
    worker, master = LatencyRecorder(), LatencyRecorder()
    for ms in (0.1, 0.2, 0.3):
        worker.on_request("grpc", "sentiment", response_time=ms)
    data = {}

    worker.on_report_to_master("worker-1", data)
    master.on_worker_report("worker-1", data)

    assert master.percentiles()["grpc sentiment"].count == 3
    assert master.total.get_total_count() == 3
    assert worker.total.get_total_count() == 0


def test_percentiles_of_an_empty_histogram_are_zero():
    assert Percentiles.of(new_histogram()) == Percentiles(0, 0, 0, 0, 0, 0)


def test_microseconds_are_clamped_to_the_histogram_range():
    assert to_microseconds(0.0) == 1
    assert to_microseconds(1.2345) == 1234 or to_microseconds(1.2345) == 1235
    assert to_microseconds(10**9) == 120_000_000


def test_the_interval_histogram_is_drained_by_take_interval():
    recorder = LatencyRecorder()
    recorder.on_request("POST", "digits", response_time=1.0)

    assert recorder.take_interval().get_total_count() == 1
    assert recorder.take_interval().get_total_count() == 0
    assert recorder.total.get_total_count() == 1
