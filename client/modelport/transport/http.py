"""HTTP/REST adapters over tritonclient.http (gevent) and tritonclient.http.aio (aiohttp)."""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from typing import Optional, Sequence

from ..errors import from_exception
from . import InferRequest, TransportOptions, build_tensors, read_result


class HttpTransport:
    """Not thread-safe, like tritonclient.http underneath: use one Client per thread.

    tritonclient.http fixes its socket timeout per connection pool, and waiting on its greenlets with a timeout
    does not interrupt a read in progress, so a per-call timeout gets a pool of its own (a few are kept).
    """

    MAX_POOLS = 4

    def __init__(self, options: TransportOptions):
        import tritonclient.http as triton_http

        self._triton = triton_http
        self.options = options
        self._headers = dict(options.headers or {}) or None
        self._pools: dict = {}
        self._client = self._pool(options.timeout_s)

    def _pool(self, timeout_s: float):
        if timeout_s in self._pools:
            return self._pools[timeout_s]
        if len(self._pools) >= self.MAX_POOLS:
            oldest = next(t for t in self._pools if t != self.options.timeout_s)
            self._pools.pop(oldest).close()
        context = self.options.ssl if isinstance(self.options.ssl, ssl_module.SSLContext) else None
        try:
            client = self._triton.InferenceServerClient(
                self.options.url,
                concurrency=max(1, self.options.concurrency),
                connection_timeout=timeout_s,
                network_timeout=timeout_s,
                ssl=bool(self.options.ssl),
                ssl_context_factory=(lambda *_, **__: context) if context is not None else None,
            )
        except Exception as exc:  # a malformed url is reported here, not at the first call
            raise from_exception(exc, url=self.options.url) from exc
        self._pools[timeout_s] = client
        return client

    def _call(self, method, *args, model: Optional[str] = None, **kwargs):
        try:
            return getattr(self._client, method)(*args, headers=self._headers, **kwargs)
        except Exception as exc:
            raise from_exception(exc, model=model, url=self.options.url, timeout_s=self.options.timeout_s) from exc

    def is_live(self) -> bool:
        return self._call("is_server_live")

    def is_ready(self) -> bool:
        return self._call("is_server_ready")

    def is_model_ready(self, model: str, version: str) -> bool:
        return self._call("is_model_ready", model, version, model=model)

    def repository_index(self) -> list:
        return self._call("get_model_repository_index")

    def metadata(self, model: str, version: str) -> dict:
        return self._call("get_model_metadata", model, version, model=model)

    def config(self, model: str, version: str) -> dict:
        return self._call("get_model_config", model, version, model=model)

    def infer_many(self, requests: Sequence[InferRequest], timeout_s: float) -> list:
        """One outcome per request, in order; several requests go out at once over the pool's connections."""
        client = self._pool(timeout_s)
        if len(requests) == 1:
            return [self._infer_one(client, requests[0], timeout_s)]
        import gevent

        # The same greenlets tritonclient's async_infer would start, but each returns its outcome instead of
        # raising, so a failed chunk is not also printed by gevent's hub.
        greenlets = [gevent.spawn(self._infer_one, client, request, timeout_s) for request in requests]
        gevent.joinall(greenlets)
        return [g.value for g in greenlets]

    def _infer_one(self, client, request: InferRequest, timeout_s: float):
        try:
            inputs, outputs = build_tensors(self._triton, request, binary_data=True)
            result = client.infer(request.model, inputs, model_version=request.version, outputs=outputs,
                                  headers=self._headers)
            return read_result(result, request)
        except Exception as exc:
            return from_exception(exc, model=request.model, url=self.options.url, timeout_s=timeout_s)

    def close(self) -> None:
        for client in self._pools.values():
            client.close()
        self._pools.clear()


class AsyncHttpTransport:
    def __init__(self, options: TransportOptions):
        import tritonclient.http as triton_http
        import tritonclient.http.aio as triton_http_aio

        self._triton = triton_http
        self.options = options
        context = options.ssl if isinstance(options.ssl, ssl_module.SSLContext) else None
        self._client = triton_http_aio.InferenceServerClient(
            options.url, conn_timeout=options.timeout_s, ssl=bool(options.ssl), ssl_context=context)
        self._headers = dict(options.headers or {}) or None

    async def _call(self, method, *args, model: Optional[str] = None, **kwargs):
        try:
            return await asyncio.wait_for(getattr(self._client, method)(*args, headers=self._headers, **kwargs),
                                          self.options.timeout_s)
        except Exception as exc:
            raise from_exception(exc, model=model, url=self.options.url, timeout_s=self.options.timeout_s) from exc

    async def is_live(self) -> bool:
        return await self._call("is_server_live")

    async def is_ready(self) -> bool:
        return await self._call("is_server_ready")

    async def is_model_ready(self, model: str, version: str) -> bool:
        return await self._call("is_model_ready", model, version, model=model)

    async def repository_index(self) -> list:
        return await self._call("get_model_repository_index")

    async def metadata(self, model: str, version: str) -> dict:
        return await self._call("get_model_metadata", model, version, model=model)

    async def config(self, model: str, version: str) -> dict:
        return await self._call("get_model_config", model, version, model=model)

    async def _infer_one(self, request: InferRequest, timeout_s: float):
        try:
            inputs, outputs = build_tensors(self._triton, request, binary_data=True)
            result = await asyncio.wait_for(
                self._client.infer(request.model, inputs, model_version=request.version, outputs=outputs,
                                   headers=self._headers),
                timeout_s)
            return read_result(result, request)
        except Exception as exc:
            return from_exception(exc, model=request.model, url=self.options.url, timeout_s=timeout_s)

    async def infer_many(self, requests: Sequence[InferRequest], timeout_s: float) -> list:
        return list(await asyncio.gather(*(self._infer_one(r, timeout_s) for r in requests)))

    async def close(self) -> None:
        await self._client.close()
