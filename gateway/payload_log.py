"""The payload log: a sampled, bounded, non-blocking record of predict requests and their answers, as JSON lines.

A request thread only samples and puts a record on a bounded queue (`put_nowait`), bounded in records and in the
bytes of the inputs they hold; when the queue is full the record is dropped and counted, so a slow disk never slows or fails a request (the failure KServe's logger has, kserve
#6167). One writer thread serialises, redacts and appends the records to `payload-<UTC time>-<n>.jsonl` in the log's
folder, starts a new file past `file_bytes`, and deletes the oldest files past `total_bytes` or `max_age_s`.

A record: `ts`, `request_id`, `model`, `version`, `ms` (the gateway's latency until the answer was rendered),
`inputs` (input name -> the items as sent; bytes as UTF-8 text, else `{"b64": ...}`; a hashed input as
`{"sha256": ...}`; a dropped one absent) and `outputs` (the predictions as the response carried them).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import queue
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import orjson
from prometheus_client import CollectorRegistry, Counter

from gateway.options import PayloadLogOptions

_log = logging.getLogger("modelport.gateway")
_STOP = object()
FILE_PATTERN = "payload-*.jsonl"
AGE_CHECK_S = 60.0  # an idle log still deletes files past max_age_s this often


def input_bytes(arrays: Mapping[str, np.ndarray]) -> int:
    """What a record's inputs hold: a numeric array's buffer, or each item's bytes (texts, images)."""
    total = 0
    for array in arrays.values():
        if array.dtype != object:
            total += array.nbytes
        else:
            total += sum(len(item) if isinstance(item, (bytes, bytearray, str)) else 8 for item in array.ravel())
    return total


@dataclass(frozen=True)
class PayloadRecord:
    """What a request hands over: references only; the writer thread does the copying and the serialising."""

    request_id: str
    model: str
    version: str
    seconds: float
    inputs: Mapping[str, np.ndarray]
    outputs: list
    time: float


def _jsonable(array: np.ndarray) -> object:
    if array.dtype != object:
        return array.tolist()
    return [_jsonable(item) if isinstance(item, np.ndarray) else _text_or_b64(item) for item in array]


def _text_or_b64(item: object) -> object:
    if isinstance(item, (bytes, bytearray)):
        try:
            return bytes(item).decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(item).decode("ascii")}
    return item if isinstance(item, (str, int, float, bool)) or item is None else str(item)


class PayloadLog:
    def __init__(self, options: PayloadLogOptions, registry: CollectorRegistry, sample=random.random):
        self.options = options
        self.folder = options.folder
        self._sample = sample
        self._queue: queue.Queue = queue.Queue(maxsize=options.queue_size)
        self._queued_bytes = 0
        self._queued_lock = threading.Lock()
        self.written = Counter("modelport_gateway_payload_records_total", "Payload records written to the log",
                               registry=registry)
        self.dropped = Counter("modelport_gateway_payload_dropped_total",
                               "Payload records dropped: the log's queue was full, or writing failed", ["reason"],
                               registry=registry)
        self.bytes = Counter("modelport_gateway_payload_bytes_total", "Bytes written to the payload log",
                             registry=registry)
        self.deleted = Counter("modelport_gateway_payload_files_deleted_total",
                               "Payload log files deleted past the size or age cap", registry=registry)
        for reason in ("queue_full", "write_failed"):
            self.dropped.labels(reason)
        self._file = None
        self._file_path: Optional[Path] = None
        self._file_size = 0
        self._sequence = 0
        self._thread = threading.Thread(target=self._run, name="payload-log", daemon=True)

    def start(self) -> "PayloadLog":
        self.folder.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def offer(self, record: PayloadRecord) -> None:
        """Called on the request's path: sample, enqueue, or drop and count. Never blocks, never raises."""
        if self._sample() >= self.options.sample_rate:
            return
        size = input_bytes(record.inputs)
        with self._queued_lock:
            if self._queued_bytes + size > self.options.queue_bytes:
                self.dropped.labels("queue_full").inc()
                return
            self._queued_bytes += size
        try:
            self._queue.put_nowait((record, size))
        except queue.Full:
            with self._queued_lock:
                self._queued_bytes -= size
            self.dropped.labels("queue_full").inc()

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued (for up to `timeout_s`), then close the file."""
        try:
            self._queue.put(_STOP, timeout=timeout_s)
        except queue.Full:
            pass
        self._thread.join(timeout_s)

    # ---- the writer thread ------------------------------------------------------------------------------------------

    def _run(self) -> None:
        last_age_check = time.monotonic()
        while True:
            try:
                item = self._queue.get(timeout=AGE_CHECK_S)
            except queue.Empty:
                item = None
            if item is _STOP:
                break
            if item is not None:
                record, size = item
                try:
                    self._write(self.serialise(record))
                except Exception:  # noqa: BLE001 - a full disk or a bad value loses this record, not the log
                    _log.exception("payload log: a record could not be written")
                    self.dropped.labels("write_failed").inc()
                with self._queued_lock:
                    self._queued_bytes -= size
            if time.monotonic() - last_age_check >= AGE_CHECK_S:
                last_age_check = time.monotonic()
                self.enforce_caps()
        if self._file is not None:
            self._file.close()

    def serialise(self, record: PayloadRecord) -> bytes:
        inputs = {}
        for name, array in record.inputs.items():
            if name in self.options.drop:
                continue
            value = _jsonable(np.asarray(array))
            if name in self.options.hash:
                value = {"sha256": hashlib.sha256(orjson.dumps(value)).hexdigest()}
            inputs[name] = value
        return orjson.dumps({
            "ts": datetime.fromtimestamp(record.time, timezone.utc).isoformat(timespec="milliseconds"),
            "request_id": record.request_id, "model": record.model, "version": record.version,
            "ms": round(record.seconds * 1000, 3), "inputs": inputs, "outputs": record.outputs,
        }) + b"\n"

    def _write(self, line: bytes) -> None:
        if self._file is None or self._file_size >= self.options.file_bytes:
            self._rotate()
        self._file.write(line)
        self._file.flush()
        self._file_size += len(line)
        self.written.inc()
        self.bytes.inc(len(line))

    def _rotate(self) -> None:
        if self._file is not None:
            self._file.close()
        self._sequence += 1
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        self._file_path = self.folder / f"payload-{stamp}-{self._sequence:06d}.jsonl"
        self._file = open(self._file_path, "ab")
        self._file_size = 0
        self.enforce_caps()

    def enforce_caps(self) -> None:
        """Delete the oldest closed files while the folder holds more than `total_bytes`, and any older than
        `max_age_s`. The file being written is never deleted."""
        files = sorted(p for p in self.folder.glob(FILE_PATTERN) if p != self._file_path)
        sizes = {p: p.stat().st_size for p in files}
        total = sum(sizes.values()) + self._file_size
        now = time.time()
        for path in files:
            if total <= self.options.total_bytes and now - path.stat().st_mtime <= self.options.max_age_s:
                continue
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            total -= sizes[path]
            self.deleted.inc()
