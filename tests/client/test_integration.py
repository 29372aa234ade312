"""The client against the real Triton of the `triton` fixture, over HTTP and gRPC, sync and asyncio."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import time
import urllib.request

import numpy as np
import pytest

import modelport

pytestmark = pytest.mark.integration

POSITIVE = ["a moving, beautiful film with wonderful performances", "one of the best films of the year, a delight"]
NEGATIVE = ["a dull, boring and painfully bad movie", "the worst film i have seen, a terrible waste of time"]


@pytest.fixture(scope="module")
def digits():
    from export.data.digits import load_digits_images

    images, labels = load_digits_images()
    return images[:64], labels[:64]


def png(image_8x8: np.ndarray, paper: bool = False, size: int = 32, fmt: str = "PNG") -> bytes:
    """Encode an 8x8 0..255 digit, optionally as dark ink on light paper, scaled up as a photo of it would be."""
    from PIL import Image

    pixels = image_8x8.reshape(8, 8)
    pixels = 255 - pixels if paper else pixels
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), mode="L").resize((size, size), Image.NEAREST).save(buffer, format=fmt)
    return buffer.getvalue()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accuracy(predictions, labels) -> float:
    return float(np.mean([p.label == str(label) for p, label in zip(predictions, labels)]))


# Server
def test_the_server_is_live_and_ready(client):
    assert client.is_live() and client.is_ready()
    client.wait_until_ready(timeout=10, model="digits")


def test_an_unreachable_server_is_not_live_and_waiting_for_it_times_out(connect):
    client = connect(url=f"127.0.0.1:{closed_port()}", retries=0)
    assert not client.is_live() and not client.is_ready()
    with pytest.raises(modelport.ServerUnavailable, match="not ready after 0.3s"):
        client.wait_until_ready(timeout=0.3)


def test_models_lists_every_contract_model_as_ready_with_the_admin_key(connect, triton):
    models = {m.name: m for m in connect(headers=triton.admin_headers).models()}
    for name in ("digits", "digits_int8", "digits_image", "sentiment"):
        assert models[name].state == "READY" and models[name].versions, models[name]


def test_models_without_the_admin_key_is_access_denied(client):
    with pytest.raises(modelport.AccessDenied, match="modelport-admin-key") as caught:
        client.models()
    assert "restricted" in caught.value.server_message


# Models
def test_metadata_and_config_describe_the_digits_contract(client):
    metadata = client.metadata("digits")
    assert metadata.inputs == (modelport.TensorSpec("image", "FP32", (-1, 8, 8, 1)),)
    assert metadata.outputs == (modelport.TensorSpec("probabilities", "FP32", (-1, 10)),)
    config = client.config("digits")
    assert config.max_batch_size >= 32 and config.output[0].label_filename


def server_labels(client, model, item, classes):
    """index -> label as Triton's classification extension reports them for `item`."""
    name = client.metadata(model).outputs[0].name
    entries = client.infer(model, item, outputs=[name], class_count=classes)[name][0]
    return dict(sorted((int(e.decode().split(":")[1]), e.decode().split(":", 2)[2]) for e in entries))


def inference_count(triton, model: str) -> int:
    with urllib.request.urlopen(f"http://{triton.http_url}/v2/models/{model}/stats", timeout=5) as response:
        return sum(s["inference_count"] for s in json.load(response)["model_stats"])


def settled_inference_count(triton, model: str, expected: int, timeout_s: float = 3.0) -> int:
    """Triton counts an inference after it sends the response: poll until the count reaches `expected` (or time out,
    returning the last count)."""
    deadline = time.monotonic() + timeout_s
    count = inference_count(triton, model)
    while count < expected and time.monotonic() < deadline:
        time.sleep(0.02)
        count = inference_count(triton, model)
    return count


TEXT = np.array([["a moving film"]], dtype=object)


@pytest.mark.parametrize("model, classes", [("digits", 10), ("digits_int8", 10), ("digits_image", 10),
                                            ("sentiment", 2)])
def test_predict_names_every_class_with_the_labels_the_server_reports(client, digits, model, classes):
    images, _ = digits
    item = {"digits_image": np.array([[png(images[0])]], dtype=object), "sentiment": TEXT}.get(model, images[:1])
    expected = server_labels(client, model, item, classes)
    found = client.predict(model, item)
    assert isinstance(found, list) and len(found) == 1
    prediction = found[0].prediction
    assert list(prediction.scores) == [expected[i] for i in range(classes)]
    raw = client.infer(model, item)["probabilities"][0]
    assert prediction.label == expected[int(np.argmax(raw))]
    np.testing.assert_allclose(list(prediction.scores.values()), raw, rtol=1e-6)


