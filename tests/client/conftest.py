"""Clients of every flavour for the integration tests: HTTP and gRPC, sync and asyncio."""

from __future__ import annotations

import asyncio
import inspect

import pytest

import modelport

VARIANTS = [("http", "sync"), ("http", "async"), ("grpc", "sync"), ("grpc", "async")]


class Blocking:
    """Drives an AsyncClient from a synchronous test through one private event loop, so one test body checks both."""

    def __init__(self, client: modelport.AsyncClient):
        self._client = client
        self._loop = asyncio.new_event_loop()

    def __getattr__(self, name):
        attribute = getattr(self._client, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute
        return lambda *args, **kwargs: self._loop.run_until_complete(attribute(*args, **kwargs))

    def close(self):
        self._loop.run_until_complete(self._client.close())
        self._loop.close()


@pytest.fixture(params=VARIANTS, ids=[f"{p}-{m}" for p, m in VARIANTS])
def connect(request, triton):
    """connect(**client_options) -> a client of this test's variant (closed at teardown); .variant says which."""
    protocol, mode = request.param
    opened = []

    def open_client(url=None, **options):
        url = url or (triton.http_url if protocol == "http" else triton.grpc_url)
        if mode == "sync":
            client = modelport.Client(url, protocol=protocol, **options)
        else:
            client = Blocking(modelport.AsyncClient(url, protocol=protocol, **options))
        opened.append(client)
        return client

    open_client.variant = (protocol, mode)
    yield open_client
    for client in opened:
        client.close()


@pytest.fixture
def client(connect):
    return connect()
