"""gRPC adapters over tritonclient.grpc and tritonclient.grpc.aio; deadlines are per call (client_timeout)."""

from __future__ import annotations

import asyncio
import threading
from typing import Optional, Sequence

from ..errors import from_exception
from . import InferRequest, TransportOptions, build_tensors, read_result


def grpc_headers(headers) -> dict:
    """Triton checks a restricted gRPC protocol's header under the prefix `triton-grpc-protocol-`, so each header is
    sent under both names and the same `headers` work over HTTP and gRPC.
    See https://github.com/triton-inference-server/server/blob/main/docs/customization_guide/inference_protocols.md
    """
    metadata = {}
    for key, value in (headers or {}).items():
        key = key.lower()  # gRPC metadata keys must be lowercase
        metadata[key] = value
        if not key.startswith("triton-grpc-protocol-"):
            metadata["triton-grpc-protocol-" + key] = value
    return metadata


def _check_ssl(options: TransportOptions) -> None:
    if options.ssl not in (True, False):
        raise ValueError("over gRPC, ssl takes True or False (the system's root certificates); an SSLContext "
                         "is only understood by the HTTP protocol")


class GrpcTransport:
    """Thread-safe: gRPC channels may be shared between threads."""

    def __init__(self, options: TransportOptions):
        import tritonclient.grpc as triton_grpc

        _check_ssl(options)
        self._triton = triton_grpc
        self.options = options
        try:
            self._client = triton_grpc.InferenceServerClient(options.url, ssl=bool(options.ssl))
        except Exception as exc:
            raise from_exception(exc, url=options.url) from exc
        self._headers = grpc_headers(options.headers) or None

    def _call(self, method, *args, model: Optional[str] = None, **kwargs):
        try:
            return getattr(self._client, method)(*args, headers=self._headers, client_timeout=self.options.timeout_s,
                                                 **kwargs)
        except Exception as exc:
            raise from_exception(exc, model=model, url=self.options.url, timeout_s=self.options.timeout_s) from exc

    def is_live(self) -> bool:
        return self._call("is_server_live")

    def is_ready(self) -> bool:
        return self._call("is_server_ready")

    def is_model_ready(self, model: str, version: str) -> bool:
        return self._call("is_model_ready", model, version, model=model)

    def repository_index(self) -> list:
        return self._call("get_model_repository_index", as_json=True).get("models", [])

    def metadata(self, model: str, version: str) -> dict:
        return self._call("get_model_metadata", model, version, as_json=True, model=model)

    def config(self, model: str, version: str) -> dict:
        return self._call("get_model_config", model, version, as_json=True, model=model)

    def _infer_one(self, request: InferRequest, timeout_s: float):
        try:
            inputs, outputs = build_tensors(self._triton, request)
            result = self._client.infer(request.model, inputs, model_version=request.version, outputs=outputs,
                                        client_timeout=timeout_s, headers=self._headers)
            return read_result(result, request)
        except Exception as exc:
            return from_exception(exc, model=request.model, url=self.options.url, timeout_s=timeout_s)

    def infer_many(self, requests: Sequence[InferRequest], timeout_s: float) -> list:
        if len(requests) == 1:
            return [self._infer_one(requests[0], timeout_s)]
        outcomes: list = [None] * len(requests)
        remaining = [len(requests)]
        lock, done = threading.Lock(), threading.Event()

        def finish(index, outcome):
            outcomes[index] = outcome
            with lock:
                remaining[0] -= 1
                if remaining[0] == 0:
                    done.set()

        for index, request in enumerate(requests):
            def callback(result, error, index=index, request=request):
                if error is not None:
                    finish(index, from_exception(error, model=request.model, url=self.options.url, timeout_s=timeout_s))
                else:
                    try:
                        finish(index, read_result(result, request))
                    except Exception as exc:
                        finish(index, from_exception(exc, model=request.model, url=self.options.url,
                                                     timeout_s=timeout_s))
            try:
                inputs, outputs = build_tensors(self._triton, request)
                self._client.async_infer(request.model, inputs, callback, model_version=request.version,
                                         outputs=outputs, client_timeout=timeout_s, headers=self._headers)
            except Exception as exc:
                finish(index, from_exception(exc, model=request.model, url=self.options.url, timeout_s=timeout_s))
        done.wait()  # every callback runs: gRPC ends each call with a result, an error or DEADLINE_EXCEEDED
        return outcomes

    def close(self) -> None:
        self._client.close()


class AsyncGrpcTransport:
    def __init__(self, options: TransportOptions):
        import tritonclient.grpc as triton_grpc
        import tritonclient.grpc.aio as triton_grpc_aio

        _check_ssl(options)
        self._triton = triton_grpc
        self.options = options
        self._client = triton_grpc_aio.InferenceServerClient(options.url, ssl=bool(options.ssl))
        self._headers = grpc_headers(options.headers) or None

    async def _call(self, method, *args, model: Optional[str] = None, **kwargs):
        try:
            return await getattr(self._client, method)(*args, headers=self._headers,
                                                       client_timeout=self.options.timeout_s, **kwargs)
        except Exception as exc:
            raise from_exception(exc, model=model, url=self.options.url, timeout_s=self.options.timeout_s) from exc

    async def is_live(self) -> bool:
        return await self._call("is_server_live")

    async def is_ready(self) -> bool:
        return await self._call("is_server_ready")

    async def is_model_ready(self, model: str, version: str) -> bool:
        return await self._call("is_model_ready", model, version, model=model)

    async def repository_index(self) -> list:
        return (await self._call("get_model_repository_index", as_json=True)).get("models", [])

    async def metadata(self, model: str, version: str) -> dict:
        return await self._call("get_model_metadata", model, version, as_json=True, model=model)

    async def config(self, model: str, version: str) -> dict:
        return await self._call("get_model_config", model, version, as_json=True, model=model)

    async def _infer_one(self, request: InferRequest, timeout_s: float):
        try:
            inputs, outputs = build_tensors(self._triton, request)
            result = await self._client.infer(request.model, inputs, model_version=request.version, outputs=outputs,
                                              client_timeout=timeout_s, headers=self._headers)
            return read_result(result, request)
        except Exception as exc:
            return from_exception(exc, model=request.model, url=self.options.url, timeout_s=timeout_s)

    async def infer_many(self, requests: Sequence[InferRequest], timeout_s: float) -> list:
        return list(await asyncio.gather(*(self._infer_one(r, timeout_s) for r in requests)))

    async def close(self) -> None:
        await self._client.close()
