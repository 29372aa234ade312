"""The benchmark's load generator: closed-loop HTTP/1.1 keep-alive over raw asyncio sockets.

Every server is driven by this same code with requests serialized once up front, so per request the generator only
writes bytes, finds the end of the response (Content-Length) and stores a timestamp: no HTTP library, no per-request
objects. Each connection keeps exactly one request in flight; connections = concurrency. It runs in its own
process so its CPU time can be measured (`Measurement.generator_cpu`): close to 1.0 means the generator, not the
server, set the pace.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import time
from dataclasses import dataclass

import numpy as np

from core.measure import payloads, v2


@dataclass(frozen=True)
class HttpTarget:
    host: str
    port: int
    requests: tuple[bytes, ...]  # complete HTTP/1.1 requests (head + body), cycled per connection


@dataclass(frozen=True)
class LoadSpec:
    connections: int
    duration_s: float
    warmup_s: float


@dataclass(frozen=True)
class Measurement:
    """One closed-loop run: what the client saw during the measured window (after warm-up)."""

    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    generator_cpu: float  # CPU seconds of the generator process / wall seconds (1.0 = one core saturated)
    first_error: str = ""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def http_request(host: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def triton_requests(samples: tuple[payloads.Sample, ...], encoding: str, host: str) -> tuple[bytes, ...]:
    """Payload samples as framed HTTP/1.1 requests to Triton's v2 API."""
    built = (v2.http_request(sample, encoding) for sample in samples)
    return tuple(http_request(host, r.path, r.body, r.headers) for r in built)


def content_length(head: bytes) -> int | None:
    """Content-Length from a lower-cased response head, or None. Anchored at a line start, so Triton's
    `Inference-Header-Content-Length` is not mistaken for it."""
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        return None
    end = head.find(b"\r\n", at + 2)
    return int(head[at + 17: end if end > 0 else None])


class _Connection(asyncio.Protocol):
    """One keep-alive connection; `closed` resolves when it ends. A server that closes after each response
    (gunicorn's sync workers do not keep connections alive) is followed by a reconnect in `_slot`."""

    def __init__(self, requests, window, sink, closed) -> None:
        self.requests = requests
        self.window = window  # (measure_from, stop_at) in perf_counter seconds
        self.sink = sink
        self.closed = closed
        self.buffer = bytearray()
        self.sent_at = 0.0
        self.in_flight = False
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self._send()

    def _send(self) -> None:
        self.sent_at = time.perf_counter()
        self.in_flight = True
        self.transport.write(next(self.requests))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end + 2]).lower()
        length = content_length(head)
        if length is None:
            self._fail("response without Content-Length (chunked responses are not supported)")
            return
        if len(self.buffer) < end + 4 + length:
            return
        now = time.perf_counter()
        self.in_flight = False
        status = int(head[9:12])
        if len(self.buffer) > end + 4 + length:
            self._fail("bytes after the response: the server answered more than once")
            return
        tail = bytes(self.buffer[end + 4: end + 4 + 200]) if status != 200 else b""
        self.buffer.clear()
        if now >= self.window[0]:
            self.sink.record(now - self.sent_at, status, tail)
        if now >= self.window[1] or b"\r\nconnection: close" in head:
            self.transport.close()
            return
        self._send()

    def _fail(self, reason: str) -> None:
        self.in_flight = False
        self.sink.record_error(reason)
        self.sink.fatal = True
        self.transport.close()

    def connection_lost(self, exc) -> None:
        if self.in_flight and time.perf_counter() >= self.window[0]:
            self.sink.record_error(f"connection lost with a request in flight: {exc!r}")
        if not self.closed.done():
            self.closed.set_result(None)


class _Sink:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors = 0
        self.first_error = ""
        self.fatal = False  # a protocol violation: stop rather than reconnect and repeat it

    def record(self, seconds: float, status: int, tail: bytes) -> None:
        if status == 200:
            self.latencies.append(seconds)
        else:
            self.record_error(f"HTTP {status}: {tail.decode('utf-8', 'replace')}")

    def record_error(self, reason: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or reason


async def _slot(target: HttpTarget, requests, window, sink: _Sink) -> None:
    """One unit of concurrency: a connection kept busy until the window ends, reopened if the server closes it."""
    loop = asyncio.get_running_loop()
    while time.perf_counter() < window[1] and not sink.fatal:
        closed = loop.create_future()
        try:
            await loop.create_connection(lambda: _Connection(requests, window, sink, closed), target.host, target.port)
        except OSError as error:
            sink.record_error(f"cannot connect to {target.host}:{target.port}: {error!r}")
            return
        await closed


async def _run(target: HttpTarget, spec: LoadSpec) -> tuple[_Sink, float]:
    start = time.perf_counter()
    window = (start + spec.warmup_s, start + spec.warmup_s + spec.duration_s)
    sink = _Sink()
    slots = []
    for i in range(spec.connections):
        # spread where the connections start in the request list, so they do not send identical bodies in step (and,
        # with a list longer than a run sends, never the same body twice: the response cache's unique cell)
        offset = i * len(target.requests) // spec.connections
        requests = itertools.cycle(target.requests[offset:] + target.requests[:offset])
        slots.append(_slot(target, requests, window, sink))
    await asyncio.wait_for(asyncio.gather(*slots), timeout=spec.warmup_s + spec.duration_s + 30)
    return sink, spec.duration_s


def run_here(target: HttpTarget, spec: LoadSpec) -> Measurement:
    """Run in the calling process (tests); `run` is the isolated version the benchmark uses."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    # uvloop (pinned with uvicorn) roughly halves the event loop's cost per request; same loop for every server
    import uvloop

    sink, seconds = uvloop.run(_run(target, spec))
    cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    lat = np.array(sink.latencies) * 1000
    return Measurement(
        requests=len(lat),
        errors=sink.errors,
        seconds=seconds,
        p50_ms=float(np.percentile(lat, 50)) if len(lat) else 0.0,
        p99_ms=float(np.percentile(lat, 99)) if len(lat) else 0.0,
        generator_cpu=cpu,
        first_error=sink.first_error,
    )


def _child(target: HttpTarget, spec: LoadSpec, pipe) -> None:
    try:
        pipe.send(run_here(target, spec))
    except BaseException as error:  # the parent must always get an answer
        pipe.send(error)


def run(target: HttpTarget, spec: LoadSpec) -> Measurement:
    """Run in a fresh process: its CPU time is its own, and no state leaks from one server's run to the next."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(target, spec, child), daemon=True)
    process.start()
    child.close()
    if not parent.poll(spec.warmup_s + spec.duration_s + 60):
        process.kill()
        raise TimeoutError(f"load generator did not report within {spec.warmup_s + spec.duration_s + 60:.0f} s")
    result = parent.recv()
    process.join(5)
    if isinstance(result, BaseException):
        raise result
    return result
