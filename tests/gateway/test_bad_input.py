"""Every class of request that Triton answers with 500, or that crashes it, gets a 4xx from the gateway; Triton never
sees it (its inference statistics do not move) and the gateway keeps answering.

Sent over raw sockets where an HTTP client would refuse to send it. The session gateway has 1 s header and body
deadlines."""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.gateway.conftest import triton_requests

pytestmark = pytest.mark.integration


def exchange(gateway, chunks, pause_s: float = 0.0, timeout_s: float = 10.0) -> tuple[int, bytes, float]:
    """(status, whole answer, seconds until the gateway closed) for raw bytes sent in chunks, `pause_s` apart."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=timeout_s) as sock:
        for chunk in chunks:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(pause_s)
        answer = b""
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            answer += data
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
    return status, answer, time.monotonic() - started


def head(gateway, body_length, extra: bytes = b"", model: str = "sentiment") -> bytes:
    return (f"POST /v1/models/{model}:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {gateway.key}\r\nContent-Type: application/json\r\nConnection: close\r\n"
            ).encode() + extra + (
        f"Content-Length: {body_length}\r\n\r\n".encode() if body_length is not None else b"\r\n")


def problem(answer: bytes) -> dict:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])


@pytest.fixture
def untouched(gateway, triton):
    """Asserts after the test that Triton counted no inference and that the gateway still answers."""
    before = triton_requests(triton)
    yield
    assert triton_requests(triton) == before, "a bad request reached Triton"
    ok = gateway.predict("sentiment", {"inputs": ["still up"]})
    assert ok.status_code == 200, gateway.log_tail()
    assert triton_requests(triton) > before


BODY = b'{"inputs": ["a moving film"]}'


def test_json_nested_200000_deep_which_crashes_triton_is_a_400_before_parsing(gateway, untouched):
    deep = b'{"inputs": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    status, answer, seconds = exchange(gateway, [head(gateway, len(deep)) + deep])
    assert status == 400 and "more JSON values than any request this model takes" in problem(answer)["detail"]


def test_malformed_json_which_triton_answers_500_is_a_400_saying_where(gateway, untouched):
    status, answer, _ = exchange(gateway, [head(gateway, 12) + b'{"inputs": ['])
    assert status == 400 and "line 1, column 13" in problem(answer)["detail"]


@pytest.mark.parametrize("body", [b"\xff\xfe{}", '{"inputs": ["caf\u00e9"]}'.encode("latin-1")],
                         ids=["utf-16-bom", "latin-1"])
def test_a_body_that_is_not_utf8_is_a_400_naming_the_byte(gateway, untouched, body):
    status, answer, _ = exchange(gateway, [head(gateway, len(body)) + body])
    assert status == 400 and "not UTF-8: byte" in problem(answer)["detail"]


def test_a_lone_surrogate_in_a_text_is_a_400_not_an_encoding_crash(gateway, untouched):
    body = b'{"inputs": ["\\ud800 half a character"]}'
    status, answer, _ = exchange(gateway, [head(gateway, len(body)) + body])
    assert status == 400 and "surrogate" in problem(answer)["detail"]


@pytest.mark.parametrize(("model", "document", "field"), [
    ("sentiment", {"inputs": 5}, "/inputs"),
    ("sentiment", {"inputs": [5]}, "/inputs/0"),
    ("sentiment", {"inputs": [{"b64": "not base64!"}]}, "/inputs/0/b64"),
    ("sentiment", {"inputs": ["x"] * 33}, "/inputs"),
    ("sentiment", {"inputs": ["x"], "extra": 1}, "/extra"),
    ("sentiment", {"inputs": ["x"], "top": 0}, "/top"),
    ("sentiment", ["x"], ""),
    ("digits", {"inputs": {"image": [[[["a"]] * 8] * 8]}}, "/inputs/image/0/0/0/0"),
    ("digits", {"inputs": {"image": [[[[1e39]] * 8] * 8]}}, "/inputs/image/0/0/0/0"),
    ("digits", {"inputs": {"pixels": []}}, "/inputs/pixels"),
    ("sentiment_classifier", {"inputs": [[1.5] * 64]}, "/inputs/0/0"),
    ("sentiment_classifier", {"inputs": [[2 ** 70] * 64]}, "/inputs/0/0"),  # beyond 64 bits: parsed as a float
], ids=["not-a-list", "number-for-text", "bad-base64", "too-many-items", "unknown-field", "top-zero", "not-an-object",
        "string-for-number", "overflows-fp32", "unknown-input", "fraction-for-int64", "int-beyond-int64"])
def test_wrong_types_and_shapes_are_a_422_naming_the_field(gateway, untouched, model, document, field):
    response = gateway.predict(model, document)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field and response.json()["fix"]


def test_a_declared_length_over_the_limit_is_a_413_before_the_body_is_read(gateway, untouched):
    status, answer, seconds = exchange(gateway, [head(gateway, 100_000_000)])
    assert status == 413 and seconds < 5 and b"connection: close" in answer.lower()


def test_a_chunked_body_over_the_limit_is_a_413_while_reading(gateway, untouched):
    chunk = b"a" * 65536
    chunks = [head(gateway, None, b"Transfer-Encoding: chunked\r\n")] + [b"10000\r\n" + chunk + b"\r\n"] * 40
    status, answer, _ = exchange(gateway, chunks)
    assert status == 413 and "larger than" in problem(answer)["detail"]


def test_a_content_length_longer_than_the_body_is_a_408_after_the_body_deadline(gateway, untouched):
    status, answer, seconds = exchange(gateway, [head(gateway, len(BODY) + 50) + BODY])
    assert status == 408 and 0.9 < seconds < 5, seconds
    assert f"{len(BODY)} of {len(BODY) + 50} declared bytes" in problem(answer)["detail"]


@pytest.mark.parametrize("lie", [b"Content-Length: 5\r\n", b"Content-Length: abc\r\n", b"Content-Length: -1\r\n",
                                 b"Content-Length: 28\r\nContent-Length: 29\r\n",
                                 b"Content-Length: 28\r\nTransfer-Encoding: chunked\r\n"],
                         ids=["shorter-than-body", "not-a-number", "negative", "two-lengths", "length-and-chunked"])
def test_lying_or_conflicting_lengths_are_a_400(gateway, untouched, lie):
    status, answer, _ = exchange(gateway, [head(gateway, None, lie) + BODY])
    assert status == 400, answer[:300]
    assert problem(answer)["type"] == "/problems/malformed-body"


def test_a_body_trickling_in_past_the_deadline_is_a_408(gateway, untouched):
    pieces = [head(gateway, len(BODY))] + [BODY[i:i + 2] for i in range(0, len(BODY), 2)]
    status, answer, seconds = exchange(gateway, pieces, pause_s=0.15)
    assert status == 408 and "did not arrive within 1 s" in problem(answer)["detail"]


def test_headers_trickling_in_slowloris_style_are_a_408_and_others_are_served_meanwhile(gateway, untouched):
    request = head(gateway, len(BODY)) + BODY
    started = time.monotonic()
    status, answer, seconds = exchange(gateway, [request[i:i + 3] for i in range(0, 60, 3)], pause_s=0.1)
    assert status == 408 and "headers did not arrive within 1 s" in problem(answer)["detail"]
    assert seconds < 3, f"held for {time.monotonic() - started:.1f} s"


def test_a_connection_that_never_sends_a_byte_is_closed(gateway, untouched):
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        started = time.monotonic()
        assert sock.recv(100) == b""  # closed by the gateway, not by our timeout
        assert time.monotonic() - started < 4


def test_an_unsupported_content_type_is_a_415(gateway, untouched):
    response = gateway.predict("digits", None, data=b"image=1", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415 and "application/json" in response.json()["detail"]