def test_predict_on_one_item_gives_one_output_and_on_a_batch_a_list(client, digits):
    images, labels = digits
    one = client.predict("digits", images[0])  # [8,8,1]: the model's dims
    assert isinstance(one, modelport.ModelOutput) and one.prediction.label == str(labels[0])
    batch = client.predict("digits", images[:16])
    assert [item.prediction.label for item in batch] == [p.label for p in client.classify_digits(images[:16])]
    assert accuracy([item.prediction for item in batch], labels[:16]) >= 0.9


def test_predict_top_keeps_the_k_best_best_first(client, digits):
    images, _ = digits
    for item in client.predict("digits_int8", images[:4], top=3):
        scores = list(item.prediction.scores.values())
        assert len(scores) == 3 and scores == sorted(scores, reverse=True)
        assert next(iter(item.prediction.scores)) == item.prediction.label
    single = client.predict("sentiment", POSITIVE[0], top=1).prediction
    assert single.label == "positive" and list(single.scores) == ["positive"]


def test_predict_sends_paths_bytes_and_texts_to_string_inputs(client, digits, tmp_path):
    images, labels = digits
    path = tmp_path / "digit.png"
    path.write_bytes(png(images[3], paper=True, size=64))
    from_path = client.predict("digits_image", path)
    assert isinstance(from_path, modelport.ModelOutput)
    assert client.predict("digits_image", [path.read_bytes()])[0].prediction == from_path.prediction
    assert [item.prediction.label for item in client.predict("sentiment", POSITIVE + NEGATIVE)] == \
        ["positive"] * len(POSITIVE) + ["negative"] * len(NEGATIVE)


@pytest.mark.parametrize("ids, message", [
    (np.full((1, 64), 0.5), r"got 0.5 at \[0, 0\] \(numpy float64\): it is not a whole number"),
    (np.full((1, 64), np.nan), r"got nan at \[0, 0\].*int64 has no NaN"),
    (np.full((1, 64), 2 ** 63, np.uint64), r"got 9223372036854775808 at \[0, 0\].*outside int64's range"),
])
def test_a_cast_that_would_change_a_value_is_refused_and_nothing_reaches_the_server(client, triton, ids, message):
    before = inference_count(triton, "sentiment_classifier")
    with pytest.raises(modelport.InvalidInput, match="sentiment_classifier: input 'input_ids' expects INT64.*" +
                       message):
        client.predict("sentiment_classifier", ids)
    assert inference_count(triton, "sentiment_classifier") == before
    whole = np.full((1, 64), 7.0)  # whole-numbered floats keep their values: sent, as int64
    assert client.infer("sentiment_classifier", whole)["probabilities"].shape == (1, 2)
    assert settled_inference_count(triton, "sentiment_classifier", before + 1) == before + 1


