"""The payload log: records with the right fields and redaction through a real gateway and Triton; rotation, size and
age caps, sampling, and a full queue that drops and counts instead of waiting (the writer held on purpose)."""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from pathlib import Path

import numpy as np
import orjson
import pytest
import requests
from prometheus_client import CollectorRegistry

from gateway.options import OptionsError, PayloadLogOptions
from gateway.payload_log import PayloadLog, PayloadRecord
from tests.conftest import REPOSITORY
from tests.gateway.conftest import launch_gateway

TEXTS = ["a moving, beautifully acted film", "a dull, boring mess"]


def record(n: int, size: int = 100) -> PayloadRecord:
    return PayloadRecord(f"req-{n:05d}", "digits", "1", 0.002, {"image": np.full((1, size), n, np.float32)},
                         [{"label": "3", "score": 0.9}], time.time())


def lines(folder: Path) -> list[dict]:
    return [orjson.loads(line) for path in sorted(folder.glob("payload-*.jsonl"))
            for line in path.read_bytes().splitlines()]


def value(registry: CollectorRegistry, name: str, **labels) -> float:
    return registry.get_sample_value(name, labels) or 0.0


# ---- in-process: the log on its own ---------------------------------------------------------------------------------

def test_a_full_queue_drops_and_counts_without_waiting_for_a_held_writer(tmp_path):
    held = threading.Event()

    class HeldWriter(PayloadLog):
        def _write(self, line: bytes) -> None:
            held.wait(30)
            super()._write(line)

    registry = CollectorRegistry()
    log = HeldWriter(PayloadLogOptions(tmp_path, queue_size=2), registry).start()
    started = time.perf_counter()
    for n in range(50):
        log.offer(record(n))
    offered_in = time.perf_counter() - started
    # the writer holds at most one record, the queue two: the other 47 or more were dropped, at once
    dropped = value(registry, "modelport_gateway_payload_dropped_total", reason="queue_full")
    assert 47 <= dropped <= 48 and offered_in < 0.5, (dropped, offered_in)
    held.set()
    log.close()
    written = value(registry, "modelport_gateway_payload_records_total")
    assert written + dropped == 50 and len(lines(tmp_path)) == written
    assert value(registry, "modelport_gateway_payload_bytes_total") == sum(
        p.stat().st_size for p in tmp_path.glob("payload-*.jsonl"))


def test_the_queue_is_bounded_in_bytes_too(tmp_path):
    held = threading.Event()

    class HeldWriter(PayloadLog):
        def _write(self, line: bytes) -> None:
            held.wait(30)
            super()._write(line)

    registry = CollectorRegistry()
    # each record's inputs are 4,000 bytes: 3 fit in 12,000, whatever the queue's length allows
    log = HeldWriter(PayloadLogOptions(tmp_path, queue_size=1000, queue_bytes=12_000), registry).start()
    for n in range(20):
        log.offer(record(n, size=1000))
    assert value(registry, "modelport_gateway_payload_dropped_total", reason="queue_full") == 17
    held.set()
    log.close()
    assert value(registry, "modelport_gateway_payload_records_total") == 3
    log = PayloadLog(PayloadLogOptions(tmp_path / "again", queue_bytes=12_000), registry=CollectorRegistry()).start()
    for n in range(20):  # once written, a record's bytes are free again
        log.offer(record(n, size=1000))
        time.sleep(0.01)
    log.close()
    assert len(lines(tmp_path / "again")) == 20


def test_files_rotate_and_the_oldest_go_past_the_total_size_cap(tmp_path):
    registry = CollectorRegistry()
    options = PayloadLogOptions(tmp_path, file_bytes=2048, total_bytes=8192)
    log = PayloadLog(options, registry).start()
    for n in range(200):
        log.offer(record(n, size=40))
    log.close()
    files = sorted(tmp_path.glob("payload-*.jsonl"))
    one = len(orjson.dumps(lines(tmp_path)[0])) + 1
    assert len(files) >= 3 and all(p.stat().st_size < options.file_bytes + one for p in files)
    assert sum(p.stat().st_size for p in files) <= options.total_bytes + options.file_bytes + one
    assert value(registry, "modelport_gateway_payload_files_deleted_total") > 0
    kept = [r["request_id"] for r in lines(tmp_path)]
    assert kept[-1] == "req-00199" and "req-00000" not in kept  # the newest kept, the oldest deleted, in order
    assert kept == sorted(kept)


def test_files_older_than_the_age_cap_are_deleted(tmp_path):
    log = PayloadLog(PayloadLogOptions(tmp_path, max_age_s=3600), CollectorRegistry())
    old, young = tmp_path / "payload-20200101T000000000000-000001.jsonl", \
        tmp_path / "payload-20200101T000000000000-000002.jsonl"
    old.write_text("{}\n"), young.write_text("{}\n")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    log.enforce_caps()
    assert not old.exists() and young.exists()


