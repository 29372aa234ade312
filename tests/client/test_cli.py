"""The command line without a server: usage errors and an unreachable server have their own exit codes."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
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


# Against the real server
def png_digit(path, label):
    from PIL import Image

    from export.data.digits import load_digits_images

    images, labels = load_digits_images()
    image = images[list(labels).index(label)].reshape(8, 8)
    Image.fromarray(image.astype(np.uint8), mode="L").resize((32, 32)).save(path)
    return path


@pytest.mark.integration
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_cli_health_metadata_and_predictions_against_the_server(triton, tmp_path, protocol):
    url = triton.http_url if protocol == "http" else triton.grpc_url
    base = ("--url", url, "--protocol", protocol)
    code, output = modelport(*base, "health")
    assert code == 0 and "live=True ready=True" in output, output
    code, output = modelport(*base, "metadata", "digits")
    assert code == 0 and "input  image: FP32 [-1, 8, 8, 1]" in output, output
    code, output = modelport(*base, "predict", "digits_image", str(png_digit(tmp_path / "three.png", 3)))
    assert code == 0 and output.split()[1] == "3", output
    code, output = modelport(*base, "--json", "predict", "sentiment", "a moving film", "a dull, boring mess")
    assert code == 0, output
    assert [p["label"] for p in json.loads(output)] == ["positive", "negative"]
    np.save(tmp_path / "digits.npy", np.zeros((2, 8, 8)))
    code, output = modelport(*base, "predict", "digits", str(tmp_path / "digits.npy"))
    assert code == 0 and len(output.splitlines()) == 2, output


@pytest.mark.integration
def test_cli_models_needs_the_admin_key_and_lists_models_with_it(triton):
    code, output = modelport("--url", triton.http_url, "models", env={k: v for k, v in os.environ.items()
                                                                       if k != "MODELPORT_ADMIN_KEY"})
    assert code == 4 and "MODELPORT_ADMIN_KEY" in output, output
    code, output = modelport("--url", triton.http_url, "--json", "models",
                             env=dict(os.environ, MODELPORT_ADMIN_KEY=triton.admin_key))
    assert code == 0, output
    assert {"digits", "sentiment", "digits_image"} <= {m["name"] for m in json.loads(output)}


@pytest.mark.integration
def test_cli_inference_errors_exit_with_4(triton, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    code, output = modelport("--url", triton.http_url, "predict", "digits_image", str(corrupt))
    assert code == 4 and "invalid input" in output, output
    code, output = modelport("--url", triton.http_url, "metadata", "no_such_model")
    assert code == 4 and "ModelNotFound" in output, output
