"""The same scenarios through the gateway (gateway/): its label-aware JSON API instead of KServe v2.

Each sample of core/measure/payloads.py becomes one `POST /v1/models/<model>:predict` body: tensors as nested lists by
input name, strings as JSON strings when they are UTF-8 and as {"b64": ...} otherwise (encoded images). A response
must carry one prediction per item. The Locust user is in loadtest/gateway_locustfile.py; this module imports no
Locust, so tests and the benchmark build the same bodies.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from functools import lru_cache

from core.measure import payloads

@dataclass(frozen=True)
class GatewayRequest:
    name: str  # the statistics row: the Triton model name
    path: str
    body: bytes
    items: int


def _json_value(item):
    if isinstance(item, bytes):
        try:
            return item.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(item).decode("ascii")}
    return item


def gateway_request(sample: payloads.Sample) -> GatewayRequest:
    inputs = {}
    for tensor in sample.inputs:
        if tensor.datatype == "BYTES":
            inputs[tensor.name] = [_json_value(row.reshape(-1)[0]) for row in tensor.array]
        else:
            inputs[tensor.name] = tensor.array.tolist()
    body = json.dumps({"inputs": inputs}).encode("utf-8")
    return GatewayRequest(sample.model, f"/v1/models/{sample.model}:predict", body, sample.rows)


@lru_cache(maxsize=None)
def gateway_requests(target: payloads.Target) -> tuple[GatewayRequest, ...]:
    return tuple(gateway_request(s) for s in payloads.samples(target))


def response_error(status: int, body: bytes | None, request: GatewayRequest) -> str | None:
    """None for a 200 with one prediction per item; else what was wrong, with the problem's detail."""
    text = (body or b"").decode("utf-8", "replace")
    try:
        document = json.loads(text)
    except ValueError:
        return f"HTTP {status} from {request.path}: not JSON: {text[:200]}"
    if status != 200:
        return f"HTTP {status} from {request.path}: {document.get('title')}: {document.get('detail')}"
    predictions = document.get("predictions")
    if not isinstance(predictions, list) or len(predictions) != request.items:
        return f"{request.path}: expected {request.items} predictions, got {predictions!r:.200}"
    return None
