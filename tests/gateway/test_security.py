"""Security at the edge, against running gateways: API keys (hashed at rest, scoped, from a file or the environment),
per-key token buckets, the CORS allow-list, TLS, and auth off only by an explicit flag."""

from __future__ import annotations

import datetime
import ipaddress
import json
import stat
import time

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.gateway.conftest import ORIGIN, launch_gateway, triton_requests

pytestmark = pytest.mark.integration
TEXT = {"inputs": ["a moving film"]}


def test_no_key_an_unknown_key_or_another_scheme_is_a_401_asking_for_a_bearer_key(gateway):
    url = f"{gateway.url}/v1/models/sentiment:predict"
    for headers in ({}, {"Authorization": "Bearer mpk_not-a-key-of-this-gateway"},
                    {"Authorization": f"Basic {gateway.key}"}):
        response = requests.post(url, json=TEXT, headers=headers, timeout=10)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["type"] == "/problems/unauthorized"
    assert requests.get(f"{gateway.url}/v1/models", timeout=10).status_code == 401


def test_the_key_in_the_environment_is_accepted_as_a_bearer_key(gateway):
    response = gateway.predict("sentiment", TEXT, key="env-key-for-tests-0123456789")
    assert response.status_code == 200, response.text


def test_a_key_scoped_to_one_model_calls_it_and_gets_403_for_the_others(gateway):
    key = gateway.keys["digits_only"]
    assert gateway.predict("digits", {"inputs": [[[[0]] * 8] * 8]}, key=key).status_code == 200
    refused = gateway.predict("sentiment", TEXT, key=key)
    assert refused.status_code == 403 and "digits" in refused.json()["detail"]
    listed = requests.get(f"{gateway.url}/v1/models", headers=gateway.auth(key), timeout=10).json()["models"]
    assert [m["name"] for m in listed] == ["digits"]


def test_keys_are_stored_only_as_digests_readable_by_the_owner_alone(gateway):
    keys_file = gateway.output.parent / "keys.json"
    text = keys_file.read_text()
    assert all(key not in text for key in gateway.keys.values())
    assert {entry["id"] for entry in json.loads(text)["keys"]} == set(gateway.keys)
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600


def test_a_key_over_its_rate_gets_429_with_retry_after_and_is_served_after_it(gateway, triton):
    key = gateway.keys["slow"]  # 1 request/s, bursts of 2
    answers = [gateway.predict("sentiment", TEXT, key=key) for _ in range(4)]
    statuses = [a.status_code for a in answers]
    assert statuses[:2] == [200, 200] and 429 in statuses[2:], statuses
    limited = next(a for a in answers if a.status_code == 429)
    assert limited.json()["type"] == "/problems/rate-limited"
    wait = int(limited.headers["retry-after"])
    assert wait >= 1
    before = triton_requests(triton)
    assert gateway.predict("sentiment", TEXT, key=key).status_code == 429  # refused before Triton
    assert triton_requests(triton) == before
    time.sleep(wait)
    assert gateway.predict("sentiment", TEXT, key=key).status_code == 200
    assert gateway.predict("sentiment", TEXT).status_code == 200  # other keys have their own buckets


def test_cors_allows_only_the_listed_origin(gateway):
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    url = f"{gateway.url}/v1/models/sentiment:predict"
    allowed = requests.options(url, headers={"Origin": ORIGIN, **preflight}, timeout=10)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    other = requests.options(url, headers={"Origin": "http://evil.example.test", **preflight}, timeout=10)
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    simple = gateway.predict("sentiment", TEXT, headers={"Origin": "http://evil.example.test"})
    assert simple.status_code == 200 and "access-control-allow-origin" not in simple.headers
    mine = gateway.predict("sentiment", TEXT, headers={"Origin": ORIGIN})
    assert mine.headers["access-control-allow-origin"] == ORIGIN
    assert "x-request-id" in mine.headers["access-control-expose-headers"].lower()


def self_signed(directory) -> tuple:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "modelport test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_gateway(triton, tmp_path_factory):
    """TLS, and deliberately open (--no-auth), and no CORS flag: the defaults for cross-origin calls."""
    workdir = tmp_path_factory.mktemp("tls-gateway")
    cert, key = self_signed(workdir)
    with launch_gateway(triton, workdir, "--tls-cert", str(cert), "--tls-key", str(key), "--no-auth",
                        scheme="https") as running:
        yield running, cert


def test_with_a_certificate_the_gateway_speaks_https_only(tls_gateway):
    running, cert = tls_gateway
    response = requests.post(f"{running.url}/v1/models/sentiment:predict", json=TEXT, verify=str(cert), timeout=10)
    assert response.status_code == 200 and response.json()["predictions"][0]["label"] == "positive"
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{running.url}/healthz", timeout=10)  # not trusted without the certificate
    plain = running.url.replace("https://", "http://")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{plain}/healthz", timeout=10)


def test_auth_is_off_only_with_the_explicit_flag_and_it_says_so(tls_gateway, gateway):
    running, cert = tls_gateway
    assert requests.post(f"{running.url}/v1/models/sentiment:predict", json=TEXT, verify=str(cert),
                         timeout=10).status_code == 200
    assert "API keys: OFF (--no-auth)" in running.output.read_text()
    assert requests.post(f"{gateway.url}/v1/models/sentiment:predict", json=TEXT, timeout=10).status_code == 401


def test_without_an_allow_list_no_origin_may_call_the_api(tls_gateway):
    running, cert = tls_gateway
    preflight = requests.options(f"{running.url}/v1/models/sentiment:predict", verify=str(cert), timeout=10,
                                 headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers
    simple = requests.post(f"{running.url}/v1/models/sentiment:predict", json=TEXT, verify=str(cert), timeout=10,
                           headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in simple.headers


def test_under_tls_every_response_asks_browsers_to_keep_to_https(tls_gateway):
    running, cert = tls_gateway
    for path in ("/healthz", "/nowhere"):
        response = requests.get(f"{running.url}{path}", verify=str(cert), timeout=10)
        assert response.headers["strict-transport-security"].startswith("max-age=")
        assert response.headers["x-content-type-options"] == "nosniff"
