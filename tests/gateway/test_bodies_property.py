"""Property-based: hypothesis builds adversarial bodies up to the size limit (escaped-quote runs, deep nesting, long
strings, huge numbers, many tiny items, broken UTF-8, and mixes of these) and sends each to the session gateway. Each
is answered, with no 5xx, within 1 s, and /healthz, polled on a kept-alive connection meanwhile, always answers within
50 ms: no body stalls the event loop."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from typing import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gateway.test_hostile import LIMIT, _request, exchange

pytestmark = pytest.mark.integration
ANSWER_WITHIN_S = 1.0
HEALTHZ_WITHIN_S = 0.050

# (unit, longest run): each fragment is one unit repeated, up to the body limit
UNITS = [b'\\"', b"\\", b'"', b"\\\\\\\"", b"[", b"]", b'{"a":', b"}", b"[[]],", b"0,", b"[],", b"{},", b'"",',
         b"9", b"1e999", b"-0.", b"\\ud800", b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"a", b" ",
         b"\x00", b'{"b64": "', b"QUJD"]


@st.composite
def fragments(draw) -> bytes:
    unit = draw(st.sampled_from(UNITS))
    most = LIMIT // len(unit)
    count = draw(st.one_of(st.integers(1, 64), st.integers(1, most), st.just(most)))
    if unit == b"[" and draw(st.booleans()):  # balanced nesting, as deep as the run
        return b"[" * count + b"]" * count
    return unit * count


bodies = st.tuples(
    st.sampled_from([b"", b'{"inputs": [', b'{"inputs": ["', b'{"inputs": {"image": [', b"["]),
    st.lists(st.one_of(fragments(), st.binary(max_size=256)), min_size=1, max_size=5),
    st.sampled_from([b"", b"]}", b'"]}', b"]]]]}"]),
    st.sampled_from(["sentiment", "digits", "digits_image"]),
).map(lambda parts: ((parts[0] + b"".join(parts[1]) + parts[2])[:LIMIT], parts[3]))


# A separate process polls /healthz on one kept-alive connection until its stdin closes, then prints the number of
# answers and the slowest in seconds: the test process's own work (building 2 MB bodies) cannot slow the probe.
PROBE = """
import http.client, sys, threading, time
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
connection = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
answers, slowest = 0, 0.0
while not done.is_set():
    started = time.perf_counter()
    connection.request("GET", "/healthz")
    response = connection.getresponse()
    response.read()
    if response.status != 200:
        raise SystemExit(f"/healthz answered {response.status}")
    slowest = max(slowest, time.perf_counter() - started)
    answers += 1
    if answers == 1:
        print("ready", flush=True)
    time.sleep(0.005)
print(answers, slowest)
"""


@contextlib.contextmanager
def healthz_probe(port: int) -> Iterator[list]:
    """Yields a list that holds (answers, slowest seconds) once the block is over."""
    result: list = []
    probe = subprocess.Popen([sys.executable, "-c", PROBE, str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        assert probe.stdout.readline().strip() == "ready"  # answering before the body goes out
        yield result
    finally:
        out, _ = probe.communicate("", timeout=10)
    answers, slowest = out.split()[-2:]
    result.extend((int(answers), float(slowest)))


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(case=bodies)
def test_no_body_up_to_the_limit_stalls_the_gateway(gateway, case):
    body, model = case
    with healthz_probe(gateway.port) as probe:
        status, answer, seconds = exchange(gateway, _request(f"Authorization: Bearer {gateway.key}\r\n", body,
                                                             model=model))
        time.sleep(0.02)
    answers, slowest = probe
    assert 200 <= status < 500, f"{model} {len(body)} bytes {body[:80]!r}: {answer[:300]!r}"
    assert seconds < ANSWER_WITHIN_S, f"{model} {len(body)} bytes {body[:80]!r}: answered in {seconds:.2f} s"
    assert answers >= 1 and slowest < HEALTHZ_WITHIN_S, \
        f"{model} {len(body)} bytes {body[:80]!r}: /healthz took {slowest * 1000:.0f} ms"
