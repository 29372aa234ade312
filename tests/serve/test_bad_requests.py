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


# Triton validates every request against the model config before any backend sees it (so the onnxruntime backend
# and the python models do not check again, issue 9): these are Triton's own 400s, not our backends' wording.
TRITON_CHECKS = {
    "wrong dtype": ("digits", "image", np.zeros((1, 8, 8, 1), np.int32), "INT32",
                    "inference input 'image' data-type is 'INT32', but model 'digits' expects 'FP32'"),
    "wrong shape": ("sentiment_classifier", "input_ids", np.zeros((1, 63), np.int64), "INT64",
                    "unexpected shape for input 'input_ids' for model 'sentiment_classifier'. Expected [-1,64], "
                    "got [1,63]"),
    "unknown input": ("digits", "pixels", GOOD_IMAGE, "FP32", "unexpected inference input 'pixels' for model 'digits'"),
    "tokenizer, wrong dtype": ("sentiment_tokenizer", "text", np.zeros((1, 1), np.float32), "FP32",
                               "inference input 'text' data-type is 'FP32', but model 'sentiment_tokenizer' "
                               "expects 'BYTES'"),
    "image decoder, wrong shape": ("digits_image_decode", "image_bytes", np.array([[b"a", b"b"]], dtype=object),
                                   "BYTES", "unexpected shape for input 'image_bytes' for model "
                                            "'digits_image_decode'. Expected [-1,1], got [1,2]"),
}


@pytest.mark.parametrize("case", sorted(TRITON_CHECKS))
def test_triton_itself_refuses_a_request_that_does_not_match_the_config(triton, case):
    model, name, array, datatype, message = TRITON_CHECKS[case]
    with pytest.raises(InferenceServerException) as refused:
        request(triton, "http", model, name, array, datatype)
    assert refused.value.status() == "400" and message in refused.value.message(), refused.value.message()


def test_a_request_with_an_extra_input_is_refused_by_triton(triton):
    client = httpclient.InferenceServerClient(triton.http_url)
    inputs = [httpclient.InferInput("image", [1, 8, 8, 1], "FP32"), httpclient.InferInput("extra", [1, 1], "FP32")]
    inputs[0].set_data_from_numpy(GOOD_IMAGE)
    inputs[1].set_data_from_numpy(np.zeros((1, 1), np.float32))
    with pytest.raises(InferenceServerException) as refused:
        client.infer("digits", inputs)
    assert refused.value.status() == "400" and "expected 1 inputs but got 2 inputs" in refused.value.message()
