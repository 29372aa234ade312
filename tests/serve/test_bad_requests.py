"""Bad requests get a 4xx / INVALID_ARGUMENT of their own, and the server keeps answering good ones."""
from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.integration

GOOD_IMAGE = np.zeros((1, 8, 8, 1), dtype=np.float32)


def request(triton, protocol, model, name, array, datatype):
    module = httpclient if protocol == "http" else grpcclient
    client = module.InferenceServerClient(triton.http_url if protocol == "http" else triton.grpc_url)
    tensor = module.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return client.infer(model, [tensor])


def assert_client_error(protocol, error: InferenceServerException) -> None:
    status = str(error.status())
    if protocol == "http":
        assert status.startswith("4"), f"expected a 4xx, got {status}: {error.message()}"
    else:
        assert status in ("StatusCode.INVALID_ARGUMENT", "StatusCode.NOT_FOUND"), f"got {status}: {error.message()}"


BAD_REQUESTS = {
    "wrong dtype": ("digits", "image", np.zeros((1, 8, 8, 1), dtype=np.int32), "INT32"),
    "wrong shape": ("digits", "image", np.zeros((1, 8, 8), dtype=np.float32), "FP32"),
    "oversize batch": ("digits", "image", np.zeros((33, 8, 8, 1), dtype=np.float32), "FP32"),
    "unknown model": ("no_such_model", "image", GOOD_IMAGE, "FP32"),
    "invalid UTF-8": ("sentiment", "text", np.array([[b"\xff\xfe not text \xc3"]], dtype=object), "BYTES"),
    "empty text": ("sentiment", "text", np.array([[b""]], dtype=object), "BYTES"),
    "corrupt image": ("digits_image", "image_bytes", np.array([[b"\x89PNG\r\n\x1a\n truncated"]], dtype=object), "BYTES"),
    "zero-byte image": ("digits_image", "image_bytes", np.array([[b""]], dtype=object), "BYTES"),
}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_is_refused_and_the_next_good_request_succeeds(triton, case, protocol):
    model, name, array, datatype = BAD_REQUESTS[case]
    with pytest.raises(InferenceServerException) as refused:
        request(triton, protocol, model, name, array, datatype)
    assert_client_error(protocol, refused.value)
    result = request(triton, protocol, "digits", "image", GOOD_IMAGE, "FP32")
    assert result.as_numpy("probabilities").shape == (1, 10)


def test_unparsable_json_gets_an_error_and_the_server_keeps_answering(triton):
    import requests

    response = requests.post(f"http://{triton.http_url}/v2/models/digits/infer", data=b'{"inputs": [', timeout=5)
    # Triton 2.51's HTTP front end answers 500 (not 400) to a JSON syntax error; the message says what is wrong.
    assert response.status_code in (400, 500) and "JSON" in response.json()["error"], response.text
    assert request(triton, "http", "digits", "image", GOOD_IMAGE, "FP32").as_numpy("probabilities").shape == (1, 10)
