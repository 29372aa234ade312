"""The gateway's errors: one small tree, split by who is at fault, each answered as problem details (RFC 9457).

Every answer that is not a success is `application/problem+json` with `type`, `title`, `status`, `detail`,
`instance` (the request path) and `request_id`, plus `field` (a JSON Pointer into the request, RFC 6901) and `fix`
where one applies. `type` is `/problems/<slug>`, which the gateway serves as a short description.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """Base: a request the gateway answers with an error status."""

    status = 500
    slug = "internal"
    title = "Internal error"

    def __init__(self, detail: str, *, field: Optional[str] = None, fix: Optional[str] = None,
                 headers: Optional[Mapping[str, str]] = None):
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.fix = fix
        self.headers = dict(headers or {})

    @property
    def type(self) -> str:
        return f"/problems/{self.slug}"

    def body(self, instance: str, request_id: str) -> dict:
        body = {"type": self.type, "title": self.title, "status": self.status, "detail": self.detail,
                "instance": instance, "request_id": request_id}
        if self.field is not None:
            body["field"] = self.field
        if self.fix:
            body["fix"] = self.fix
        return body


# ---- the caller's fault (4xx): retrying the same request cannot help ---------------------------------------------

class ClientProblem(Problem):
    status = 400


class Unauthorized(ClientProblem):
    """No API key or token, a key the gateway does not know, or a token it cannot accept (bad signature, wrong
    issuer or audience, expired, not yet valid)."""

    status = 401
    slug = "unauthorized"
    title = "Missing or unknown API key"

    def __init__(self, detail: str, error: str = "invalid_token", **kwargs):
        kwargs.setdefault("fix", "send `Authorization: Bearer <key>` with a key from the gateway's keys file "
                                 "(`python -m gateway keys add`) or $MODELPORT_API_KEY, or a token from the "
                                 "configured issuer")
        super().__init__(detail, headers={"WWW-Authenticate": f'Bearer realm="modelport", error="{error}"'},
                         **kwargs)


class Forbidden(ClientProblem):
    """The key is valid but not scoped for this model."""

    status = 403
    slug = "forbidden"
    title = "API key not allowed for this model"


class NotFound(ClientProblem):
    """No such model or route."""

    status = 404
    slug = "not-found"
    title = "Not found"


class MethodNotAllowed(ClientProblem):
    """The route exists, but not for this method."""

    status = 405
    slug = "method-not-allowed"
    title = "Method not allowed"


class BodyTimeout(ClientProblem):
    """The request's headers or body did not arrive in time (a slow client, or a Content-Length larger than the
    body sent)."""

    status = 408
    slug = "request-timeout"
    title = "Request not received in time"


class BodyTooLarge(ClientProblem):
    """The body is larger than the gateway accepts; checked on Content-Length before reading, and while reading."""

    status = 413
    slug = "body-too-large"
    title = "Request body too large"


class UriTooLong(ClientProblem):
    """The request line is longer than the gateway reads (--max-request-line-bytes)."""

    status = 414
    slug = "uri-too-long"
    title = "Request target too long"


class HeadersTooLarge(ClientProblem):
    """The headers together are larger than the gateway reads (--max-header-bytes)."""

    status = 431
    slug = "headers-too-large"
    title = "Request headers too large"


class UnsupportedMediaType(ClientProblem):
    """The body's Content-Type is not one this route takes (JSON; multipart for models of one string input)."""

    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported Content-Type"


class MalformedBody(ClientProblem):
    """The body is not what its Content-Type says: not UTF-8, not JSON, nested too deep, or a broken multipart."""

    status = 400
    slug = "malformed-body"
    title = "Malformed request body"


class InvalidInput(ClientProblem):
    """Well-formed, but not what the model takes: a wrong field, type, shape or batch size, or content the model
    refused (a corrupt image)."""

    status = 422
    slug = "invalid-input"
    title = "Invalid input for this model"


class RateLimited(ClientProblem):
    """The key's token bucket is empty; `Retry-After` says when the next request is allowed."""

    status = 429
    slug = "rate-limited"
    title = "Too many requests"

    def __init__(self, detail: str, retry_after_s: float, **kwargs):
        super().__init__(detail, headers={"Retry-After": str(max(1, math.ceil(retry_after_s)))}, **kwargs)


# ---- capacity: come back later ------------------------------------------------------------------------------------

class TooManyConnections(Problem):
    """The gateway holds as many connections as it allows, in total or from this client; the new one is closed."""

    status = 503
    slug = "too-many-connections"
    title = "Too many connections"


class Overloaded(Problem):
    """The model has as many requests in flight and waiting as the gateway allows (load shedding)."""

    status = 503
    slug = "overloaded"
    title = "Model overloaded"

    def __init__(self, detail: str, retry_after_s: int, **kwargs):
        super().__init__(detail, fix=f"retry after {retry_after_s} s (Retry-After), or send less at once",
                         headers={"Retry-After": str(retry_after_s)}, **kwargs)


# ---- Triton's side ------------------------------------------------------------------------------------------------

class UpstreamUnavailable(Problem):
    """Triton cannot be reached or is not ready."""

    status = 503
    slug = "upstream-unavailable"
    title = "Inference server unavailable"

    def __init__(self, detail: str, retry_after_s: int = 1, **kwargs):
        super().__init__(detail, headers={"Retry-After": str(retry_after_s)}, **kwargs)


class UpstreamTimeout(Problem):
    """Triton did not answer within the gateway's timeout."""

    status = 504
    slug = "upstream-timeout"
    title = "Inference server did not answer in time"


class UpstreamError(Problem):
    """Triton failed on a request the gateway had checked (a crashed backend, an internal error)."""

    status = 502
    slug = "upstream-error"
    title = "Inference server error"


class Internal(Problem):
    """A bug in the gateway; the request ID finds it in the access log."""


def catalogue() -> dict[str, type[Problem]]:
    """Every problem type by slug, for GET /problems/<slug>."""
    found, todo = {"internal": Internal}, list(Problem.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if "slug" in vars(cls):
            found[cls.slug] = cls
    return found


def describe(cls: type[Problem]) -> dict:
    return {"type": f"/problems/{cls.slug}", "title": cls.title, "status": cls.status,
            "description": " ".join((cls.__doc__ or cls.title).split())}
