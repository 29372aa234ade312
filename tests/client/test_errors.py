import asyncio

import pytest
from tritonclient.utils import InferenceServerException

from modelport.errors import (AccessDenied, InferenceTimeout, InvalidInput, ModelNotFound, ModelportError,
                              ServerError, ServerUnavailable, from_exception)


@pytest.mark.parametrize("status, message, expected", [
    ("400", "unexpected shape for input 'image'", InvalidInput),
    ("404", "Request for unknown model: 'x' is not found", ModelNotFound),
    ("403", "This API is restricted, expecting header 'modelport-admin-key'", AccessDenied),
    ("503", "Server not ready", ServerUnavailable),
    ("429", "Too Many Requests", ServerUnavailable),
    ("502", "Bad Gateway", ServerUnavailable),
    ("StatusCode.RESOURCE_EXHAUSTED", "Exceeds maximum queue size", ServerUnavailable),
    ("500", "Stub process 'digits_0_0' is not healthy.", ServerError),
    ("504", "gateway timeout", InferenceTimeout),
    ("StatusCode.INVALID_ARGUMENT", "unexpected inference input 'x'", InvalidInput),
    ("StatusCode.NOT_FOUND", "Request for unknown model", ModelNotFound),
    ("StatusCode.UNAVAILABLE", "failed to connect to all addresses", ServerUnavailable),
    ("StatusCode.UNAVAILABLE", "This protocol is restricted, expecting header 'triton-grpc-protocol-k'", AccessDenied),
    ("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded", InferenceTimeout),
    ("StatusCode.INTERNAL", "Stub process 'digits_0_0' is not healthy.", ServerError),
    (None, "failed to obtain inference response", InferenceTimeout),
])
def test_server_errors_map_to_the_class_of_their_status_and_keep_the_server_message(status, message, expected):
    error = from_exception(InferenceServerException(msg=message, status=status), model="digits")
    assert type(error) is expected
    assert error.server_message == message and error.model == "digits" and str(error).startswith("digits: ")


def test_each_error_carries_its_http_status_and_grpc_code():
    http = from_exception(InferenceServerException(msg="bad", status="400"))
    grpc = from_exception(InferenceServerException(msg="bad", status="StatusCode.INVALID_ARGUMENT"))
    assert (http.http_status, http.grpc_code) == (400, "INVALID_ARGUMENT")
    assert (grpc.http_status, grpc.grpc_code) == (400, "INVALID_ARGUMENT")
    assert (ModelNotFound.http_status, ModelNotFound.grpc_code) == (404, "NOT_FOUND")


def test_a_refused_connection_means_the_server_is_unavailable_and_names_the_url():
    error = from_exception(ConnectionRefusedError(111, "Connection refused"), url="127.0.0.1:1")
    assert isinstance(error, ServerUnavailable) and "cannot reach the server at 127.0.0.1:1" in str(error)


def test_a_reset_connection_means_the_server_is_unavailable():
    assert isinstance(from_exception(ConnectionResetError(104, "reset")), ServerUnavailable)


@pytest.mark.parametrize("exc", [TimeoutError("timed out"), asyncio.TimeoutError()])
def test_client_side_timeouts_say_how_long_was_waited(exc):
    error = from_exception(exc, model="digits", timeout_s=0.5)
    assert isinstance(error, InferenceTimeout) and "no answer from the server within 0.5s" in str(error)


def test_restricted_api_errors_say_how_to_pass_the_admin_key():
    error = from_exception(InferenceServerException(msg="This API is restricted, expecting header 'k'", status="403"))
    assert "headers={'modelport-admin-key': KEY}" in str(error)
    assert error.server_message == "This API is restricted, expecting header 'k'"


def test_every_error_is_a_modelport_error():
    for cls in (ModelNotFound, InvalidInput, ServerUnavailable, InferenceTimeout, ServerError, AccessDenied):
        assert issubclass(cls, ModelportError)
    assert type(from_exception(RuntimeError("?"))) is ModelportError
