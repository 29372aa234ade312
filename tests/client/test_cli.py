"""The command line: usage errors and an unreachable server have their own exit codes; predict for any model."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from modelport.cli_inputs import UsageError, classify, requests
from modelport.metadata import parse_metadata
from tests.client.fakes import DIGITS_METADATA, PAIR_METADATA


def modelport(*args, env=None):
    done = subprocess.run([sys.executable, "-m", "modelport", *args], capture_output=True, text=True, timeout=60,
                          env=env)
    return done.returncode, done.stdout + done.stderr


def tail(output: str, lines: int = 40) -> str:
    return "\n".join(output.splitlines()[-lines:])


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
    (("--url", "127.0.0.1:1", "predict", "resnet", "x.png"), "no such file: x.png (to send it as text, pass --text)"),
    (("--url", "127.0.0.1:1", "predict", "digits_image", "/nonexistent/a.png"), "no such file: /nonexistent/a.png"),
    (("--url", "127.0.0.1:1", "predict", "digits", "/nonexistent/batch.npz"), "no such file: /nonexistent/batch.npz"),
    (("predict", "digits", "x.npy", "--top", "0"), "--top: takes a positive integer, got '0'"),
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


PAIR = parse_metadata(PAIR_METADATA)
DIGITS = parse_metadata(DIGITS_METADATA)


def test_an_npy_file_for_a_model_with_several_inputs_names_them_and_the_fix(tmp_path):
    np.save(tmp_path / "ids.npy", np.zeros((1, 3), np.int64))
    with pytest.raises(UsageError) as caught:
        requests(classify([str(tmp_path / "ids.npy")], as_text=False), PAIR)
    assert str(caught.value) == (
        f"model pair has inputs ids (INT64 [N,3]), text (BYTES [N,1]): {tmp_path / 'ids.npy'} holds one array; "
        f'pass an .npz with arrays ids, text or a JSON file {{"ids": ..., "text": ...}}')


def test_text_for_a_numeric_input_says_which_files_it_takes():
    with pytest.raises(UsageError, match=r"model digits has input image \(FP32 \[N,8,8,1\]\); 'seven' is text, "
                                         r"which goes only to a model with one TYPE_STRING input: pass a \.npy file "
                                         r"\(one item \[8,8,1\] or a batch \[N,8,8,1\]\) or a JSON file"):
        requests(classify(["seven"], as_text=False), DIGITS)


def test_npz_and_json_files_give_arrays_by_input_name_and_loose_arguments_one_batch(tmp_path):
    np.savez(tmp_path / "pair.npz", ids=np.ones((2, 3), np.int64), text=np.array([["a"], ["b"]]))
    (tmp_path / "pair.json").write_text(json.dumps({"ids": [1, 2, 3], "text": "hi"}))
    found = requests(classify([str(tmp_path / "pair.npz"), str(tmp_path / "pair.json")], as_text=False), PAIR)
    assert [sorted(r.inputs) for r in found] == [["ids", "text"], ["ids", "text"]]
    assert found[0].inputs["ids"].tolist() == [[1, 1, 1], [1, 1, 1]] and found[1].inputs["text"] == "hi"
    strings = parse_metadata({"name": "s", "inputs": [{"name": "x", "datatype": "BYTES", "shape": [-1, 1]}]})
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01")
    loose = requests(classify([str(tmp_path / "blob.bin"), "some text", "also.this"], as_text=True), strings)
    assert loose[0].inputs == [str(tmp_path / "blob.bin"), "some text", "also.this"]  # --text: all texts
    loose = requests(classify([str(tmp_path / "blob.bin"), "some text"], as_text=False), strings)
    assert loose[0].inputs == [b"\x00\x01", "some text"] and loose[0].names == [str(tmp_path / "blob.bin"),
                                                                                 "some text"]


def test_a_malformed_json_file_is_a_usage_error_naming_it(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UsageError, match=r"bad.json: cannot read it as json"):
        requests(classify([str(tmp_path / "bad.json")], as_text=False), DIGITS)


# Against the real server
def png_digit(path, label):
    from PIL import Image

    from export.data.digits import load_digits_images

    images, labels = load_digits_images()
    image = images[list(labels).index(label)].reshape(8, 8)
    Image.fromarray(image.astype(np.uint8), mode="L").resize((32, 32)).save(path)
    return path


def real_digits(count):
    from export.data.digits import load_digits_images

    images, labels = load_digits_images()
    return images[:count].astype(np.float32), [str(label) for label in labels[:count]]


@pytest.mark.integration
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_cli_health_metadata_and_predictions_against_the_server(triton, tmp_path, protocol):
    url = triton.http_url if protocol == "http" else triton.grpc_url
    base = ("--url", url, "--protocol", protocol)
    code, output = modelport(*base, "health")
    assert code == 0 and "live=True ready=True" in output, tail(output)
    code, output = modelport(*base, "metadata", "digits")
    assert code == 0 and "input  image: FP32 [-1, 8, 8, 1]" in output, tail(output)
    code, output = modelport(*base, "predict", "digits_image", str(png_digit(tmp_path / "three.png", 3)))
    assert code == 0 and output.split()[:2] == [str(tmp_path / "three.png"), "3"], tail(output)
    code, output = modelport(*base, "--json", "predict", "sentiment", "a moving film", "a dull, boring mess")
    assert code == 0, tail(output)
    answers = json.loads(output)
    assert [a["input"] for a in answers] == ["a moving film", "a dull, boring mess"]
    assert [a["outputs"]["probabilities"]["label"] for a in answers] == ["positive", "negative"]


@pytest.mark.integration
def test_cli_predict_reads_npy_npz_and_json_files_for_any_model(triton, tmp_path):
    images, labels = real_digits(5)
    np.save(tmp_path / "batch.npy", images[:2])
    np.save(tmp_path / "one.npy", images[2])
    np.savez(tmp_path / "named.npz", image=images[3:4])
    (tmp_path / "one.json").write_text(json.dumps({"image": images[4].tolist()}))
    files = [tmp_path / "batch.npy", tmp_path / "one.npy", tmp_path / "named.npz", tmp_path / "one.json"]
    code, output = modelport("--url", triton.http_url, "predict", "digits_int8", *map(str, files))
    assert code == 0, tail(output)
    rows = [line.split("\t") for line in output.splitlines()]
    assert [row[0] for row in rows] == [f"{files[0]}[0]", f"{files[0]}[1]", str(files[1]), f"{files[2]}[0]",
                                        str(files[3])], tail(output)
    assert sum(row[1] == label for row, label in zip(rows, labels)) >= 4, tail(output)


@pytest.mark.integration
def test_cli_predict_top_k_prints_the_k_best_labels_from_the_server(triton, tmp_path):
    code, output = modelport("--url", triton.http_url, "predict", "sentiment", "a moving film", "--top", "2")
    assert code == 0, tail(output)
    name, first, first_score, second, second_score = output.strip().split("\t")
    assert (name, first, second) == ("a moving film", "positive", "negative") and float(first_score) > float(
        second_score), tail(output)
    code, output = modelport("--url", triton.http_url, "--json", "predict", "digits",
                             str(png_npy(tmp_path)), "--top", "3")
    assert code == 0, tail(output)
    scores = json.loads(output)[0]["outputs"]["probabilities"]["scores"]
    assert len(scores) == 3 and list(scores.values()) == sorted(scores.values(), reverse=True), tail(output)


def png_npy(tmp_path):
    images, _ = real_digits(1)
    np.save(tmp_path / "digit.npy", images[0])
    return tmp_path / "digit.npy"


@pytest.mark.integration
def test_cli_predict_without_labels_prints_arrays(triton):
    code, output = modelport("--url", triton.http_url, "--json", "predict", "sentiment_tokenizer", "a moving film")
    assert code == 0, tail(output)
    answer = json.loads(output)[0]
    ids = answer["outputs"]["input_ids"]
    assert answer["input"] == "a moving film" and len(ids) == 64 and ids[0] != 0 and ids[-1] == 0, tail(output)


@pytest.mark.integration
def test_cli_predict_errors_name_the_input_and_the_fix(triton, tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros((2, 8, 8)))
    code, output = modelport("--url", triton.http_url, "predict", "digits", str(tmp_path / "flat.npy"))
    assert code == 4 and "input 'image' takes one item of shape [8,8,1] or a batch of them [N,8,8,1], got " \
                          "[2, 8, 8]; add a channel axis: x[..., None]" in output, tail(output)
    (tmp_path / "ids.json").write_text(json.dumps({"input_ids": [[300.5] * 64]}))
    code, output = modelport("--url", triton.http_url, "predict", "sentiment_classifier", str(tmp_path / "ids.json"))
    assert code == 4 and "input 'input_ids' expects INT64" in output and "not a whole number" in output, tail(output)
    code, output = modelport("--url", triton.http_url, "predict", "digits", "seven")
    assert code == 2 and "pass a .npy file (one item [8,8,1] or a batch [N,8,8,1])" in output, tail(output)


@pytest.mark.integration
def test_cli_models_needs_the_admin_key_and_lists_models_with_it(triton):
    code, output = modelport("--url", triton.http_url, "models", env={k: v for k, v in os.environ.items()
                                                                       if k != "MODELPORT_ADMIN_KEY"})
    assert code == 4 and "MODELPORT_ADMIN_KEY" in output, tail(output)
    code, output = modelport("--url", triton.http_url, "--json", "models",
                             env=dict(os.environ, MODELPORT_ADMIN_KEY=triton.admin_key))
    assert code == 0, tail(output)
    assert {"digits", "sentiment", "digits_image"} <= {m["name"] for m in json.loads(output)}


@pytest.mark.integration
def test_cli_inference_errors_exit_with_4(triton, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    code, output = modelport("--url", triton.http_url, "predict", "digits_image", str(corrupt))
    assert code == 4 and "invalid input" in output, tail(output)
    code, output = modelport("--url", triton.http_url, "metadata", "no_such_model")
    assert code == 4 and "ModelNotFound" in output, tail(output)
