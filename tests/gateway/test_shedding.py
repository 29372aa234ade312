"""Load shedding keeps the latency of admitted requests bounded under an overload that otherwise grows it.

Two gateways in front of the same Triton: one sheds (at most 2 requests in flight and 2 waiting for `digits_image`),
one does not (effectively unbounded). Each gets the same open-loop overload: requests arrive at three times the rate
the model sustains, measured first, for a few seconds, whatever the answers. The request is a 1024x1024 PNG, so that
Triton's decoding (one python stub) is the bottleneck, as a GPU model would be, not the gateway's own CPU.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time

import aiohttp
import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPOSITORY
from tests.gateway.conftest import launch_gateway

pytestmark = pytest.mark.integration
MODEL = "digits_image"
OVERLOAD_S = 3.0


def big_digit() -> bytes:
    sample = sorted((REPOSITORY.parent / "models" / "digits" / "samples").glob("*.png"))[3]
    buffer = io.BytesIO()
    Image.open(sample).convert("L").resize((1024, 1024), Image.BILINEAR).save(buffer, "PNG")
    return json.dumps({"inputs": [{"b64": base64.b64encode(buffer.getvalue()).decode()}]}).encode()


async def _post(session, url, body) -> tuple[int, float, str | None]:
    started = time.perf_counter()
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
        await response.read()
        return response.status, time.perf_counter() - started, response.headers.get("Retry-After")


async def closed_loop(url: str, body: bytes, connections: int, seconds: float) -> float:
    """Requests per second the model sustains with `connections` always busy."""
    done = 0
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession() as session:
        async def worker():
            nonlocal done
            while time.perf_counter() < deadline:
                status, _, _ = await _post(session, url, body)
                assert status == 200
                done += 1
        await asyncio.gather(*(worker() for _ in range(connections)))
    return done / seconds


async def open_loop(url: str, body: bytes, rate: float, seconds: float) -> list[tuple[int, float, str | None]]:
    """`rate * seconds` requests sent on schedule, each on its own task, whether or not earlier ones were answered."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=120)) as session:
        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks = []
        for i in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
            tasks.append(asyncio.create_task(_post(session, url, body)))
        return await asyncio.gather(*tasks)


def p99(latencies: list[float]) -> float:
    return float(np.percentile(latencies, 99))


@pytest.fixture(scope="module")
def gateways(triton, tmp_path_factory):
    shedding = ("--no-auth", "--max-in-flight", "2", "--max-pending", "2", "--max-wait", "0.5")
    # unbounded in connections too: the open loop holds hundreds of connections from one client while the queue grows
    unbounded = ("--no-auth", "--max-in-flight", "100000", "--max-pending", "0",
                 "--max-connections", "100000", "--max-connections-per-client", "100000")
    with launch_gateway(triton, tmp_path_factory.mktemp("shed"), *shedding) as shed, \
            launch_gateway(triton, tmp_path_factory.mktemp("unbounded"), *unbounded) as unshed:
        yield shed, unshed


def test_shedding_keeps_p99_bounded_under_an_overload_that_grows_it_without(gateways):
    shed, unshed = gateways
    body = big_digit()
    path = f"/v1/models/{MODEL}:predict"
    capacity = asyncio.run(closed_loop(unshed.url + path, body, connections=2, seconds=2.0))
    rate = min(300.0, max(20.0, 3 * capacity))

    without = asyncio.run(open_loop(unshed.url + path, body, rate, OVERLOAD_S))  # returns once all are answered
    with_shedding = asyncio.run(open_loop(shed.url + path, body, rate, OVERLOAD_S))

    served_without = [s for s in without if s[0] == 200]
    served = [s for s in with_shedding if s[0] == 200]
    refused = [s for s in with_shedding if s[0] == 503]
    figures = (f"capacity {capacity:.0f} req/s, offered {rate:.0f} req/s for {OVERLOAD_S:g} s; without shedding "
               f"{len(served_without)} served, p99 {p99([s[1] for s in served_without]) * 1000:.0f} ms; with "
               f"shedding {len(served)} served, {len(refused)} shed, p99 of the served "
               f"{p99([s[1] for s in served]) * 1000:.0f} ms")
    print(figures)
    assert len(served_without) == len(without), f"the unbounded gateway refused requests: {figures}"
    assert refused and all(s[2] == "1" for s in refused), f"nothing was shed, or without Retry-After: {figures}"
    assert len(served) + len(refused) == len(with_shedding), figures
    assert served, figures
    unbounded_p99, bounded_p99 = p99([s[1] for s in served_without]), p99([s[1] for s in served])
    # the queue grows for the whole overload without shedding: its p99 is a good part of the overload's length
    assert unbounded_p99 > 0.25 * OVERLOAD_S, figures
    assert bounded_p99 < unbounded_p99 / 3, figures
    # with shedding a request waits for at most 2 in flight and 2 ahead of it, or 0.5 s (--max-wait)
    assert bounded_p99 < 0.5 + 5 * (2 / capacity) + 0.5, figures
    assert shed.metric("modelport_gateway_rejected_requests_total", model=MODEL, problem="overloaded") == \
        len(refused)
