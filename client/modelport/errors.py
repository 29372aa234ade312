"""One small exception tree, split by who is at fault, each carrying the HTTP status and gRPC code it maps to.

`from_exception` turns whatever tritonclient, gevent, aiohttp or the socket layer raised into one of these, keeping
the server's own message so nothing it said is lost.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Optional


class ModelportError(Exception):
    """Base of every error the client raises; `server_message` is the server's text, untouched, when there is one."""

    http_status: Optional[int] = None
    grpc_code: Optional[str] = None

    def __init__(
        self,
        message: str,
        *,
        model: Optional[str] = None,
        server_message: Optional[str] = None,
        http_status: Optional[int] = None,
        grpc_code: Optional[str] = None,
    ):
        super().__init__(message)
        self.message = message
        self.model = model
        self.server_message = server_message
        if http_status is not None:
            self.http_status = http_status
        if grpc_code is not None:
            self.grpc_code = grpc_code


class ModelNotFound(ModelportError):
    """The server does not know the model (or that version of it)."""

    http_status = 404
    grpc_code = "NOT_FOUND"


class InvalidInput(ModelportError):
    """The request is wrong: tensor names, dtypes, shapes, batch size or content. Retrying cannot help."""

    http_status = 400
    grpc_code = "INVALID_ARGUMENT"


class AccessDenied(ModelportError):
    """A restricted API was called without the admin header (for example `models()` without `modelport-admin-key`)."""

    http_status = 403
    grpc_code = "PERMISSION_DENIED"


class ServerUnavailable(ModelportError):
    """The server could not be reached or said it cannot serve now (connection refused/reset, 503, gRPC UNAVAILABLE)."""

    http_status = 503
    grpc_code = "UNAVAILABLE"


class InferenceTimeout(ModelportError):
    """No answer within the call's timeout."""

    http_status = 504
    grpc_code = "DEADLINE_EXCEEDED"


class ServerError(ModelportError):
    """The server failed while handling a valid request (HTTP 5xx, gRPC INTERNAL/UNKNOWN), e.g. a crashed backend."""

    http_status = 500
    grpc_code = "INTERNAL"


_BY_HTTP_STATUS = {400: InvalidInput, 403: AccessDenied, 404: ModelNotFound, 408: InferenceTimeout,
                   429: ServerUnavailable, 502: ServerUnavailable, 503: ServerUnavailable, 504: InferenceTimeout}
_BY_GRPC_CODE = {
    "INVALID_ARGUMENT": InvalidInput,
    "OUT_OF_RANGE": InvalidInput,
    "FAILED_PRECONDITION": InvalidInput,
    "NOT_FOUND": ModelNotFound,
    "PERMISSION_DENIED": AccessDenied,
    "UNAUTHENTICATED": AccessDenied,
    "UNAVAILABLE": ServerUnavailable,
    "RESOURCE_EXHAUSTED": ServerUnavailable,
    "DEADLINE_EXCEEDED": InferenceTimeout,
}
# Triton answers a restricted gRPC protocol with UNAVAILABLE, which would otherwise read as "retry later".
_RESTRICTED_MARKERS = ("This API is restricted", "This protocol is restricted")


def _status_of(exc: BaseException) -> tuple[Optional[int], Optional[str]]:
    status = exc.status() if callable(getattr(exc, "status", None)) else None
    if status is None:
        return None, None
    status = str(status)
    if status.startswith("StatusCode."):
        return None, status[len("StatusCode."):]
    return (int(status), None) if status.isdigit() else (None, None)


def from_exception(exc: BaseException, *, model: Optional[str] = None, url: str = "",
                   timeout_s: Optional[float] = None) -> ModelportError:
    """Map an exception raised while talking to Triton to the matching ModelportError (the original is its cause)."""
    if isinstance(exc, ModelportError):
        return exc
    where = f" at {url}" if url else ""
    prefix = f"{model}: " if model else ""
    within = f"within {timeout_s:g}s" if timeout_s is not None else "within the timeout"
    # tritonclient.utils.InferenceServerException: message() is the server's text, status() the HTTP/gRPC status.
    if callable(getattr(exc, "message", None)) and callable(getattr(exc, "status", None)):
        server_text = exc.message() or str(exc)
        text = server_text
        http_status, grpc_code = _status_of(exc)
        if any(marker in text for marker in _RESTRICTED_MARKERS):
            cls: type[ModelportError] = AccessDenied
            text += "; pass the admin key: Client(..., headers={'modelport-admin-key': KEY})"
        elif http_status is not None:
            cls = _BY_HTTP_STATUS.get(http_status, ServerError if http_status >= 500 else InvalidInput)
        elif grpc_code is not None:
            cls = _BY_GRPC_CODE.get(grpc_code, ServerError)
        elif "failed to obtain inference response" in text:  # tritonclient.http's own client-side wait timeout
            cls = InferenceTimeout
            text = f"no answer {within} ({text})"
        else:
            cls = ServerError
        if cls is InferenceTimeout and timeout_s is not None and "no answer" not in text:
            text = f"no answer {within} ({text})"
        return cls(f"{prefix}{text}", model=model, server_message=server_text, http_status=http_status,
                   grpc_code=grpc_code)
    if isinstance(exc, (asyncio.TimeoutError, socket.timeout, TimeoutError)) or type(exc).__name__ == "Timeout":
        detail = str(exc) or type(exc).__name__
        return InferenceTimeout(f"{prefix}no answer from the server{where} {within} ({detail})", model=model)
    if isinstance(exc, (ConnectionError, OSError, EOFError)) or "ClientConnect" in type(exc).__name__ \
            or type(exc).__name__ in {"ServerDisconnectedError", "ClientOSError"}:
        return ServerUnavailable(
            f"{prefix}cannot reach the server{where}: {type(exc).__name__}: {exc}. Is it running? Check the url "
            f"and port.",
            model=model)
    return ModelportError(f"unexpected client failure: {type(exc).__name__}: {exc}", model=model)
