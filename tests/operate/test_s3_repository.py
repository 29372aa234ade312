"""Triton serves the exported repository from a local S3-compatible endpoint (moto's server on loopback), started
with the very flags the Kubernetes manifests give it (operate.k8s.triton_args), the kubelet's $(VAR) expansion
included. Only the flags a local run needs on top (ports, loopback, our backend directory) are added."""
from __future__ import annotations

import json
import logging
import os
import secrets
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from core.repository import served_names
from core.spec import load_spec
from core.triton import ADMIN_HEADER, ADMIN_KEY_ENV, shm_prefix
from operate import k8s
from core import triton_install
from core import process
from core.process import free_ports
from core.triton_process import clean_shm
from tests.conftest import ROOT, exported_repository

pytestmark = pytest.mark.integration

BUCKET = "modelport-models"
PREFIX = "exports/model_repository"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "modelport-test", "AWS_SECRET_ACCESS_KEY": "modelport-test-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}
READY_TIMEOUT_S = 120
# every model the exported repository serves for models.toml (models needing an absent extra are not there)
_SPEC = load_spec(ROOT / "models.toml")
SERVED_NAMES = [n for m in _SPEC.models for n in served_names(m, ROOT / "model_repository")]


def request(url: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})},
                                 method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            text = response.read()
            return response.status, json.loads(text) if text else {}
    except urllib.error.HTTPError as error:
        return error.code, {}
    except OSError:
        return 0, {}


@pytest.fixture(scope="module")
def s3_endpoint():
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per object otherwise
    (port,) = free_ports(1)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop()


def upload(endpoint: str, repository: Path) -> int:
    s3 = boto3.client("s3", endpoint_url=f"http://{endpoint}", region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
                      aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
    s3.create_bucket(Bucket=BUCKET)
    files = [path for path in sorted(repository.rglob("*")) if path.is_file()]
    for path in files:
        s3.upload_file(str(path), BUCKET, f"{PREFIX}/{path.relative_to(repository)}")
    return len(files)


def test_triton_serves_the_repository_from_s3_with_the_manifests_flags(s3_endpoint, tmp_path):
    assert upload(s3_endpoint, exported_repository()) > 20
    url = f"s3://{s3_endpoint}/{BUCKET}/{PREFIX}"
    assert k8s.S3_URL.match(url), "the test must use the URL form the manifests are checked for"
    found = triton_install.locate(ROOT / "build" / "backends")
    key = secrets.token_hex(16)
    env = {**CREDENTIALS, ADMIN_KEY_ENV: key}
    manifest = k8s.expand(k8s.triton_args(url)[1:], env)
    assert not any("$(" in arg for arg in manifest)
    tag = f"s3test_{secrets.token_hex(3)}"

    def launch(ports: list[int]) -> process.Child:
        http, grpc, metrics = ports
        local = [
            f"--backend-directory={found.backend_dir}",
            f"--backend-config=python,shm-region-prefix-name={shm_prefix(tag)}",
            "--http-address=127.0.0.1", f"--http-port={http}", "--grpc-address=127.0.0.1", f"--grpc-port={grpc}",
            "--metrics-address=127.0.0.1", f"--metrics-port={metrics}", "--allow-gpu-metrics=false",
            "--exit-timeout-secs=3", f"--log-file={tmp_path / 'triton.log'}",
        ]
        return process.Child("tritonserver", [str(found.tritonserver), *manifest, *local], tmp_path / "console.log",
                             f"http://127.0.0.1:{http}/v2/health/ready", found.environment({**os.environ, **env}),
                             ports=ports)

    began = time.monotonic()
    try:
        triton = process.start(launch, READY_TIMEOUT_S, ports=3)
    except process.StartFailed as failure:
        clean_shm(shm_prefix(tag))
        pytest.fail(f"{failure}\n{process.tail(tmp_path / 'triton.log', 40)}", pytrace=False)
    print(f"Triton ready from {url} in {time.monotonic() - began:.1f} s")
    base = f"http://127.0.0.1:{triton.ports[0]}"
    try:
        status, index = request(f"{base}/v2/repository/index", {}, {ADMIN_HEADER: key})
        assert status == 200
        assert {m["name"]: m["state"] for m in index} == {
            name: "READY" for name in SERVED_NAMES}
        # the restricted APIs stay behind the key the kubelet expanded into the flags
        assert request(f"{base}/v2/repository/index", {})[0] == 403

        status, digits = request(f"{base}/v2/models/digits/infer", {"inputs": [
            {"name": "image", "datatype": "FP32", "shape": [1, 8, 8, 1], "data": [0.0] * 64}]})
        assert status == 200 and len(digits["outputs"][0]["data"]) == 10
        status, sentiment = request(f"{base}/v2/models/sentiment/infer", {"inputs": [
            {"name": "text", "datatype": "BYTES", "shape": [1, 1], "data": ["a warm and funny film"]}]})
        assert status == 200 and abs(sum(sentiment["outputs"][0]["data"]) - 1.0) < 1e-3
    finally:
        triton.stop()
        clean_shm(shm_prefix(tag))
