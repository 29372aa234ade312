"""The command line without a server: usage errors and an unreachable server have their own exit codes."""

import socket
import subprocess
import sys

import pytest


def modelport(*args, env=None):
    done = subprocess.run([sys.executable, "-m", "modelport", *args], capture_output=True, text=True, timeout=60,
                          env=env)
    return done.returncode, done.stdout + done.stderr


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_help_lists_the_commands_and_exit_codes():
    code, output = modelport("--help")
    assert code == 0, output
    for word in ("health", "models", "metadata", "predict", "2 usage error", "3 server unreachable"):
        assert word in output, output


@pytest.mark.parametrize("args, message", [
    ((), "required: COMMAND"),
    (("predict", "digits_image"), "the following arguments are required: inputs"),
    (("--protocol", "smtp", "health"), "invalid choice: 'smtp'"),
    (("--url", "127.0.0.1:1", "predict", "resnet", "x.png"), "predict knows digits_image, sentiment"),
    (("--url", "127.0.0.1:1", "predict", "digits_image", "/nonexistent/a.png"), "no such file: /nonexistent/a.png"),
    (("--url", "http://127.0.0.1:8000", "health"), "without a scheme"),
])
def test_usage_errors_exit_with_2_and_say_what_is_wrong(args, message):
    code, output = modelport(*args)
    assert code == 2, output
    assert message in output, output


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("command", [["health"], ["metadata", "digits"], ["predict", "sentiment", "fine"]])
def test_an_unreachable_server_exits_with_3(protocol, command):
    code, output = modelport("--url", f"127.0.0.1:{closed_port()}", "--protocol", protocol, "--retries", "0",
                             *command)
    assert code == 3, output
    assert "127.0.0.1" in output, output
