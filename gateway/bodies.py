"""Reading a request body within the limits, and parsing JSON in one linear pass with a bound on its nesting.

The order matters: the declared length is checked before a byte is read, the body is read against a size cap and a
deadline, then parsed by orjson, whose single pass over the bytes checks UTF-8 and refuses nesting past 1024 levels;
the parsed document is then walked once, breadth first, to hold it to `max_json_depth`. No check here backtracks, so
the cost of a body is linear in its size whatever it contains (a body that would crash Triton 2.51's JSON parser,
about 200,000 levels deep, costs one pass to refuse).
"""

from __future__ import annotations

import asyncio

import orjson
from starlette.requests import ClientDisconnect, Request

from gateway.options import Limits
from gateway.problems import BodyTimeout, BodyTooLarge, MalformedBody

PARSE_INLINE_BYTES = 64 * 1024  # larger bodies are parsed off the event loop (about 1 ms a 64 KB)
ORJSON_MAX_DEPTH = 1024  # orjson refuses deeper documents while parsing ("depth limit exceeded")


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


def json_depth(document: object, limit: int) -> int:
    """The nesting of arrays and objects, counted level by level; stops at the first level past `limit` (so the
    answer is at most limit + 1) and visits each value at most once."""
    level, depth = [document], 0
    while level and depth <= limit:
        containers = [v for v in level if isinstance(v, (list, dict))]
        if not containers:
            break
        depth += 1
        level = [child for c in containers for child in (c.values() if isinstance(c, dict) else c)]
    return depth


def value_bound(body: bytes) -> int:
    """An upper bound on the JSON values in a body, keys included, at the speed of memchr: every value but the first
    follows a comma or opens its container. Brackets and commas inside strings count too, so it can only be high."""
    return body.count(b",") + body.count(b"[") + body.count(b"{") + 1


def parse_json(body: bytes, limits: Limits, max_values: int | None = None) -> object:
    """One pass: UTF-8, syntax and nesting together; every failure a 400 that says where. Parsing allocates an
    object per value, so a body of a million tiny values (`[[],[],...]`) is refused on `max_values` first."""
    if max_values is not None and (bound := value_bound(body)) > max_values:
        raise MalformedBody(f"the body has {bound} commas and brackets, more JSON values than any request this model "
                            f"takes (at most {max_values})", fix="send fewer or smaller items; a text full of commas "
                            'or brackets can go as {"b64": "..."}')
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise _malformed(body, error) from None
    depth = json_depth(document, limits.max_json_depth)
    if depth > limits.max_json_depth:
        raise MalformedBody(f"the JSON is nested more than {limits.max_json_depth} levels deep; this gateway accepts "
                            f"at most {limits.max_json_depth}",
                            fix="send each input item as a flat nested list of its dims")
    return document


def _malformed(body: bytes, error: orjson.JSONDecodeError) -> MalformedBody:
    if error.msg.startswith("str is not valid UTF-8"):
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as bad:  # the byte and the reason, which orjson does not give
            return MalformedBody(f"the body is not UTF-8: byte {bad.start} is {body[bad.start:bad.start + 1]!r} "
                                 f"({bad.reason})", fix="send JSON encoded as UTF-8 (RFC 8259)")
    if error.msg == "depth limit exceeded":
        return MalformedBody(f"the JSON is nested more than {ORJSON_MAX_DEPTH} levels deep (line {error.lineno}, "
                             f"column {error.colno})", fix="send each input item as a flat nested list of its dims")
    return MalformedBody(f"the body is not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})",
                         fix='send a JSON object such as {"inputs": [...]}; NaN, Infinity and lone surrogates '
                             '(\\ud800) are not JSON')
