"""Triton behind the gateway, over gRPC with `modelport.AsyncClient`; its errors become the gateway's problems."""

from __future__ import annotations

import logging
import re
from typing import Mapping, Optional

import numpy as np

import modelport
from gateway.problems import InvalidInput, Problem, UpstreamError, UpstreamTimeout, UpstreamUnavailable


_log = logging.getLogger("modelport.gateway")
# Triton's framing around a model's own message: ensemble and instance names, gRPC status names
_FRAMING = re.compile(r"^(?:\s*(?:in ensemble '[^']*',|\[StatusCode\.[A-Z_]+\]|Failed to process the request\(s\) for "
                      r"model instance '[^']*', message:|[A-Za-z_.]*(?:Error|Exception|Rejected):)\s*)+")
MAX_REASON_CHARS = 300


def model_reason(text: str) -> str:
    """The model's own words for refusing an input (its INVALID_ARG message, written for callers), without Triton's
    framing, on one line and short."""
    reason = _FRAMING.sub("", text.strip().splitlines()[0] if text.strip() else "")
    return reason[:MAX_REASON_CHARS] or "no reason given"


def problem_of(error: modelport.ModelportError, model: str) -> Problem:
    """A failure Triton (or the client, before sending) reported, as the gateway's answer, in the gateway's words:
    Triton's own text (instance and ensemble names, stub and backend states) goes to the gateway's log, not to the
    client; a model refusing an input keeps its own reason, which the model writes for callers."""
    _log.warning("Triton failed on %s: %s: %s", model, type(error).__name__, error.server_message or error.message)
    if isinstance(error, modelport.InvalidInput):
        # content the gateway cannot check (a corrupt image, invalid UTF-8 in bytes): the model refused it
        return InvalidInput(f"{model}: the model refused an input: {model_reason(error.server_message or '')}",
                            field="/inputs",
                            fix="send content the model can read (GET /v1/models/" + model + " says what)")
    if isinstance(error, modelport.ModelNotFound):
        return UpstreamUnavailable(f"{model}: the inference server does not serve it now", retry_after_s=5)
    if isinstance(error, modelport.ServerUnavailable):
        return UpstreamUnavailable(f"{model}: the inference server is unavailable")
    if isinstance(error, modelport.InferenceTimeout):
        return UpstreamTimeout(f"{model}: the inference server did not answer in time")
    return UpstreamError(f"{model}: the inference server failed on this request (the gateway's log says why)")


class TritonBackend:
    def __init__(self, url: str, timeout_s: float):
        self.url = url
        # One retry: a crashed python stub is reloaded by `serve` within ~2 s; more retries would only add latency
        # under overload, where the gateway sheds instead.
        self.client = modelport.AsyncClient(url, protocol="grpc", timeout=timeout_s, retries=1)
        self.ready = False
        # model -> the version that answers a request naming none: the newest Triton lists as ready
        self.versions: dict[str, str] = {}

    async def wait_ready(self, models: tuple[str, ...], timeout_s: float) -> tuple[str, ...]:
        """Wait until Triton is ready, cache the metadata of every model it serves; the models it does not (failed
        to load, not in its repository) are returned, and their endpoints answer 503 until it does."""
        await self.client.wait_until_ready(timeout_s)
        missing = []
        for model in models:
            try:
                metadata = await self.client.metadata(model)
            except modelport.ModelportError:
                missing.append(model)
                continue
            if metadata.versions:
                self.versions[model] = max(metadata.versions, key=lambda v: int(v) if v.isdigit() else -1)
        self.ready = True
        return tuple(missing)

    async def is_ready(self) -> bool:
        return self.ready and await self.client.is_ready()

    async def predict(self, model: str, arrays: Mapping[str, np.ndarray], top: Optional[int],
                      version: Optional[str] = None):
        """`version` None: the version Triton's policy picks (the newest it serves)."""
        try:
            return await self.client.predict(model, dict(arrays), top=top, version=version)
        except modelport.ModelportError as error:
            raise problem_of(error, model) from None

    async def close(self) -> None:
        await self.client.close()
