"""The load generator against real sockets: the trivial endpoint, and a server that answers errors."""

import asyncio
import threading

from bench import servers
from core.measure import loadgen
from core.process import free_ports


def test_the_generator_drives_a_real_endpoint_with_every_connection_and_no_errors(tmp_path):
    with servers.trivial(tmp_path) as endpoint:
        request = loadgen.http_request("t", "/", b"{}", {"Content-Type": "application/json"})
        m = loadgen.run(loadgen.HttpTarget(endpoint.host, endpoint.port, (request,)),
                        loadgen.LoadSpec(connections=8, duration_s=0.5, warmup_s=0.1))

    assert m.requests > 100 and m.errors == 0
    assert 0 < m.p50_ms <= m.p99_ms
    assert 0 < m.generator_cpu <= 1.5


def _error_server(port_box, stop):
    async def handle(reader, writer):
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")
            await writer.drain()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port_box.append(server.sockets[0].getsockname()[1])
        while not stop.is_set():
            await asyncio.sleep(0.05)
        server.close()

    asyncio.run(main())


def test_non_200_answers_count_as_errors_with_the_first_one_quoted():
    port_box, stop = [], threading.Event()
    thread = threading.Thread(target=_error_server, args=(port_box, stop), daemon=True)
    thread.start()
    while not port_box:
        pass
    try:
        m = loadgen.run_here(loadgen.HttpTarget("127.0.0.1", port_box[0], (loadgen.http_request("t", "/", b"", {}),)),
                             loadgen.LoadSpec(connections=2, duration_s=0.3, warmup_s=0.0))
    finally:
        stop.set()
        thread.join(5)

    assert m.requests == 0 and m.errors > 0
    assert m.first_error == "HTTP 503: busy"


def test_a_refused_connection_is_an_error_not_a_hang():
    (port,) = free_ports(1)  # nothing listens there

    m = loadgen.run_here(loadgen.HttpTarget("127.0.0.1", port, (b"GET / HTTP/1.1\r\n\r\n",)),
                         loadgen.LoadSpec(connections=3, duration_s=0.2, warmup_s=0.0))

    assert m.errors == 3 and "cannot connect" in m.first_error