def test_a_batch_larger_than_max_batch_size_is_split_and_comes_back_in_order(client, digits):
    images, _ = digits
    limit = client.config("digits").max_batch_size
    batch = np.concatenate([images] * (2 * limit // len(images) + 1))[: 2 * limit + 3]
    whole = client.infer("digits", batch)["probabilities"]
    one_by_one = np.concatenate([client.infer("digits", batch[i:i + 1])["probabilities"] for i in range(len(batch))])
    assert whole.shape == (2 * limit + 3, 10)
    np.testing.assert_allclose(whole, one_by_one, rtol=1e-4, atol=1e-5)


# Helpers
def test_classify_digits_recognises_real_digits_in_every_accepted_shape(client, digits):
    images, labels = digits
    assert accuracy(client.classify_digits(images), labels) >= 0.9
    assert accuracy(client.classify_digits(images[..., 0]), labels) >= 0.9
    single = client.classify_digits(images[0, ..., 0])
    assert single.label == str(labels[0]) and single.score == max(single.scores.values())


@pytest.mark.parametrize("model", ["digits_int8", "digits_fp16"])
def test_classify_digits_works_with_the_quantized_variants(client, digits, model):
    images, labels = digits
    assert accuracy(client.classify_digits(images, model=model), labels) >= 0.85


def test_classify_images_reads_png_and_jpeg_files_and_bytes_in_either_polarity(client, digits, tmp_path):
    images, labels = digits
    sample, expected = images[:12], labels[:12]
    paths = []
    for i, image in enumerate(sample[:6]):
        paths.append(tmp_path / f"digit{i}.png")
        paths[-1].write_bytes(png(image, paper=i % 2 == 0))
    found = client.classify_images(paths + [png(image, paper=True, size=64, fmt="JPEG") for image in sample[6:]])
    assert accuracy(found, expected) >= 0.75
    assert client.classify_images(str(paths[0])).label == found[0].label


def test_sentiment_tells_praise_from_scorn(client):
    found = client.sentiment(POSITIVE + NEGATIVE)
    assert [p.label for p in found] == ["positive"] * len(POSITIVE) + ["negative"] * len(NEGATIVE)
    assert client.sentiment(POSITIVE[0]).scores["positive"] > 0.5


# Errors
def test_an_unknown_model_is_model_not_found(client):
    with pytest.raises(modelport.ModelNotFound, match="no_such_model") as caught:
        client.infer("no_such_model", np.zeros((1, 1), np.float32))
    assert "unknown model" in caught.value.server_message


def test_a_wrong_shape_is_invalid_input_before_sending(client):
    with pytest.raises(modelport.InvalidInput, match=r"add a batch axis: x\[None\]"):
        client.infer("digits", np.zeros((8, 8, 1), np.float32))


def test_a_corrupt_image_is_invalid_input_with_the_servers_message(client, digits):
    with pytest.raises(modelport.InvalidInput) as caught:
        client.classify_images(b"this is not an image")
    assert caught.value.server_message and caught.value.model == "digits_image"
    assert client.classify_images(png(digits[0][0])).label  # the next good request is served


def test_a_call_that_outlives_its_timeout_is_inference_timeout(client):
    # gRPC rounds deadlines up to whole milliseconds and digits answers in less: 32 MobileNetV2 images take ~10 ms
    images = np.random.default_rng(0).uniform(0, 255, (32, 64, 64, 3)).astype(np.float32)
    with pytest.raises(modelport.InferenceTimeout, match="no answer"):
        client.infer("digits_mobilenet", images, timeout=1e-6)


def test_an_unreachable_server_is_server_unavailable_after_the_retries(connect):
    client = connect(url=f"127.0.0.1:{closed_port()}", retries=modelport.RetryPolicy(retries=2, base_delay_s=0.01))
    with pytest.raises(modelport.ServerUnavailable, match="gave up after 3 attempts"):
        client.sentiment("anyone there?")


def _tritonserver_pid(http_port: str) -> int:
    for entry in os.listdir("/proc"):
        try:
            argv = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"tritonserver") and f"--http-port={http_port}".encode() in argv:
            return int(entry)
    raise AssertionError(f"no tritonserver process serves HTTP port {http_port}")


def _stub_pid(server_pid: int, instance: str) -> int:
    """The python backend process running `instance` (e.g. digits_0_0) for this server."""
    for entry in os.listdir("/proc"):
        try:
            argv = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")
            status = open(f"/proc/{entry}/status").read()
        except OSError:
            continue
        if (argv and argv[0].endswith(b"triton_python_backend_stub") and instance.encode() in argv
                and f"\nPPid:\t{server_pid}\n" in status):
            return int(entry)
    raise AssertionError(f"no backend process for instance {instance} under tritonserver {server_pid}")


def test_inference_is_retried_across_a_killed_backend_process(connect, triton, digits):
    """kill -9 of the backend stubs: a dead instance answers 500 'not healthy' until the server reloads the model;
    without retries the caller sees ServerError, with retries every call succeeds."""
    images = digits[0][:1]
    patient = connect(retries=modelport.RetryPolicy(retries=10, base_delay_s=0.05, max_delay_s=2.0))
    impatient = connect(retries=0)
    patient.infer("digits", images)  # both connected and metadata cached before the kill
    impatient.infer("digits", images)

    # Every instance's stub: a surviving instance would answer, and the impatient caller might never see a failure.
    server_pid = _tritonserver_pid(triton.http_url.rsplit(":", 1)[1])
    for pid in [_stub_pid(server_pid, instance) for instance in triton.instance_names("digits")]:
        os.kill(pid, signal.SIGKILL)
    failures, healthy_streak, calls = [], 0, 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (failures and healthy_streak >= 10):
        try:
            impatient.infer("digits", images)
            healthy_streak += 1
        except modelport.ServerError as error:
            failures.append(error)
            healthy_streak = 0
        try:
            patient.infer("digits", images)  # must never raise
        except modelport.ServerError as error:
            pytest.fail(f"retries ran out before the server served digits again ({error}); the server is expected "
                        f"to reload a model whose backend process died.\n{triton.log_tail(10)}")
        calls += 1
    assert failures, "the killed instances never failed a request: were the right processes killed?"
    assert all("is not healthy" in error.server_message for error in failures)
    if connect.variant[0] == "http":
        assert failures[0].http_status == 500
    else:
        assert failures[0].grpc_code == "INTERNAL"
    assert healthy_streak >= 10, f"digits still failing after 60s ({len(failures)} failures in {calls} calls)"
