"""`python -m gateway soak`: a long run through a running gateway, mixed traffic with a share of hostile requests.

Good requests (the reference models: digits, sentiment, digits_image) go over kept-alive connections and must all be
answered 200; hostile ones (deep or escaped-quote JSON, oversized headers and URLs, bad keys, bad base64, broken
framing) go on connections of their own, from 127.0.0.2 when the gateway is on 127.0.0.1 (another client: the
failed-auth limit they trip is theirs), and must all be answered 4xx. The gateway's resident memory is sampled every
`sample_s`; the run fails when a good request fails, a hostile one is not a clean 4xx, or memory grows (the last
tenth of the samples against the second tenth, after warm-up, by more than `max_growth`).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import random
import ssl
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from PIL import Image, ImageDraw

HOSTILE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class SoakOptions:
    url: str
    key: str
    minutes: float = 30.0
    connections: int = 8
    hostile_share: float = 0.1  # of all requests
    rate_per_s: float = 200.0  # all connections together; 0: as fast as the gateway answers
    pid: int | None = None  # the gateway's process, for its memory; None: not sampled
    sample_s: float = 10.0
    max_growth: float = 0.10  # resident memory, last tenth against the second tenth


@dataclass
class SoakReport:
    seconds: float = 0.0
    good: int = 0
    good_errors: int = 0
    hostile: int = 0
    hostile_not_4xx: int = 0
    first_errors: list[str] = field(default_factory=list)
    good_latency_ms: list[float] = field(default_factory=list, repr=False)
    rss_mib: list[float] = field(default_factory=list)

    def error(self, text: str) -> None:
        if len(self.first_errors) < 10:
            self.first_errors.append(text)

    @property
    def memory_growth(self) -> float | None:
        tenth = len(self.rss_mib) // 10
        if tenth < 1:
            return None
        early = statistics.median(self.rss_mib[tenth:2 * tenth])
        late = statistics.median(self.rss_mib[-tenth:])
        return late / early - 1

    def passed(self, options: SoakOptions) -> bool:
        growth = self.memory_growth
        return (self.good > 0 and self.good_errors == 0 and self.hostile_not_4xx == 0
                and (growth is None or growth <= options.max_growth))

    def summary(self, options: SoakOptions) -> dict:
        latencies = sorted(self.good_latency_ms)
        pick = (lambda q: round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2)) if latencies \
            else (lambda q: None)
        growth = self.memory_growth
        return {"passed": self.passed(options), "seconds": round(self.seconds, 1), "good": self.good,
                "good_per_s": round(self.good / self.seconds, 1) if self.seconds else 0.0,
                "good_errors": self.good_errors, "hostile": self.hostile, "hostile_not_4xx": self.hostile_not_4xx,
                "good_p50_ms": pick(0.5), "good_p99_ms": pick(0.99),
                "rss_mib_first": self.rss_mib[0] if self.rss_mib else None,
                "rss_mib_last": self.rss_mib[-1] if self.rss_mib else None,
                "rss_mib_max": max(self.rss_mib) if self.rss_mib else None,
                "memory_growth": None if growth is None else round(growth, 4),
                "rss_mib_samples": self.rss_mib,
                "first_errors": self.first_errors, "options": {**asdict(options), "key": "(set)"}}


def _png() -> bytes:
    image = Image.new("L", (64, 64))
    ImageDraw.Draw(image).rectangle((28, 8, 36, 56), fill=255)  # a "1"
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def good_requests() -> list[tuple[str, bytes]]:
    image = base64.b64encode(_png()).decode()
    return [("/v1/models/digits:predict", json.dumps({"inputs": [[[[0.5]] * 8] * 8]}).encode()),
            ("/v1/models/sentiment:predict", json.dumps({"inputs": ["a moving, beautiful film"]}).encode()),
            ("/v1/models/digits_image:predict", json.dumps({"inputs": [{"b64": image}]}).encode())]


def hostile_requests(host: str, key: str) -> list[bytes]:
    def post(body: bytes, auth: str = f"Bearer {key}", extra: str = "") -> bytes:
        return (f"POST /v1/models/sentiment:predict HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body
    return [
        post(b'{"inputs": ["' + b'\\"' * 200_000),
        post(b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        post(b'{"inputs": [' + b"[]," * 200_000 + b"[]]}"),
        post(b'{"inputs": ["\xff\xfe"]}'),
        post(b'{"inputs": [{"b64": "not base64!"}]}'),
        post(b'{"inputs": ["x"]}', auth="Bearer mpk_wrong-key"),
        post(b'{"inputs": ["x"]}', extra="X-Big: " + "a" * 20_000 + "\r\n"),
        f"GET /v1/models?{'q' * 10_000} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode(),
        post(b'{"inputs": ["x"]}', extra="Transfer-Encoding: chunked\r\n"),
        post(b'{"inputs": [[' + b"9" * 50_000 + b"]]}"),
    ]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next((int(line.split(b":", 1)[1]) for line in head.lower().split(b"\r\n")
                   if line.startswith(b"content-length:")), 0)
    return status, await reader.readexactly(length)


async def _open(url, context, local_addr=None):
    return await asyncio.open_connection(url.hostname, url.port, ssl=context, local_addr=local_addr)


def hostile_source(url) -> tuple[str, int] | None:
    """On loopback, hostile requests come from 127.0.0.2: another client to the gateway, so the failed-auth limit
    they trip, and the per-client connection cap, fall on them and not on the good traffic."""
    return ("127.0.0.2", 0) if url.hostname == "127.0.0.1" else None


async def _worker(options: SoakOptions, report: SoakReport, deadline: float, seed: int) -> None:
    url = urlsplit(options.url)
    context = ssl._create_unverified_context() if url.scheme == "https" else None  # noqa: S323 - our own gateway
    host = f"{url.hostname}:{url.port}"
    rng = random.Random(seed)
    good = [(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {options.key}\r\n"
             f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
            for path, body in good_requests()]
    hostile = hostile_requests(host, options.key)
    reader, writer = await _open(url, context)
    interval = options.connections / options.rate_per_s if options.rate_per_s else 0.0
    next_at = time.monotonic() + rng.random() * interval  # spread the connections' starts over one interval
    try:
        while time.monotonic() < deadline:
            if interval:
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                next_at += interval
            if rng.random() < options.hostile_share:
                await _hostile(rng.choice(hostile), url, context, report)
                continue
            started = time.perf_counter()
            try:
                writer.write(rng.choice(good))
                status, body = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError) as error:
                report.good += 1
                report.good_errors += 1
                report.error(f"good request: connection failed: {error!r}")
                writer.close()
                reader, writer = await _open(url, context)
                continue
            report.good += 1
            report.good_latency_ms.append((time.perf_counter() - started) * 1000)
            if status != 200:
                report.good_errors += 1
                report.error(f"good request: HTTP {status}: {body[:300]!r}")
    finally:
        writer.close()


async def _hostile(raw: bytes, url, context, report: SoakReport) -> None:
    report.hostile += 1
    try:
        reader, writer = await _open(url, context, hostile_source(url))
        try:
            writer.write(raw)
            status, body = await asyncio.wait_for(_read_response(reader), HOSTILE_TIMEOUT_S)
        finally:
            writer.close()
    except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as error:
        report.hostile_not_4xx += 1
        report.error(f"hostile request {raw[:60]!r}: no answer: {error!r}")
        return
    if not 400 <= status < 500:
        report.hostile_not_4xx += 1
        report.error(f"hostile request {raw[:60]!r}: HTTP {status}: {body[:200]!r}")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise OSError(f"no VmRSS for pid {pid}")


async def _sample_memory(options: SoakOptions, report: SoakReport, deadline: float) -> None:
    while time.monotonic() < deadline:
        report.rss_mib.append(round(_rss_mib(options.pid), 1))
        await asyncio.sleep(min(options.sample_s, max(0.0, deadline - time.monotonic())))


async def _soak(options: SoakOptions) -> SoakReport:
    report = SoakReport()
    started = time.monotonic()
    deadline = started + options.minutes * 60
    tasks = [_worker(options, report, deadline, seed) for seed in range(options.connections)]
    if options.pid is not None:
        tasks.append(_sample_memory(options, report, deadline))
    await asyncio.gather(*tasks)
    report.seconds = time.monotonic() - started
    return report


def run(options: SoakOptions, output: Path | None) -> int:
    report = asyncio.run(_soak(options))
    summary = report.summary(options)
    text = json.dumps(summary, indent=1)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text + "\n")
    print(text)
    return 0 if summary["passed"] else 1
