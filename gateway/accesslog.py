"""Request IDs and structured access logs, as the outermost layer of the gateway (a plain ASGI middleware).

Every response carries `X-Request-ID`: the client's own when it sent a well-formed one, else a new one. Every request
is logged as one JSON line: time, request ID, method, path, status, duration, bytes in and out, client address, the
model, the API key's id and the problem type. Never a payload, a query string or a key.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

import orjson

REQUEST_ID_HEADER = b"x-request-id"
_VALID_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,64}$")


def access_logger(path: Optional[Path]) -> logging.Logger:
    logger = logging.getLogger(f"modelport.gateway.access.{path or 'stderr'}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not logger.handlers:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path) if path is not None else logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    return logger


class RequestContext:
    """Sets scope["state"]["request_id"]; handlers put `model`, `version`, `key` and `problem` there for the log line.
    `on_done(state, status, seconds)` runs after each request (the request metrics)."""

    def __init__(self, app, logger: logging.Logger, on_done: Callable[[dict, int, float], None], hsts: bool = False):
        self.app = app
        self.logger = logger
        self.on_done = on_done
        # every response: no MIME sniffing of JSON into HTML; under TLS, browsers keep to HTTPS for a year
        self.security_headers = [(b"x-content-type-options", b"nosniff")] + (
            [(b"strict-transport-security", b"max-age=31536000")] if hsts else [])

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        incoming = headers.get(REQUEST_ID_HEADER, b"")
        request_id = incoming.decode() if _VALID_ID.match(incoming) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        sent = {"status": 500, "bytes": 0}

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), *self.security_headers,
                                                  (REQUEST_ID_HEADER, request_id.encode())]}
            elif message["type"] == "http.response.body":
                sent["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            length = headers.get(b"content-length", b"")
            client = scope.get("client")
            self.logger.info(orjson.dumps({
                "ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                "request_id": request_id, "method": scope["method"], "path": scope["path"],
                "status": sent["status"], "ms": round(seconds * 1000, 3),
                "bytes_in": int(length) if length.isdigit() else None,
                "bytes_out": sent["bytes"], "client": client[0] if client else None,
                "model": state.get("model"), "version": state.get("version"), "key": state.get("key"),
                "problem": state.get("problem"),
            }).decode())
            self.on_done(state, sent["status"], seconds)
