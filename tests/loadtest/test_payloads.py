import io
import json

import numpy as np
from PIL import Image

from loadtest import payloads, v2


def test_digits_payloads_are_single_images_in_the_serving_scale():
    samples = payloads.samples("digits", 16)

    assert len(samples) == 16
    assert all(s.array.shape == (1, 8, 8, 1) and s.array.dtype == np.float32 for s in samples)
    assert max(float(s.array.max()) for s in samples) > 200  # 0..255, not sklearn's 0..16


def test_png_payloads_are_real_png_files_of_several_sizes_half_dark_ink_on_light_paper():
    samples = payloads.samples("digits_image", 8)
    pictures = [Image.open(io.BytesIO(s.array[0, 0])) for s in samples]

    assert {p.format for p in pictures} == {"PNG"}
    assert {p.size[0] for p in pictures} == set(payloads.PNG_SIDES)
    corners = [np.asarray(p)[0, 0] for p in pictures]  # digits have an empty border: paper colour
    assert corners[0] < 128 and corners[1] > 128


def test_sentences_are_real_utf8_text_of_varied_length():
    texts = [s.array[0, 0].decode("utf-8") for s in payloads.samples("sentiment", 64)]

    lengths = sorted(len(t.split()) for t in texts)
    assert len(texts) == 64
    assert lengths[0] <= 3 and lengths[-1] >= 30


def test_binary_request_carries_the_json_header_length_and_the_raw_tensor():
    sample = payloads.samples("digits", 1)[0]

    request = v2.http_request(sample, "binary")

    header_length = int(request.headers[v2.HEADER_LENGTH])
    header = json.loads(request.body[:header_length])
    assert header["inputs"][0]["name"] == "image" and header["inputs"][0]["shape"] == [1, 8, 8, 1]
    assert request.body[header_length:] == sample.array.tobytes()
    assert request.path == "/v2/models/digits/infer"


def test_json_request_is_plain_json_but_images_stay_binary_since_json_cannot_carry_bytes():
    text_request = v2.http_request(payloads.samples("sentiment", 1)[0], "json")
    image_request = v2.http_request(payloads.samples("digits_image", 1)[0], "json")

    assert text_request.headers["Content-Type"] == "application/json"
    assert json.loads(text_request.body)["inputs"][0]["datatype"] == "BYTES"
    assert v2.HEADER_LENGTH in image_request.headers


def _binary_response(rows: int) -> tuple[bytes, dict]:
    data = np.full((rows, 10), 0.1, dtype=np.float32).tobytes()
    header = json.dumps({"model_name": "digits", "outputs": [
        {"name": "probabilities", "datatype": "FP32", "shape": [rows, 10],
         "parameters": {"binary_data_size": len(data)}}]}).encode()
    return header + data, {v2.HEADER_LENGTH: str(len(header))}


def test_a_response_with_the_requested_output_for_every_row_passes_the_check():
    request = v2.http_request(payloads.samples("digits", 1)[0], "binary")
    body, headers = _binary_response(1)

    assert v2.response_error(200, body, headers, request) is None


def test_a_response_with_the_wrong_row_count_or_an_error_status_is_a_failure_saying_why():
    request = v2.http_request(payloads.samples("digits", 1)[0], "binary")
    body, headers = _binary_response(2)

    assert "expected 1 finite rows" in v2.response_error(200, body, headers, request)
    assert "HTTP 400" in v2.response_error(400, b'{"error":"bad input"}', {}, request)
    assert "bad input" in v2.response_error(400, b'{"error":"bad input"}', {}, request)


def test_requests_ask_for_uncompressed_responses_like_the_python_client():
    # FastHttpUser would otherwise send Accept-Encoding: gzip and Triton would spend CPU compressing every answer
    request = v2.http_request(payloads.samples("digits", 1)[0], "json")

    assert request.headers["Accept-Encoding"] == "identity"
