"""The edge's trust and limits, against running gateways: who the client is (X-Forwarded-For only from trusted
proxies), failed authentication limited per client, /metrics, /openapi.json and /docs behind keys, the gateway's own
error text, oversized headers refused unread, connections per client capped, image decoding charged to the key, and
OAuth2 / OIDC bearer tokens (JWT) minted here against a JWKS file."""

from __future__ import annotations

import base64
import io
import json
import re
import socket
import time
from pathlib import Path

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from PIL import Image, ImageDraw

from core.process import free_ports
from tests.gateway.conftest import launch_gateway
from tests.gateway.test_hostile import exchange

pytestmark = pytest.mark.integration
TEXT = {"inputs": ["a moving film"]}
ISSUER, AUDIENCE = "https://issuer.example.test", "modelport-gateway"


def png(width: int, height: int) -> bytes:
    """A mostly blank image with a bright bar (a blank one the model refuses): a few KB however large it is."""
    image = Image.new("L", (width, height))
    ImageDraw.Draw(image).rectangle((width // 2 - width // 16, height // 8, width // 2 + width // 16, height * 7 // 8),
                                    fill=255)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def signing_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "test-1"}, private=True)


@pytest.fixture(scope="module")
def edge(triton, tmp_path_factory, signing_key):
    """Trusts 127.0.0.1 as a proxy (so each test can speak for its own client address), 3 failed authentications per
    client, 4 connections per client and 8 in all, idle kept-alive connections closed after 1 s, /metrics on its own port, tokens from ISSUER, and a key with a burst of 5."""
    workdir = tmp_path_factory.mktemp("edge-gateway")
    jwks = workdir / "jwks.json"
    jwks.write_text(json.dumps(KeySet([RSAKey.import_key(signing_key.as_dict(private=False))]).as_dict()))
    metrics_port = free_ports(1)[0]
    keys = {"full": {}, "small_budget": {"rate_per_s": 0.05, "burst": 5}}
    with launch_gateway(triton, workdir, "--trusted-proxy", "127.0.0.1", "--failed-auth-burst", "3",
                        "--max-connections-per-client", "4", "--max-connections", "8", "--keep-alive-timeout", "1", "--metrics-port", str(metrics_port),
                        "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE, "--jwt-jwks", str(jwks),
                        keys=keys) as running:
        yield running, metrics_port


def token(key: RSAKey, **claims) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "iat": now, "exp": now + 300, "scope": "digits"}
    payload.update(claims)
    return jwt.encode({"alg": "RS256", "kid": key.kid}, {k: v for k, v in payload.items() if v is not None}, key)


def as_client(address: str, credential: str | None = None) -> dict[str, str]:
    return {"X-Forwarded-For": address, **({"Authorization": f"Bearer {credential}"} if credential else {})}


def access_log_entry(running, request_id: str) -> dict:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for line in running.access_log.read_text().splitlines():
            entry = json.loads(line)
            if entry["request_id"] == request_id:
                return entry
        time.sleep(0.05)
    raise AssertionError(f"no access-log line for {request_id}")


# ---- who the client is --------------------------------------------------------------------------------------------

def test_x_forwarded_for_is_ignored_from_a_client_not_named_as_a_proxy(gateway):
    response = gateway.predict("sentiment", TEXT, headers={"X-Forwarded-For": "203.0.113.9",
                                                           "X-Request-ID": "xff-untrusted-1"})
    assert response.status_code == 200
    assert access_log_entry(gateway, "xff-untrusted-1")["client"] == "127.0.0.1"


def test_x_forwarded_for_is_honoured_from_a_trusted_proxy(edge):
    running, _ = edge
    response = running.predict("sentiment", TEXT, headers={"X-Forwarded-For": "203.0.113.9",
                                                           "X-Request-ID": "xff-trusted-1"})
    assert response.status_code == 200
    assert access_log_entry(running, "xff-trusted-1")["client"] == "203.0.113.9"


def test_failed_authentication_is_limited_per_client(edge):
    running, _ = edge
    url = f"{running.url}/v1/models/sentiment:predict"
    bad = [requests.post(url, json=TEXT, headers=as_client("198.51.100.7", "mpk_guess"), timeout=10).status_code
           for _ in range(4)]
    assert bad == [401, 401, 401, 429]
    locked = requests.post(url, json=TEXT, headers=as_client("198.51.100.7", running.key), timeout=10)
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) >= 1
    assert "failed authentications" in locked.json()["detail"]
    other = requests.post(url, json=TEXT, headers=as_client("198.51.100.8", running.key), timeout=10)
    assert other.status_code == 200


# ---- nothing open that should not be -------------------------------------------------------------------------------

