"""The launcher's command line, through a real subprocess: one actionable line per failure, no traceback."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from core.process import free_ports
from tests.conftest import ROOT, exported_repository


def serve(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "serve", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    print(result.stdout[-3000:], result.stderr[-3000:])  # shown by pytest when the test fails
    return result


def assert_one_clear_error(result, *phrases):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.startswith("serve: error: ")
    for phrase in phrases:
        assert phrase in result.stderr


def test_run_with_a_missing_repository_says_to_export(tmp_path):
    result = serve("run", "--repository", str(tmp_path / "missing"), "--state-dir", str(tmp_path))
    assert_one_clear_error(result, "does not exist", "make export")


def test_run_with_an_unexported_model_says_to_export(tmp_path):
    (tmp_path / "repo" / "m" / "1").mkdir(parents=True)
    (tmp_path / "repo" / "m" / "config.pbtxt").write_text('name: "m"\nbackend: "onnxruntime"\nmax_batch_size: 1\n')
    result = serve("run", "--repository", str(tmp_path / "repo"), "--state-dir", str(tmp_path))
    assert_one_clear_error(result, "missing m/1/model.onnx", "make export")


def test_run_on_a_port_in_use_names_the_port(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve("run", "--repository", str(ROOT / "model_repository"), "--http-port", str(port),
                       "--grpc-port", "1", "--metrics-port", "2", "--state-dir", str(tmp_path))
    assert_one_clear_error(result, f"port {port}", "--http-port")


def test_invalid_port_is_refused_before_anything_starts(tmp_path):
    result = serve("run", "--http-port", "0", "--state-dir", str(tmp_path))
    assert_one_clear_error(result, "http_port must be a port number")


def test_stop_without_a_started_server_says_so(tmp_path):
    result = serve("stop", "--state-dir", str(tmp_path))
    assert_one_clear_error(result, "no server started by `make start`")


@pytest.mark.integration
def test_start_status_stop_manage_a_background_server(tmp_path):
    repository = exported_repository()
    http_port, grpc_port, metrics_port = free_ports(3)
    state = ["--state-dir", str(tmp_path / "state")]
    started = serve("start", "--repository", str(repository), "--http-port", str(http_port), "--grpc-port",
                    str(grpc_port), "--metrics-port", str(metrics_port), "--log-file", str(tmp_path / "t.log"), *state)
    try:
        assert started.returncode == 0, started.stderr
        assert f"http://127.0.0.1:{http_port}" in started.stdout and str(tmp_path / "t.log") in started.stdout
        again = serve("start", "--repository", str(repository), "--http-port", str(http_port), *state)
        assert_one_clear_error(again, "already running", "make stop")
        status = serve("status", *state)
        assert status.returncode == 0 and "digits" in status.stdout and "NOT READY" not in status.stdout
    finally:
        stopped = serve("stop", *state, timeout=60)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", http_port))  # nothing listens there any more
    assert_one_clear_error(serve("status", *state), "no server started by `make start` is running")


def test_every_flag_the_serving_page_shows_exists():
    import re

    from serve.cli import parser

    section = (ROOT / "docs" / "serving.md").read_text()
    known = {option for action in parser()._subparsers._group_actions[0].choices["run"]._actions for option in action.option_strings}
    shown = set(re.findall(r"(--[a-z][a-z-]+)(?=[ =)`])", section)) - {"--gpus", "--http-restricted-api", "--grpc-restricted-protocol", "--load-model"}
    assert shown <= known, shown - known


def test_a_cache_size_that_is_not_a_size_is_refused_before_anything_starts(tmp_path):
    result = serve("run", "--cache-size", "lots", "--state-dir", str(tmp_path))
    assert result.returncode == 2 and "--cache-size: takes bytes or a whole number with a unit" in result.stderr, (
        result.stderr)
