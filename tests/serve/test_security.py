"""Secure defaults: loopback sockets, the admin APIs refuse callers without the key, and what other local users can
read of the key."""
from __future__ import annotations

import os
import shutil
import subprocess

import grpc
import psutil
import pytest
import requests
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from core.process import wait_until
from tests.conftest import exported_repository, launch_triton

pytestmark = pytest.mark.integration

NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")  # another local user, as root can become
EXPOSURE_WARNING = "warning: tritonserver takes the admin key only on its command line"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="becoming another user and mounting /proc need root")


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


def cmdline_as_nobody(pid: int, enter: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*enter, *NOBODY, "cat", f"/proc/{pid}/cmdline"], capture_output=True, timeout=10)


@needs_root
def test_serve_warns_exactly_when_another_local_user_can_read_the_admin_key(triton):
    """Triton 2.51 takes the key only in argv: under a /proc without hidepid (the default) user `nobody` reads it."""
    seen = cmdline_as_nobody(triton.tritonserver().pid)
    readable = seen.returncode == 0 and triton.admin_key.encode() in seen.stdout
    assert readable == (EXPOSURE_WARNING in triton.events_path.read_text()), (seen, triton.log_tail())


@needs_root
def test_under_proc_mounted_hidepid_other_users_cannot_read_the_admin_key_and_triton_serves(tmp_path):
    """The documented fix for a shared host, in a mount namespace of its own: /proc mounted hidepid=2 there."""
    repository = tmp_path / "repository"
    shutil.copytree(exported_repository() / "digits", repository / "digits")
    hidepid = ("unshare", "--mount", "--propagation", "private", "--",
               "sh", "-c", 'mount -t proc -o hidepid=2 proc /proc && exec "$@"', "sh")
    with launch_triton(repository, tmp_path / "run", wrapper=hidepid) as server:
        inside = ("nsenter", f"--target={server.pid}", "--mount")
        pid = server.tritonserver().pid
        as_nobody = cmdline_as_nobody(pid, inside)
        as_owner = subprocess.run([*inside, "cat", f"/proc/{pid}/cmdline"], capture_output=True, timeout=10)
        served = requests.post(f"http://{server.http_url}/v2/models/digits/infer", timeout=5, json={"inputs": [
            {"name": "image", "datatype": "FP32", "shape": [1, 8, 8, 1], "data": [0.0] * 64}]})
        # Triton answers before the launcher writes "Triton ready" (it waits for every model): wait for the line
        wait_until(lambda: "Triton ready" in server.events_path.read_text(), 30)
        events = server.events_path.read_text()
    assert as_nobody.returncode != 0 and server.admin_key.encode() not in as_nobody.stdout, as_nobody
    assert server.admin_key.encode() in as_owner.stdout  # the owner (the supervisor) still sees its children
    assert served.status_code == 200, served.text
    assert EXPOSURE_WARNING not in events and "Triton ready" in events
