"""Reading a request body within the limits, and checking JSON before it is parsed.

The order matters: the declared length is checked before a byte is read, the body is read against a size cap and a
deadline, then decoded as UTF-8, then scanned for nesting depth, and only then handed to `json.loads`. A body that
would crash Triton 2.51's JSON parser (about 200,000 levels of nesting) never gets past the scan.
"""

from __future__ import annotations

import asyncio
import json
import re

import numpy as np
from starlette.requests import ClientDisconnect, Request

from gateway.options import Limits
from gateway.problems import BodyTimeout, BodyTooLarge, MalformedBody

# A JSON string, written so that the regex engine does not backtrack per character ("unrolled loop").
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_OPEN = np.frombuffer(b"[{", dtype=np.uint8)


async def read(request: Request, limits: Limits) -> bytes:
    """The whole body, or a problem: 413 over `max_body_bytes` (declared or sent), 408 past `body_timeout_s`."""
    declared = request.headers.get("content-length")
    if declared is not None and not declared.isdigit():  # the HTTP parser refuses most of these itself
        raise MalformedBody(f"Content-Length is {declared!r}, not a number of bytes",
                            fix="send Content-Length as the body's size in bytes", headers={"Connection": "close"})
    if declared is not None and int(declared) > limits.max_body_bytes:
        raise BodyTooLarge(f"Content-Length is {int(declared)} bytes; this gateway accepts at most "
                           f"{limits.max_body_bytes}", fix="send a smaller body: fewer items per request",
                           headers={"Connection": "close"})
    chunks, size = [], 0
    try:
        async with asyncio.timeout(limits.body_timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limits.max_body_bytes:
                    raise BodyTooLarge(f"the body is larger than {limits.max_body_bytes} bytes, the most this "
                                       f"gateway accepts", fix="send fewer items per request",
                                       headers={"Connection": "close"})
                chunks.append(chunk)
    except TimeoutError:
        got = f"{size} of {declared} declared bytes" if declared is not None else f"{size} bytes"
        raise BodyTimeout(f"the body did not arrive within {limits.body_timeout_s:g} s ({got} received)",
                          fix="send the whole body at once, with a Content-Length equal to its size",
                          headers={"Connection": "close"}) from None
    except ClientDisconnect:
        raise BodyTimeout("the client closed the connection before the body was complete",
                          headers={"Connection": "close"}) from None
    return b"".join(chunks)


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects, without parsing: brackets inside strings do not count."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if not brackets:
        return 0
    codes = np.frombuffer(brackets.encode("ascii"), dtype=np.uint8)
    return int(np.cumsum(np.where(np.isin(codes, _OPEN), 1, -1)).max())


def _no_constants(name: str):
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes, limits: Limits) -> object:
    """UTF-8 first, depth second, then the parse; every failure a 400 that says where."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise MalformedBody(f"the body is not UTF-8: byte {error.start} is {body[error.start:error.start + 1]!r} "
                            f"({error.reason})", fix="send JSON encoded as UTF-8 (RFC 8259)") from None
    depth = json_depth(text)
    if depth > limits.max_json_depth:
        raise MalformedBody(f"the JSON is nested {depth} levels deep; this gateway accepts at most "
                            f"{limits.max_json_depth}", fix="send each input item as a flat nested list of its dims")
    try:
        return json.loads(text, parse_constant=_no_constants)
    except ValueError as error:
        where = f" (line {error.lineno}, column {error.colno})" if isinstance(error, json.JSONDecodeError) else ""
        reason = error.msg if isinstance(error, json.JSONDecodeError) else str(error)
        raise MalformedBody(f"the body is not valid JSON: {reason}{where}",
                            fix='send a JSON object such as {"inputs": [...]}') from None
