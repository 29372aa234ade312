"""Secure defaults: loopback sockets, and the admin APIs refuse callers without the key."""
from __future__ import annotations

import grpc
import psutil
import pytest
import requests
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.integration


def tritonserver_of(triton) -> psutil.Process:
    return next(p for p in psutil.Process(triton.pid).children() if p.name() == "tritonserver")


def test_http_repository_api_refuses_without_the_admin_key(triton):
    response = requests.post(f"http://{triton.http_url}/v2/repository/index", timeout=5)
    assert response.status_code == 403, (response.status_code, response.text)
    wrong = requests.post(f"http://{triton.http_url}/v2/repository/index", headers={"modelport-admin-key": "wrong"}, timeout=5)
    assert wrong.status_code == 403


def test_http_repository_api_accepts_the_admin_key(triton):
    response = requests.post(f"http://{triton.http_url}/v2/repository/index", headers=triton.admin_headers, timeout=5)
    assert response.status_code == 200, response.text
    assert {"digits", "sentiment"} <= {entry["name"] for entry in response.json()}


def test_grpc_repository_api_needs_the_admin_key(triton):
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    with pytest.raises(InferenceServerException) as refused:
        client.get_model_repository_index()
    assert "restricted" in refused.value.message()
    index = client.get_model_repository_index(headers=triton.grpc_admin_headers)
    assert "digits" in {model.name for model in index.models}


def test_unloading_a_model_without_the_key_is_refused_and_the_model_stays_ready(triton):
    response = requests.post(f"http://{triton.http_url}/v2/repository/models/digits/unload", timeout=5)
    assert response.status_code == 403
    assert requests.get(f"http://{triton.http_url}/v2/models/digits/ready", timeout=5).status_code == 200


def test_client_facing_apis_stay_open(triton):
    for path in ("/v2/health/ready", "/v2/models/digits", "/v2/models/digits/config", "/v2/models/digits/stats"):
        response = requests.get(f"http://{triton.http_url}{path}", timeout=5)
        assert response.status_code == 200, (path, response.status_code, response.text)
    assert requests.get(f"http://{triton.metrics_url}/metrics", timeout=5).status_code == 200


def test_shared_memory_and_logging_apis_need_the_key(triton):
    for path in ("/v2/systemsharedmemory/status", "/v2/logging"):
        assert requests.get(f"http://{triton.http_url}{path}", timeout=5).status_code == 403, path
        assert requests.get(f"http://{triton.http_url}{path}", headers=triton.admin_headers, timeout=5).status_code == 200


def test_every_listening_socket_is_on_loopback(triton):
    listening = [c for c in tritonserver_of(triton).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    ports = {c.laddr.port for c in listening}
    expected = {int(url.rsplit(":", 1)[1]) for url in (triton.http_url, triton.grpc_url, triton.metrics_url)}
    assert expected <= ports
    assert {c.laddr.ip for c in listening} <= {"127.0.0.1", "::ffff:127.0.0.1"}