def test_sampling_keeps_the_share_asked_for(tmp_path):
    draws = iter([0.1, 0.6, 0.3, 0.9] * 5)
    log = PayloadLog(PayloadLogOptions(tmp_path, sample_rate=0.5), CollectorRegistry(), sample=lambda: next(draws))
    log.start()
    for n in range(20):
        log.offer(record(n))
    log.close()
    assert [r["request_id"] for r in lines(tmp_path)] == [f"req-{n:05d}" for n in range(20) if n % 2 == 0]


def test_bad_options_name_the_flag():
    with pytest.raises(OptionsError, match="--payload-total-bytes"):
        PayloadLogOptions(Path("x"), file_bytes=4096, total_bytes=4096)
    with pytest.raises(OptionsError, match="--payload-sample"):
        PayloadLogOptions(Path("x"), sample_rate=0)
    with pytest.raises(OptionsError, match="--payload-queue-bytes"):
        PayloadLogOptions(Path("x"), queue_bytes=10)
    with pytest.raises(OptionsError, match="either dropped or hashed"):
        PayloadLogOptions(Path("x"), drop=("text",), hash=("text",))


# ---- through a real gateway and Triton -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def logged(triton, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("payload")
    with launch_gateway(triton, workdir, "--no-auth", "--payload-log", str(workdir / "payload"),
                        "--payload-hash", "text", "--payload-drop", "image_bytes", "--payload-queue", "4") as running:
        yield running, workdir / "payload"


def wait_for(predicate, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    return predicate()


@pytest.mark.integration
def test_records_carry_the_request_the_answer_and_the_redaction(logged):
    gateway, folder = logged
    digits = np.load(REPOSITORY.parent / "models" / "digits" / "heldout.npz")["x"][:2].tolist()
    png = sorted((REPOSITORY.parent / "models" / "digits" / "samples").glob("*.png"))[0].read_bytes()
    answers = {}
    for model, send in (("sentiment", {"json": {"inputs": TEXTS}}), ("digits", {"json": {"inputs": digits}}),
                        ("digits_image", {"files": {"file": ("d.png", png, "image/png")}})):
        response = requests.post(f"{gateway.url}/v1/models/{model}:predict", timeout=30, **send)
        assert response.status_code == 200, response.text
        answers[response.headers["x-request-id"]] = (model, response.json()["predictions"])
    by_id = wait_for(lambda: {r["request_id"]: r for r in lines(folder)} if len(lines(folder)) >= 3 else None)
    assert by_id and set(by_id) >= set(answers), gateway.log_tail()
    for request_id, (model, predictions) in answers.items():
        found = by_id[request_id]
        assert found["model"] == model and found["version"] == "1" and found["outputs"] == predictions
        assert 0 < found["ms"] < 30_000 and found["ts"].endswith("+00:00")
    sentiment, digit, image = (by_id[i] for i in answers)
    assert set(sentiment["inputs"]["text"]) == {"sha256"} and len(sentiment["inputs"]["text"]["sha256"]) == 64
    assert TEXTS[0] not in orjson.dumps(sentiment).decode()
    assert np.allclose(digit["inputs"]["image"], digits)  # not redacted: as sent
    assert image["inputs"] == {}  # image_bytes dropped
    assert gateway.metric("modelport_gateway_payload_records_total") >= 3


@pytest.mark.integration
def test_a_burst_beyond_the_queue_never_fails_a_request_and_every_record_is_written_or_counted(logged):
    gateway, folder = logged

    def metric(name, **labels):
        return gateway.metric(name, **labels) or 0.0

    before = metric("modelport_gateway_payload_records_total") + \
        metric("modelport_gateway_payload_dropped_total", reason="queue_full")
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda _: requests.post(f"{gateway.url}/v1/models/sentiment:predict",
                                                         json={"inputs": TEXTS}, timeout=30).status_code, range(64)))
    assert statuses == [200] * 64
    accounted = wait_for(lambda: (metric("modelport_gateway_payload_records_total")
                                  + metric("modelport_gateway_payload_dropped_total", reason="queue_full")
                                  - before) == 64 or None)
    assert accounted, gateway.log_tail()
    assert metric("modelport_gateway_payload_bytes_total") == sum(
        p.stat().st_size for p in folder.glob("payload-*.jsonl"))


@pytest.mark.integration
def test_without_a_feedback_window_feedback_is_404_saying_it_is_off(logged):
    gateway, _ = logged
    response = requests.post(f"{gateway.url}/v1/feedback", json={"request_id": "x", "label": "1"}, timeout=10)
    assert response.status_code == 404 and response.json()["detail"] == "feedback is off on this gateway"
    assert "--feedback-window" in response.json()["fix"]
