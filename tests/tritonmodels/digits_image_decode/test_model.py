import io

import numpy as np
import pytest
from PIL import Image

from tests.tritonmodels.fake_triton import Request, TritonError, TritonModelException, load_model, strings
from tests.tritonmodels.loading import load_helper

CONFIG = {
    "name": "digits_image_decode",
    "max_batch_size": 32,
    "input": [{"name": "image_bytes", "data_type": "TYPE_STRING", "dims": [1]}],
    "output": [{"name": "image", "data_type": "TYPE_FP32", "dims": [8, 8, 1]}],
    "parameters": {"max_image_bytes": {"string_value": "4096"}, "max_pixels": {"string_value": "10000"}},
}


def png(size: int) -> bytes:
    pixels = np.zeros((size, size), np.uint8)
    pixels[size // 4: -size // 4, size // 3: -size // 3] = 255
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def model(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # initialize sets it; restore after
    return load_model(monkeypatch, "digits_image_decode", CONFIG)


def test_each_request_gets_one_response_in_order_with_its_batch_of_images(model):
    responses = model.execute([Request(image_bytes=strings(png(32), png(40))), Request(image_bytes=strings(png(16)))])
    assert [r.error for r in responses] == [None, None]
    assert responses[0].output("image").shape == (2, 8, 8, 1)
    assert responses[1].output("image").shape == (1, 8, 8, 1)
    assert responses[0].output("image").dtype == np.float32


def test_a_bad_request_gets_its_own_invalid_arg_error_and_the_others_still_succeed(model):
    responses = model.execute([Request(image_bytes=strings(png(32))), Request(image_bytes=strings(png(32), b"")),
                               Request(image_bytes=strings(png(200))), Request(image_bytes=strings(png(8)))])
    assert responses[0].error is None and responses[3].error is None
    assert responses[1].error.code() == TritonError.INVALID_ARG
    assert "empty (0 bytes)" in responses[1].error.message()
    assert responses[2].error.code() == TritonError.INVALID_ARG
    assert "max_pixels=10000" in responses[2].error.message()


def test_limits_come_from_the_config_parameters(model):
    assert (model.max_image_bytes, model.max_pixels) == (4096, 10000)
    assert Image.MAX_IMAGE_PIXELS == 10000


def test_a_non_numeric_parameter_fails_loading_naming_the_parameter(monkeypatch):
    config = {**CONFIG, "parameters": {"max_pixels": {"string_value": "lots"}}}
    with pytest.raises(TritonModelException, match="parameter max_pixels must be a positive integer, got 'lots'"):
        load_model(monkeypatch, "digits_image_decode", config)


def test_each_request_gets_exactly_its_own_decoded_images_around_a_bad_one(model):
    image_decoding = load_helper("digits_image_decode", "image_decoding")
    requests = [[png(32), png(40)], [b"GIF89a"], [png(16)]]
    responses = model.execute([Request(image_bytes=strings(*items)) for items in requests])
    assert responses[1].error.code() == TritonError.INVALID_ARG
    for items, response in ((requests[0], responses[0]), (requests[2], responses[2])):
        alone = np.stack([image_decoding.decode_digit(item, 4096, 10000) for item in items])
        np.testing.assert_array_equal(response.output("image"), alone)


def test_tensor_names_come_from_the_config(monkeypatch):
    config = {**CONFIG, "input": [{"name": "png", "data_type": "TYPE_STRING", "dims": [1]}],
              "output": [{**CONFIG["output"][0], "name": "pixels"}]}
    (response,) = load_model(monkeypatch, "digits_image_decode", config).execute([Request(png=strings(png(16)))])
    assert response.output("pixels").shape == (1, 8, 8, 1)


def test_a_config_whose_input_is_not_a_string_fails_loading(monkeypatch):
    config = {**CONFIG, "input": [{"name": "png", "data_type": "TYPE_FP32", "dims": [1]}]}
    with pytest.raises(TritonModelException, match=r"digits_image_decode: needs exactly one TYPE_STRING input"):
        load_model(monkeypatch, "digits_image_decode", config)
