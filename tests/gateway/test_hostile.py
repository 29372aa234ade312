"""A hostile-request suite: well over 100 requests crafted against the gateway's parsers and limits (JSON, HTTP
framing, headers, multipart, base64, keys and tokens), each sent over a raw socket to the session gateway. Every one
is answered with a clean 4xx problem within 1 s, and a good request right after it is served as before."""

from __future__ import annotations

import base64
import functools
import json
import select
import socket
import time

import pytest

pytestmark = pytest.mark.integration
ANSWER_WITHIN_S = 1.0
LIMIT = 2 * 1024 * 1024  # the session gateway's --max-body-bytes (the default)
GOOD = b'{"inputs": ["a moving film"]}'


def _request(key_header: str, body: bytes, *, model: str = "sentiment", content_type: str = "application/json",
             method: str = "POST", path: str | None = None, extra: bytes = b"", length: int | None = -1) -> bytes:
    length = len(body) if length == -1 else length
    return (f"{method} {path or f'/v1/models/{model}:predict'} HTTP/1.1\r\nHost: 127.0.0.1\r\n{key_header}"
            f"Content-Type: {content_type}\r\nConnection: close\r\n").encode() + extra + (
        f"Content-Length: {length}\r\n".encode() if length is not None else b"") + b"\r\n" + body


