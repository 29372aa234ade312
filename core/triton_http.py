"""The few HTTP calls the launcher makes to Triton (readiness, config, repository load), with the stdlib only."""
from __future__ import annotations

import json
import urllib.error
import urllib.request


def request(url: str, body: dict | None = None, headers: dict[str, str] | None = None, timeout: float = 2.0) -> tuple[int, bytes]:
    """Status and body; status 0 when nothing answered (connection refused, timeout)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{url}", data=data, headers=dict(headers or {}), method="GET" if data is None else "POST")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def ready(http_url: str, model: str | None = None, timeout: float = 2.0) -> bool:
    path = "/v2/health/ready" if model is None else f"/v2/models/{model}/ready"
    return request(http_url + path, timeout=timeout)[0] == 200
