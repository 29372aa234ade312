"""The seam between modelport and tritonclient: one small adapter per protocol, sync and asyncio.

Every adapter speaks in plain values (dicts from the server, numpy arrays, `InferRequest`) and raises or returns
`ModelportError`s only, so everything above this package is protocol-free and can be tested with a fake transport.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

import numpy as np

PROTOCOLS = ("http", "grpc")


@dataclass(frozen=True)
class TransportOptions:
    url: str
    protocol: str = "http"
    timeout_s: float = 60.0
    headers: Optional[Mapping[str, str]] = None
    ssl: Any = False  # bool, or an ssl.SSLContext for HTTP
    concurrency: int = 4  # connections used to send chunks of one large batch at once (sync HTTP)

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if "://" in self.url:
            raise ValueError(f"url takes host:port without a scheme, got {self.url!r}; e.g. '127.0.0.1:8000' "
                             f"(use ssl=True for https)")
        if not self.timeout_s or self.timeout_s <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {self.timeout_s!r}")


@dataclass(frozen=True)
class InferRequest:
    model: str
    version: str
    inputs: Mapping[str, np.ndarray]
    datatypes: Mapping[str, str]
    outputs: tuple[str, ...]
    class_count: Optional[int] = None


InferOutcome = Union[dict, "ModelportError"]  # noqa: F821 - one result per request, errors as values


def build_tensors(module, request: InferRequest, **input_kwargs):
    """Make tritonclient InferInput / InferRequestedOutput objects; `module` is tritonclient.http or .grpc."""
    inputs = []
    for name, array in request.inputs.items():
        tensor = module.InferInput(name, list(array.shape), request.datatypes[name])
        tensor.set_data_from_numpy(np.ascontiguousarray(array) if array.dtype != np.object_ else array,
                                   **input_kwargs)
        inputs.append(tensor)
    outputs = [module.InferRequestedOutput(name, class_count=request.class_count or 0) for name in request.outputs]
    return inputs, outputs


def read_result(result, request: InferRequest) -> dict:
    return {name: result.as_numpy(name) for name in request.outputs}


def make_transport(options: TransportOptions):
    if options.protocol == "grpc":
        from .grpc import GrpcTransport

        return GrpcTransport(options)
    from .http import HttpTransport

    return HttpTransport(options)


def make_async_transport(options: TransportOptions):
    if options.protocol == "grpc":
        from .grpc import AsyncGrpcTransport

        return AsyncGrpcTransport(options)
    from .http import AsyncHttpTransport

    return AsyncHttpTransport(options)
