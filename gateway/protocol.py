"""uvicorn's httptools protocol with the edge's limits: a deadline and a size cap for the request line and headers,
and a cap on connections, in total and per client address.

uvicorn times out idle keep-alive connections but not a request whose headers trickle in (slowloris), nor a fresh
connection that never sends a byte; each would hold a connection forever. Here the headers must be complete within
`header_timeout_s` of the first byte, and a new connection must send one within that time; otherwise the gateway
answers 408 and closes. httptools buffers a request line and headers of any size: the protocol counts them as they
are parsed and answers 414 past `max_request_line_bytes` and 431 past `max_header_bytes`, before the rest arrives.
What httptools cannot parse gets a problem-details 400 instead of plain text. The body's deadline is the app's
(gateway/bodies.py), where the problem can be explained.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.options import Limits
from gateway.problems import (PROBLEM_JSON, BodyTimeout, HeadersTooLarge, MalformedBody, Problem, TooManyConnections,
                              UriTooLong)


def raw_response(status_line: bytes, problem: Problem) -> bytes:
    """A problem written straight to the socket, for requests the app never sees."""
    body = json.dumps(problem.body("", "")).encode()
    return (b"HTTP/1.1 " + status_line + b"\r\ncontent-type: " + PROBLEM_JSON.encode() + b"\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\nx-content-type-options: nosniff\r\nconnection: close\r\n\r\n" + body)


class _Refused(Exception):
    """Raised inside an httptools callback to stop parsing; uvicorn then calls send_400_response."""


def with_limits(limits: Limits) -> type[HttpToolsProtocol]:
    header_timeout_s = limits.header_timeout_s
    per_client: Counter[str] = Counter()  # open connections by client address, in this process

    class EdgeProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None
        _refusal: bytes | None = None
        _peer: str | None = None
        _url_bytes = 0
        _header_bytes = 0
        _in_head = True  # between a request's first byte and the end of its headers
        _head_bytes = 0  # bytes received in that span: httptools holds a header's value whole until its end
        _completed = False  # a request ended within the chunk being parsed

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            peer = transport.get_extra_info("peername")
            self._peer = peer[0] if isinstance(peer, tuple) else None
            per_client[self._peer] += 1
            if len(self.connections) > limits.max_connections:
                return self._refuse_connection(TooManyConnections(
                    f"the gateway holds {limits.max_connections} connections, the most it allows (--max-connections)",
                    fix="retry shortly, or reuse a kept-alive connection instead of opening new ones"))
            if per_client[self._peer] > limits.max_connections_per_client:
                return self._refuse_connection(TooManyConnections(
                    f"{self._peer} holds {limits.max_connections_per_client} connections, the most one client may "
                    f"(--max-connections-per-client)", fix="reuse kept-alive connections, or open fewer at once"))
            # uvicorn's keep-alive timer is cancelled by the first byte received: a silent new connection closes
            self.timeout_keep_alive_task = self.loop.call_later(header_timeout_s, self.timeout_keep_alive_handler)

        def _refuse_connection(self, problem: Problem) -> None:
            self.transport.write(raw_response(b"503 Service Unavailable", problem))
            self.transport.close()

        def data_received(self, data: bytes) -> None:
            if self.transport.is_closing():  # refused or answered: what else arrives is not parsed
                return
            self._completed = False
            super().data_received(data)
            if self._in_head and not self.transport.is_closing():
                # a chunk that also ended a request (pipelining) holds some of the next head: not counted, so a
                # valid pipelined request is never refused; the head is then counted from the next chunk on
                self._head_bytes += 0 if self._completed else len(data)
                if self._head_bytes > limits.max_request_line_bytes + limits.max_header_bytes:
                    self.transport.write(raw_response(b"431 Request Header Fields Too Large", HeadersTooLarge(
                        f"the request line and headers are larger than {limits.max_request_line_bytes} + "
                        f"{limits.max_header_bytes} bytes", fix="send fewer or shorter headers (inputs go in the body)")))
                    self.transport.close()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._url_bytes = self._header_bytes = self._head_bytes = 0
            self._in_head = True
            self._cancel_header_timer()
            self._header_timer = self.loop.call_later(header_timeout_s, self._headers_too_slow)

        def on_url(self, url: bytes) -> None:
            self._url_bytes += len(url)
            if self._url_bytes > limits.max_request_line_bytes:
                self._refusal = raw_response(b"414 URI Too Long", UriTooLong(
                    f"the request target is longer than {limits.max_request_line_bytes} bytes",
                    fix="send inputs in the body, not the URL"))
                raise _Refused
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._header_bytes += len(name) + len(value) + 4  # ": " and CRLF
            if self._header_bytes > limits.max_header_bytes:
                self._refusal = raw_response(b"431 Request Header Fields Too Large", HeadersTooLarge(
                    f"the headers are larger than {limits.max_header_bytes} bytes",
                    fix="send fewer or shorter headers (inputs go in the body)"))
                raise _Refused
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._cancel_header_timer()
            self._in_head = False
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._completed = True
            super().on_message_complete()

        def connection_lost(self, exc) -> None:
            self._cancel_header_timer()
            if self._peer in per_client:
                per_client[self._peer] -= 1
                if per_client[self._peer] <= 0:
                    del per_client[self._peer]
                self._peer = None
            super().connection_lost(exc)

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.logger.warning("closing a connection whose headers took over %g s", header_timeout_s)
                self.transport.write(raw_response(b"408 Request Timeout", BodyTimeout(
                    f"the request line and headers did not arrive within {header_timeout_s:g} s",
                    fix="send the whole request at once")))
                self.transport.close()

        def send_400_response(self, msg: str) -> None:
            self._cancel_header_timer()
            if self._refusal is not None:
                self.transport.write(self._refusal)
            else:
                # httptools refused the bytes (a bad Content-Length, both Content-Length and Transfer-Encoding, a
                # body longer than declared read as the next request): say so as a problem, like every other error
                self.transport.write(raw_response(b"400 Bad Request", MalformedBody(
                    "the request is not valid HTTP/1.1 (bad request line, headers, Content-Length or chunked framing)",
                    fix="send one Content-Length equal to the body's size, or Transfer-Encoding: chunked alone")))
            self.transport.close()

    return EdgeProtocol
