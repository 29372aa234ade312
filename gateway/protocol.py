"""uvicorn's httptools protocol with a deadline for the request line and headers.

uvicorn times out idle keep-alive connections but not a request whose headers trickle in (slowloris), nor a fresh
connection that never sends a byte; each would hold a connection forever. Here the headers must be complete within
`header_timeout_s` of the first byte, and a new connection must send one within that time; otherwise the gateway
answers 408 and closes; what httptools cannot parse gets a problem-details 400 instead of plain text. The body's
deadline is the app's (gateway/bodies.py), where the problem can be explained.
"""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.problems import PROBLEM_JSON, BodyTimeout, MalformedBody, Problem


def _raw_response(status_line: bytes, problem: Problem) -> bytes:
    """A problem written straight to the socket, for requests the app never sees."""
    body = json.dumps(problem.body("", "")).encode()
    return (b"HTTP/1.1 " + status_line + b"\r\ncontent-type: " + PROBLEM_JSON.encode() + b"\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)


def with_header_timeout(header_timeout_s: float) -> type[HttpToolsProtocol]:
    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            # uvicorn's keep-alive timer is cancelled by the first byte received: a silent new connection closes
            self.timeout_keep_alive_task = self.loop.call_later(header_timeout_s, self.timeout_keep_alive_handler)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._cancel_header_timer()
            self._header_timer = self.loop.call_later(header_timeout_s, self._headers_too_slow)

        def on_headers_complete(self) -> None:
            self._cancel_header_timer()
            super().on_headers_complete()

        def connection_lost(self, exc) -> None:
            self._cancel_header_timer()
            super().connection_lost(exc)

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.logger.warning("closing a connection whose headers took over %g s", header_timeout_s)
                self.transport.write(_raw_response(b"408 Request Timeout", BodyTimeout(
                    f"the request line and headers did not arrive within {header_timeout_s:g} s",
                    fix="send the whole request at once")))
                self.transport.close()

        def send_400_response(self, msg: str) -> None:
            # httptools refused the bytes (a bad Content-Length, both Content-Length and Transfer-Encoding, a body
            # longer than declared read as the next request): say so as a problem, like every other error
            self.transport.write(_raw_response(b"400 Bad Request", MalformedBody(
                "the request is not valid HTTP/1.1 (bad request line, headers, Content-Length or chunked framing)",
                fix="send one Content-Length equal to the body's size, or Transfer-Encoding: chunked alone")))
            self.transport.close()

    return HeaderTimeoutProtocol