def _json_cases() -> list[tuple[str, bytes, str]]:
    """(id, body, model): bodies for the JSON API."""
    big = LIMIT - 64
    cases = [
        ("escaped-quote-run-64k", b'{"inputs": ["' + b'\\"' * 32_000, "sentiment"),
        ("escaped-quote-run-limit", b'{"inputs": ["' + b'\\"' * (big // 2), "sentiment"),
        ("escaped-backslash-quote-mix", b'{"inputs": ["' + b'\\\\\\"' * (big // 4), "sentiment"),
        ("quote-run-limit", b'"' * big, "sentiment"),
        ("backslash-run-limit", b'{"inputs": ["' + b"\\" * big, "sentiment"),
        ("unterminated-string", b'{"inputs": ["never closed', "sentiment"),
        ("unterminated-strings-many", b'["' * (big // 2), "sentiment"),
        ("open-brackets-limit", b"[" * big, "sentiment"),
        ("open-braces-limit", b'{"a":' * (big // 5), "sentiment"),
        ("deep-33", b'{"inputs": ' + b"[" * 33 + b"]" * 33 + b"}", "sentiment"),
        ("deep-1025", b'{"inputs": ' + b"[" * 1025 + b"]" * 1025 + b"}", "sentiment"),
        ("deep-200000", b'{"inputs": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", "sentiment"),
        ("deep-objects", b'{"a":' * 5000 + b"1" + b"}" * 5000, "sentiment"),
        ("deep-mixed", b'[{"a":' * 3000 + b"1" + b"}]" * 3000, "sentiment"),
        ("deep-in-string-then-deep", b'{"inputs": ["[[[[", ' + b"[" * 40 + b"]" * 40 + b"]}", "sentiment"),
        ("many-tiny-items", b'{"inputs": [' + b"0," * (big // 2 - 20) + b"0]}", "sentiment"),
        ("many-empty-lists", b'{"inputs": [' + b"[]," * (big // 3 - 20) + b"[]]}", "sentiment"),
        ("many-empty-objects", b'{"inputs": [' + b"{}," * (big // 3 - 20) + b"{}]}", "sentiment"),
        ("many-keys", b"{" + b",".join(b'"k%d":0' % i for i in range(100_000)) + b"}", "sentiment"),
        ("many-strings", b'{"inputs": [' + b'"a",' * (big // 4 - 20) + b'"a"]}', "sentiment"),
        ("huge-int", b'{"inputs": [' + b"9" * (big - 40) + b"]}", "sentiment_classifier"),
        ("huge-exponent", b'{"inputs": [[1e999999999]]}', "sentiment_classifier"),
        ("huge-negative-exponent", b'{"inputs": [[1e-999999999]]}', "sentiment"),
        ("float-overflow", b'{"inputs": [[1e400]]}', "sentiment_classifier"),
        ("long-fraction", b'{"inputs": [[0.' + b"1" * (big - 40) + b"]]}", "sentiment_classifier"),
        ("nan", b'{"inputs": [[NaN]]}', "sentiment_classifier"),
        ("infinity", b'{"inputs": [[Infinity]]}', "sentiment_classifier"),
        ("negative-infinity", b'{"inputs": [[-Infinity]]}', "sentiment_classifier"),
        ("leading-zeros", b'{"inputs": [[00012]]}', "sentiment_classifier"),
        ("hex-number", b'{"inputs": [[0x10]]}', "sentiment_classifier"),
        ("plus-sign", b'{"inputs": [[+1]]}', "sentiment_classifier"),
        ("invalid-utf8-ff", b'{"inputs": ["\xff"]}', "sentiment"),
        ("invalid-utf8-overlong", b'{"inputs": ["\xc0\xaf"]}', "sentiment"),
        ("invalid-utf8-truncated", b'{"inputs": ["\xe2\x82"]}', "sentiment"),
        ("invalid-utf8-surrogate-bytes", b'{"inputs": ["\xed\xa0\x80"]}', "sentiment"),
        ("invalid-utf8-run", b'{"inputs": ["' + b"\xff" * (big // 2) + b'"]}', "sentiment"),
        ("utf16-bom", b"\xff\xfe{\x00}\x00", "sentiment"),
        ("utf8-bom", b'\xef\xbb\xbf{"inputs": ["x"]}', "sentiment"),
        ("lone-high-surrogate", b'{"inputs": ["\\ud800"]}', "sentiment"),
        ("lone-low-surrogate", b'{"inputs": ["\\udc00"]}', "sentiment"),
        ("surrogate-run", b'{"inputs": ["' + b"\\ud800" * (big // 7) + b'"]}', "sentiment"),
        ("bad-escape", b'{"inputs": ["\\q"]}', "sentiment"),
        ("short-unicode-escape", b'{"inputs": ["\\u12"]}', "sentiment"),
        ("control-char-in-string", b'{"inputs": ["a\x01b"]}', "sentiment"),
        ("nul-in-body", b'{"inputs": ["a"]}\x00', "sentiment"),
        ("trailing-garbage", GOOD + b"garbage", "sentiment"),
        ("trailing-comma", b'{"inputs": ["a",]}', "sentiment"),
        ("single-quotes", b"{'inputs': ['a']}", "sentiment"),
        ("comment", b'{"inputs": ["a"] /* x */}', "sentiment"),
        ("empty-body", b"", "sentiment"),
        ("whitespace-body", b" " * 1000, "sentiment"),
        ("whitespace-limit", b" " * big, "sentiment"),
        ("null-body", b"null", "sentiment"),
        ("number-body", b"1", "sentiment"),
        ("string-body", b'"inputs"', "sentiment"),
        ("array-body", b'["a moving film"]', "sentiment"),
        ("no-inputs", b'{"top": 1}', "sentiment"),
        ("inputs-null", b'{"inputs": null}', "sentiment"),
        ("inputs-empty", b'{"inputs": []}', "sentiment"),
        ("inputs-33-items", b'{"inputs": [' + b",".join([b'"a"'] * 33) + b"]}", "sentiment"),
        ("inputs-number-item", b'{"inputs": [1]}', "sentiment"),
        ("inputs-nested-item", b'{"inputs": [["a"]]}', "sentiment"),
        ("b64-not-base64", b'{"inputs": [{"b64": "%%%"}]}', "sentiment"),
        ("b64-bad-length", b'{"inputs": [{"b64": "QUJ"}]}', "sentiment"),
        ("b64-number", b'{"inputs": [{"b64": 5}]}', "sentiment"),
        ("b64-extra-key", b'{"inputs": [{"b64": "QUJD", "x": 1}]}', "sentiment"),
        ("b64-huge-invalid", b'{"inputs": [{"b64": "' + b"*" * (big - 40) + b'"}]}', "sentiment"),
        ("b64-image-corrupt", b'{"inputs": [{"b64": "' + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
         + b'"}]}', "digits_image"),
        ("b64-not-an-image", b'{"inputs": [{"b64": "' + base64.b64encode(b"plain text") + b'"}]}', "digits_image"),
        ("top-zero", b'{"inputs": ["a"], "top": 0}', "sentiment"),
        ("top-negative", b'{"inputs": ["a"], "top": -5}', "sentiment"),
        ("top-string", b'{"inputs": ["a"], "top": "2"}', "sentiment"),
        ("top-float", b'{"inputs": ["a"], "top": 1.5}', "sentiment"),
        ("top-bool", b'{"inputs": ["a"], "top": true}', "sentiment"),
        ("top-huge", b'{"inputs": ["a"], "top": ' + b"9" * 5000 + b"}", "sentiment"),
        ("unknown-field", b'{"inputs": ["a"], "evil": 1}', "sentiment"),
        ("unknown-input-name", b'{"inputs": {"nope": ["a"]}}', "sentiment"),
        ("digits-wrong-shape", b'{"inputs": [[[0]]]}', "digits"),
        ("digits-strings", b'{"inputs": {"image": [' + b'"x",' * 31 + b'"x"]}}', "digits"),
        ("digits-ragged", b'{"inputs": [[[[0]],[[0],[0]]]]}', "digits"),
        ("digits-bools", b'{"inputs": [' + json.dumps([[[True]] * 8] * 8).encode() + b"]}", "digits"),
        ("digits-null-pixels", b'{"inputs": [' + json.dumps([[[None]] * 8] * 8).encode() + b"]}", "digits"),
        ("digits-too-many-items", b'{"inputs": [' + b",".join([json.dumps([[[0]] * 8] * 8).encode()] * 33)
         + b"]}", "digits"),
        ("int64-overflow", b'{"inputs": [[' + b",".join([b"99999999999999999999"] * 64) + b"]]}",
         "sentiment_classifier"),
        ("int64-fraction", b'{"inputs": [[' + b",".join([b"1.5"] * 64) + b"]]}", "sentiment_classifier"),
        ("duplicate-keys-bad-last", b'{"inputs": ["a"], "inputs": 5}', "sentiment"),
    ]
    return [(name, body[:LIMIT], model) for name, body, model in cases]


@functools.cache
def _http_cases(key: str) -> list[tuple[str, bytes]]:
    """(id, raw request) for the HTTP layer and the API around the parsers."""
    auth = f"Authorization: Bearer {key}\r\n"
    head = b"POST /v1/models/sentiment:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth.encode()
    return [
        ("url-too-long", f"GET /v1/models/{'a' * 20_000} HTTP/1.1\r\nHost: x\r\n\r\n".encode()),
        ("query-too-long", f"GET /healthz?{'q=1&' * 5000} HTTP/1.1\r\nHost: x\r\n\r\n".encode()),
        ("one-header-too-large", head + b"X-Big: " + b"a" * 100_000 + b"\r\n\r\n"),
        ("many-headers", head + b"".join(b"X-H%d: v\r\n" % i for i in range(5000)) + b"\r\n"),
        ("header-50mb", head + b"X-Big: " + b"a" * (50 << 20) + b"\r\n\r\n"),
        ("cookie-flood", head + b"Cookie: " + b"a=b; " * 10_000 + b"\r\n\r\n"),
        ("content-length-not-a-number", _request(auth, GOOD, length=None, extra=b"Content-Length: ten\r\n")),
        ("content-length-negative", _request(auth, GOOD, length=None, extra=b"Content-Length: -1\r\n")),
        ("content-length-twice", _request(auth, GOOD, extra=b"Content-Length: 5\r\n")),
        ("content-length-and-chunked", _request(auth, GOOD, extra=b"Transfer-Encoding: chunked\r\n")),
        ("content-length-over-limit", _request(auth, b"", length=LIMIT + 1)),
        ("content-length-huge", _request(auth, b"", length=10**30)),
        ("body-over-limit-chunked", _request(auth, b"", length=None, extra=b"Transfer-Encoding: chunked\r\n")
         + b"%x\r\n" % (LIMIT + 10) + b" " * (LIMIT + 10) + b"\r\n0\r\n\r\n"),
        ("bad-chunk-size", _request(auth, b"", length=None, extra=b"Transfer-Encoding: chunked\r\n")
         + b"zz\r\nabc\r\n0\r\n\r\n"),
        ("chunk-size-overflow", _request(auth, b"", length=None, extra=b"Transfer-Encoding: chunked\r\n")
         + b"f" * 40 + b"\r\nabc\r\n0\r\n\r\n"),
        ("bad-transfer-encoding", _request(auth, GOOD, length=None, extra=b"Transfer-Encoding: gzip\r\n")),
        ("bad-request-line", b"GARBAGE\r\n\r\n"),
        ("binary-request-line", b"\x00\x01\x02\x03 / HTTP/1.1\r\n\r\n"),
        ("unknown-http-version", b"GET / HTTP/9.9\r\nHost: x\r\n\r\n"),
        ("space-in-header-name", head + b"Bad Header: x\r\n\r\n"),
        ("no-colon-header", head + b"NoColon\r\n\r\n"),
        ("bare-lf-line-endings", b"POST /v1/models/sentiment:predict HTTP/1.1\nHost: x\n\n"),
        ("text-plain", _request(auth, GOOD, content_type="text/plain")),
        ("no-content-type", _request(auth, GOOD, content_type="").replace(b"Content-Type: \r\n", b"")),
        ("json-latin1-charset", _request(auth, GOOD, content_type="application/json; charset=latin-1")),
        ("xml", _request(auth, b"<a/>", content_type="application/xml")),
        ("form-urlencoded", _request(auth, b"inputs=a", content_type="application/x-www-form-urlencoded")),
        ("multipart-to-digits", _request(auth, b"--x\r\n\r\n--x--", model="digits",
                                         content_type="multipart/form-data; boundary=x")),
        ("multipart-no-boundary", _request(auth, b"--x\r\n\r\n--x--", content_type="multipart/form-data")),
        ("multipart-broken", _request(auth, b"--x\r\nContent-Disposition: form-data\r\n\r\nabc",
                                      content_type="multipart/form-data; boundary=x")),
        ("multipart-too-many-files", _request(auth, b"".join(
            b'--x\r\nContent-Disposition: form-data; name="f"; filename="a"\r\n\r\nabc\r\n' for _ in range(40))
            + b"--x--\r\n", content_type="multipart/form-data; boundary=x")),
        ("multipart-unknown-field", _request(auth, b'--x\r\nContent-Disposition: form-data; name="evil"\r\n\r\n1'
                                             b"\r\n--x--\r\n", content_type="multipart/form-data; boundary=x")),
        ("multipart-top-not-number", _request(auth, b'--x\r\nContent-Disposition: form-data; name="top"\r\n\r\n'
                                              b"two\r\n--x--\r\n", content_type="multipart/form-data; boundary=x")),
        ("multipart-empty", _request(auth, b"--x--\r\n", content_type="multipart/form-data; boundary=x")),
        ("multipart-boundary-run", _request(auth, (b"--x\r\n" * (LIMIT // 6)) + b"--x--\r\n",
                                            content_type="multipart/form-data; boundary=x")),
        ("multipart-huge-boundary", _request(auth, b"--x--", content_type="multipart/form-data; boundary="
                                             + "b" * 2000)),
        ("method-put", _request(auth, GOOD, method="PUT")),
        ("method-delete", _request(auth, GOOD, method="DELETE")),
        ("method-get-on-predict", _request(auth, b"", method="GET")),
        ("unknown-model", _request(auth, GOOD, model="nope")),
        ("unknown-model-long", _request(auth, GOOD, model="n" * 5000)),
        ("path-traversal", _request(auth, GOOD, path="/static/../../etc/passwd", method="GET")),
        ("encoded-traversal", _request(auth, GOOD, path="/static/%2e%2e/%2e%2e/etc/passwd", method="GET")),
        ("unknown-route", _request(auth, GOOD, path="/v2/models/digits/infer")),
        ("unknown-problem-type", _request(auth, b"", path="/problems/%00", method="GET")),
        ("no-key", _request("", GOOD)),
        ("unknown-key", _request("Authorization: Bearer mpk_wrong\r\n", GOOD)),
        ("basic-scheme", _request(f"Authorization: Basic {key}\r\n", GOOD)),
        ("empty-bearer", _request("Authorization: Bearer \r\n", GOOD)),
        ("key-with-nul", _request("Authorization: Bearer mpk_\x01\x02\r\n", GOOD)),
        ("key-huge", _request(f"Authorization: Bearer {'k' * 12_000}\r\n", GOOD)),
        ("jwt-shaped-garbage", _request("Authorization: Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.\r\n", GOOD)),
        ("models-no-key", _request("", b"", path="/v1/models", method="GET")),
        ("openapi-no-key", _request("", b"", path="/openapi.json", method="GET")),
        ("metrics-no-key", _request("", b"", path="/metrics", method="GET")),
    ]


def exchange(gateway, raw: bytes, timeout_s: float = 10.0) -> tuple[int, bytes, float]:
    """(status, answer, seconds) for raw bytes, sent in 64 KB pieces while watching for the answer: the gateway answers
    an oversized request before it has all of it and closes, and the answer must be read before the reset comes."""
    started = time.monotonic()
    answer = b""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=timeout_s) as sock:
        sent = 0
        while True:
            readable, writable, _ = select.select([sock], [sock] if sent < len(raw) else [], [], timeout_s)
            if not readable and not writable:
                break
            if readable:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not data:
                    break
                answer += data
                continue
            try:
                sent += sock.send(raw[sent:sent + 65536])
            except (BrokenPipeError, ConnectionResetError):
                sent = len(raw)
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
    return status, answer, time.monotonic() - started


def _good_request_is_served(gateway) -> None:
    response = gateway.predict("sentiment", {"inputs": ["a moving film"]})
    assert response.status_code == 200, gateway.log_tail()


def _assert_clean_4xx(name: str, status: int, answer: bytes, seconds: float) -> None:
    assert 400 <= status < 500, f"{name}: status {status}: {answer[:300]!r}"
    assert seconds < ANSWER_WITHIN_S, f"{name}: answered in {seconds:.2f} s"
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"application/problem+json" in head.lower(), f"{name}: {head!r}"
    assert json.loads(body)["status"] == status


JSON_CASES = _json_cases()


@pytest.mark.parametrize(("name", "body", "model"), JSON_CASES, ids=[name for name, _, _ in JSON_CASES])
def test_a_hostile_json_body_is_a_clean_4xx_within_a_second(gateway, name, body, model):
    status, answer, seconds = exchange(gateway, _request(f"Authorization: Bearer {gateway.key}\r\n", body,
                                                         model=model))
    _assert_clean_4xx(name, status, answer, seconds)
    _good_request_is_served(gateway)


HTTP_IDS = [name for name, _ in _http_cases("k")]


@pytest.mark.parametrize("name", HTTP_IDS)
def test_a_hostile_http_request_is_a_clean_4xx_within_a_second(gateway, name):
    status, answer, seconds = exchange(gateway, dict(_http_cases(gateway.key))[name])
    _assert_clean_4xx(name, status, answer, seconds)
    _good_request_is_served(gateway)


def test_the_suite_has_at_least_a_hundred_cases():
    assert len(JSON_CASES) + len(HTTP_IDS) >= 100
