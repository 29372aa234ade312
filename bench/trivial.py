"""A trivial HTTP endpoint for measuring the load generator's own ceiling: every request gets the same tiny 200.

`python -m bench.trivial PORT` serves until killed. It shares the machine's cores with the generator, so the rate the
generator reaches against it is a lower bound of the generator's ceiling.
"""

from __future__ import annotations

import asyncio
import sys

from core.measure.loadgen import content_length

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class _Trivial(asyncio.Protocol):
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = content_length(bytes(self.buffer[:end + 2]).lower()) or 0
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[: end + 4 + length]
            self.transport.write(RESPONSE)


async def serve(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_Trivial, "127.0.0.1", port)
    print(f"trivial endpoint on 127.0.0.1:{port}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    import uvloop

    uvloop.run(serve(int(sys.argv[1])))