def test_metrics_need_a_key_for_every_model_on_the_api_port(gateway):
    url = f"{gateway.url}/metrics"
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, headers=gateway.auth(gateway.keys["digits_only"]), timeout=10).status_code == 403
    scraped = requests.get(url, headers=gateway.auth(), timeout=10)
    assert scraped.status_code == 200 and "modelport_gateway_request_duration_seconds" in scraped.text


def test_metrics_are_open_on_their_own_bind(edge):
    running, metrics_port = edge
    scraped = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
    assert scraped.status_code == 200 and "modelport_gateway_request_duration_seconds" in scraped.text


def test_openapi_and_docs_list_only_what_the_key_may_call(gateway):
    assert requests.get(f"{gateway.url}/openapi.json", timeout=10).status_code == 401
    scoped = requests.get(f"{gateway.url}/openapi.json", headers=gateway.auth(gateway.keys["digits_only"]),
                          timeout=10).json()
    predicts = [path for path in scoped["paths"] if path.endswith(":predict")]
    assert predicts == ["/v1/models/digits:predict"]
    anonymous = requests.get(f"{gateway.url}/docs", timeout=10)
    assert anonymous.status_code == 200 and ":predict" not in anonymous.text
    keyed = requests.get(f"{gateway.url}/docs", headers=gateway.auth(gateway.keys["digits_only"]), timeout=10).text
    assert "/v1/models/digits:predict" in keyed and "/v1/models/sentiment:predict" not in keyed


def test_a_model_refusing_an_input_gives_its_reason_without_triton_s_internals(gateway):
    corrupt = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode()
    response = gateway.predict("digits_image", {"inputs": [{"b64": corrupt}]})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("digits_image: the model refused an input: ") and "PNG" in detail
    assert "digits_image_decode" not in detail and "instance" not in detail and "ensemble" not in detail


def test_every_response_says_nosniff(gateway):
    for response in (requests.get(f"{gateway.url}/healthz", timeout=10),
                     requests.get(f"{gateway.url}/v1/models", timeout=10),
                     requests.get(f"{gateway.url}/nowhere", timeout=10), gateway.predict("sentiment", TEXT)):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "strict-transport-security" not in response.headers  # plain HTTP: HSTS means nothing here
    _, raw, _ = exchange(gateway, b"GARBAGE\r\n\r\n")
    assert b"x-content-type-options: nosniff" in raw.lower()


# ---- limits ---------------------------------------------------------------------------------------------------------

def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])


def test_a_50_mb_header_is_a_431_before_it_is_read(gateway):
    before = rss_kib(gateway.pid)
    raw = (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (50 << 20) + b"\r\n\r\n")
    status, answer, seconds = exchange(gateway, raw)
    assert status == 431 and seconds < 1.0, answer[:300]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["type"] == "/problems/headers-too-large"
    assert rss_kib(gateway.pid) - before < 16 * 1024  # not buffered: the 50 MB never lived in the gateway
    assert gateway.predict("sentiment", TEXT).status_code == 200


