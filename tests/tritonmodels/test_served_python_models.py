"""The python models behind the `digits_image` and `sentiment` ensembles, called through a real Triton."""

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.http as http
from PIL import Image
from tritonclient.utils import InferenceServerException

from export.data.digits import load_digits_images
from export.data.polarity import load_polarity
from export.data.split import stratified_split
from export.train import sentiment
from tests.conftest import ROOT
from tests.tritonmodels.images import png_declaring

pytestmark = pytest.mark.integration


def infer(url: str, model: str, input_name: str, output_name: str, items: list[bytes]) -> np.ndarray:
    client = http.InferenceServerClient(url)
    tensor = http.InferInput(input_name, [len(items), 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[item] for item in items], dtype=np.object_), binary_data=True)
    result = client.infer(model, [tensor], outputs=[http.InferRequestedOutput(output_name, binary_data=True)])
    return result.as_numpy(output_name)


def jpeg_of(digit: np.ndarray) -> bytes:
    """A held-out 8x8 digit drawn 64x64, dark ink on white paper, as a camera or scanner would give it."""
    pixels = (255 - np.kron(digit[..., 0], np.ones((8, 8)))).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG")
    return buffer.getvalue()


def test_digits_image_recognizes_held_out_digits_sent_as_dark_on_light_jpegs(triton):
    images, labels = load_digits_images()
    _, heldout = stratified_split(labels, 0.2, seed=0)
    probabilities = np.concatenate([
        infer(triton.http_url, "digits_image", "image_bytes", "probabilities",
              [jpeg_of(images[i]) for i in heldout[start:start + 32]])
        for start in range(0, len(heldout), 32)])
    assert probabilities.shape == (len(heldout), 10)
    assert (probabilities.argmax(axis=1) == labels[heldout]).mean() >= 0.9


@pytest.mark.parametrize("payload, message", [
    (b"", "image_bytes is empty (0 bytes)"),
    (b"GIF89a", "is not a PNG or JPEG image"),
    (png_declaring(100_000, 100_000), "10000000000 pixels"),
])
def test_digits_image_answers_a_hostile_image_with_a_400_that_says_why(triton, payload, message):
    with pytest.raises(InferenceServerException) as raised:
        infer(triton.http_url, "digits_image", "image_bytes", "probabilities", [payload])
    assert raised.value.status() == "400"
    assert message in raised.value.message()


def test_one_bad_image_among_concurrent_requests_fails_only_its_own_request(triton):
    images, _ = load_digits_images()
    payloads = [jpeg_of(images[i]) for i in range(15)] + [b"\xff\xd8\xff\xe0 truncated jpeg"]

    def call(payload):
        try:
            return infer(triton.http_url, "digits_image", "image_bytes", "probabilities", [payload])
        except InferenceServerException as error:
            return error

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(call, payloads))
    assert all(isinstance(result, np.ndarray) and result.shape == (1, 10) for result in results[:15])
    assert isinstance(results[15], InferenceServerException) and "JPEG image" in results[15].message()


def test_sentiment_tokenizer_serves_exactly_the_ids_the_classifier_was_evaluated_on(triton):
    texts, labels = load_polarity()
    _, heldout = stratified_split(labels, sentiment.HELDOUT_FRACTION, seed=0)
    served = np.concatenate([
        infer(triton.http_url, "sentiment_tokenizer", "text", "input_ids",
              [texts[i].encode() for i in heldout[start:start + 32]])
        for start in range(0, len(heldout), 32)])
    trained = np.load(ROOT / "models" / "sentiment" / "heldout.npz")
    np.testing.assert_array_equal(served, trained["x"])


def test_sentiment_reads_clear_sentences_the_right_way_round(triton):
    probabilities = infer(triton.http_url, "sentiment", "text", "probabilities",
                          ["a gorgeous , witty and moving film".encode(), "dull , lifeless and boring".encode()])
    assert probabilities.argmax(axis=1).tolist() == [1, 0]  # labels: negative, positive


@pytest.mark.parametrize("payload, message", [
    (b"good \xff film", "not valid UTF-8: byte offset 5"),
    (b" \n ", "empty or whitespace only"),
    (b"a " * 40_000, "80000 bytes, more than max_text_bytes=65536"),
])
def test_sentiment_answers_bad_text_with_a_400_that_says_why(triton, payload, message):
    with pytest.raises(InferenceServerException) as raised:
        infer(triton.http_url, "sentiment", "text", "probabilities", [payload])
    assert raised.value.status() == "400"
    assert message in raised.value.message()


def test_a_text_longer_than_max_tokens_is_truncated_not_rejected(triton):
    long_text = " ".join(["witty"] * 500).encode()
    ids = infer(triton.http_url, "sentiment_tokenizer", "text", "input_ids", [long_text])
    assert ids.shape == (1, sentiment.MAX_TOKENS) and (ids != 0).all()
