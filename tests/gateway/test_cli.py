"""`python -m gateway start|status|stop` (what `make start` and `make stop` run) and `keys add`, through
subprocesses against the session's Triton; bad options are one clear line, no traceback."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
import requests

from core.process import free_ports
from tests.conftest import ROOT


def gateway_cli(*args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "MODELPORT_API_KEY"}
    result = subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=timeout, env={**environ, **(env or {})})
    print(result.stdout[-3000:], result.stderr[-3000:])  # shown by pytest when the test fails
    return result


@pytest.mark.integration
def test_start_generates_a_key_says_where_it_is_serves_with_it_and_stop_stops_it(triton, tmp_path):
    port = free_ports(1)[0]
    state = tmp_path / "state"
    try:
        # gives up (and stops its child) well before the subprocess timeout
        started = gateway_cli("start", "--port", str(port), "--triton", triton.grpc_url, "--state-dir", str(state),
                              "--access-log", str(tmp_path / "access.log"), "--startup-timeout", "60")
        assert started.returncode == 0
        key_file = state / "api.key"
        assert f"generated: the key is in {key_file}" in started.stdout
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        key = key_file.read_text().strip()
        assert key not in (state / "keys.json").read_text()  # only its digest
        url = f"http://127.0.0.1:{port}"
        answer = requests.post(f"{url}/v1/models/sentiment:predict", json={"inputs": ["a moving film"]},
                               headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert gateway_cli("status", "--state-dir", str(state)).returncode == 0
        again = gateway_cli("start", "--port", str(port), "--triton", triton.grpc_url, "--state-dir", str(state))
        assert again.returncode == 2 and "already running" in again.stderr
    finally:
        stopped = gateway_cli("stop", "--state-dir", str(state))
    assert stopped.returncode == 0 and "stopped the gateway" in stopped.stdout
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    assert gateway_cli("status", "--state-dir", str(state)).returncode == 1


def test_keys_add_prints_the_key_once_and_stores_its_digest_and_scope(tmp_path):
    keys_file = tmp_path / "keys.json"
    added = gateway_cli("keys", "add", "--keys-file", str(keys_file), "--models", "digits,sentiment", "--rate", "5")
    assert added.returncode == 0
    key = added.stdout.strip()
    assert key.startswith("mpk_") and key not in keys_file.read_text()
    listed = gateway_cli("keys", "list", "--keys-file", str(keys_file))
    assert "models=digits,sentiment" in listed.stdout and "rate=5.0/s" in listed.stdout


@pytest.mark.parametrize(("args", "phrase"), [
    (("--port", "0"), "--port: got 0"),
    (("--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.pem"), "--tls-cert: got '/nonexistent.pem'"),
    (("--tls-cert", "/etc/hostname"), "--tls-cert/--tls-key"),
    (("--cors-origin", "*"), "--cors-origin: got '*'"),
    (("--max-json-depth", "0"), "--max-json-depth"),
    (("--max-in-flight", "0"), "--max-in-flight"),
    (("--max-header-bytes", "10"), "--max-header-bytes"),
    (("--max-connections-per-client", "0"), "--max-connections-per-client"),
    (("--trusted-proxy", "the-proxy"), "--trusted-proxy: got 'the-proxy'"),
    (("--metrics-port", "8080"), "--metrics-port"),
    (("--jwt-issuer", "https://issuer.test"), "--jwt-audience"),
    (("--jwt-issuer", "https://issuer.test", "--jwt-audience", "gw", "--jwt-algorithm", "HS256"), "--jwt-algorithm"),
])
def test_a_bad_option_is_one_line_naming_it(tmp_path, args, phrase):
    result = gateway_cli("run", "--state-dir", str(tmp_path), *args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("gateway: error: ") and phrase in result.stderr