def test_a_pipelined_request_after_a_large_body_is_served_not_taken_for_a_large_head(gateway):
    body = b'{"inputs": ["' + b"a" * 60_000 + b'"]}'
    first = (f"POST /v1/models/sentiment:predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {gateway.key}\r\n"
             f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(first + b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the next head begins in the same write
        time.sleep(0.3)
        sock.sendall(b"Connection: close\r\n\r\n")
        answers = b""
        while chunk := sock.recv(65536):
            answers += chunk
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", answers) == [b"200", b"200"], answers[:500]


def test_a_request_line_over_the_limit_is_a_414(gateway):
    status, answer, _ = exchange(gateway, f"GET /healthz?{'a' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert status == 414 and b"/problems/uri-too-long" in answer


def test_connections_per_client_are_capped(edge):
    running, _ = edge
    held = [socket.create_connection(("127.0.0.1", running.port), timeout=5) for _ in range(4)]
    try:
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", running.port), timeout=5) as extra:
            answer = extra.recv(65536)
        assert answer.startswith(b"HTTP/1.1 503") and b"/problems/too-many-connections" in answer
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 5
    while running.predict("sentiment", TEXT).status_code != 200:  # the held ones are closed: room again
        assert time.monotonic() < deadline


def test_an_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout(edge):
    running, _ = edge
    with socket.create_connection(("127.0.0.1", running.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200")
        head, _, body = answer.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
        while len(body) < length:  # headers and body may come in separate segments
            body += sock.recv(65536)
        started = time.monotonic()
        assert sock.recv(65536) == b""  # the gateway closed it
        assert 0.5 < time.monotonic() - started < 3.0


def test_connections_are_capped_in_total(edge):
    running, _ = edge
    held, answer = [], b""
    try:
        for i in range(12):  # one per client address, each under its own cap, until the gateway's total is reached
            sock = socket.create_connection(("127.0.0.1", running.port), timeout=5,
                                            source_address=(f"127.0.0.{10 + i}", 0))
            held.append(sock)
            time.sleep(0.05)
            sock.setblocking(False)
            try:
                answer = sock.recv(65536)
            except BlockingIOError:
                continue
            break
        assert answer.startswith(b"HTTP/1.1 503") and b"holds 8 connections" in answer, answer[:300]
        assert len(held) <= 9
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 5
    while running.predict("sentiment", TEXT).status_code != 200:
        assert time.monotonic() < deadline


def test_an_image_costs_the_key_s_budget_by_the_pixels_it_decodes_to(edge):
    running, _ = edge
    key = running.keys["small_budget"]  # bursts of 5, refilled at one token per 20 s
    over_burst = running.predict("digits_image", {"inputs": [{"b64": base64.b64encode(png(3000, 3000)).decode()}]},
                                 key=key)  # 9 megapixels: 9 tokens, more than the key's burst ever holds
    assert over_burst.status_code == 413 and "burst of 5" in over_burst.json()["detail"]
    blank = base64.b64encode(png(2048, 2048)).decode()  # a few KB on the wire, 4 megapixels decoded: 4 tokens
    assert len(blank) < 16_000
    statuses = [running.predict("digits_image", {"inputs": [{"b64": blank}]}, key=key).status_code,
                running.predict("sentiment", TEXT, key=key).status_code]
    assert statuses == [200, 429]  # 1 token for the refused one, 4 for the image: none left


# ---- bearer tokens ---------------------------------------------------------------------------------------------------

def test_a_token_from_the_issuer_calls_the_models_its_scope_names(edge, signing_key):
    running, _ = edge
    digits_token = token(signing_key, scope="digits")
    assert running.predict("digits", {"inputs": [[[[0]] * 8] * 8]}, key=digits_token).status_code == 200
    refused = running.predict("sentiment", TEXT, key=digits_token)
    assert refused.status_code == 403 and "digits" in refused.json()["detail"]
    assert running.predict("sentiment", TEXT, key=token(signing_key, scope="*")).status_code == 200
    listed = requests.get(f"{running.url}/v1/models", headers=running.auth(digits_token), timeout=10).json()
    assert [m["name"] for m in listed["models"]] == ["digits"]
    metrics = f"{running.url}/metrics"
    assert requests.get(metrics, headers=running.auth(digits_token), timeout=10).status_code == 403
    assert requests.get(metrics, headers=running.auth(token(signing_key, scope="metrics")),
                        timeout=10).status_code == 200


@pytest.mark.parametrize(("claims", "reason", "address"), [
    ({"exp": int(time.time()) - 3600}, "expired", "192.0.2.1"),
    ({"nbf": int(time.time()) + 3600}, "not valid yet", "192.0.2.2"),
    ({"aud": "someone-else"}, "aud", "192.0.2.3"),
    ({"iss": "https://evil.example.test"}, "iss", "192.0.2.4"),
    ({"exp": None}, "exp", "192.0.2.5"),
], ids=["expired", "not-yet-valid", "wrong-audience", "wrong-issuer", "no-expiry"])
def test_a_token_with_bad_claims_is_a_401_saying_why(edge, signing_key, claims, reason, address):
    running, _ = edge
    response = requests.post(f"{running.url}/v1/models/digits:predict", json={"inputs": [[[[0]] * 8] * 8]},
                             headers=as_client(address, token(signing_key, **claims)), timeout=10)
    assert response.status_code == 401, response.text
    assert reason in response.json()["detail"]
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_a_token_not_signed_by_the_issuer_is_a_401(edge, signing_key):
    running, _ = edge
    stranger = RSAKey.generate_key(2048, parameters={"kid": "test-1"}, private=True)  # same kid, other key
    header, payload, _ = token(signing_key).split(".")
    unsigned = f"{header}.{payload}.".replace(header, base64.urlsafe_b64encode(
        b'{"alg":"none","kid":"test-1"}').decode().rstrip("="))
    forged = [token(stranger), unsigned, token(signing_key)[:-4] + "AAAA",
              "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.AAAA", "eyJ" + "A" * 10_000 + ".x.y"]
    for i, credential in enumerate(forged):
        response = requests.post(f"{running.url}/v1/models/digits:predict", json={"inputs": [[[[0]] * 8] * 8]},
                                 headers=as_client(f"192.0.2.{210 + i}", credential), timeout=10)
        assert response.status_code == 401, (i, response.text)
        assert response.json()["type"] == "/problems/unauthorized"
