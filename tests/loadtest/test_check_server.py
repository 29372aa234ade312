"""`python -m loadtest` checks that Triton is ready before it starts Locust, and waits out a reload."""

import http.server
import threading
import time

import pytest

from core.errors import ServerError
from loadtest.__main__ import check_server


class Health(http.server.BaseHTTPRequestHandler):
    not_ready_until = 0.0  # Triton with strict readiness answers 400 while it reloads a model

    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(200 if time.monotonic() >= self.not_ready_until else 400)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def health():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def test_a_server_that_reloads_a_model_for_a_moment_is_waited_for(health):
    Health.not_ready_until = time.monotonic() + 1.5
    check_server(f"127.0.0.1:{health.server_port}", wait_s=10)
    assert time.monotonic() >= Health.not_ready_until


def test_a_server_that_stays_not_ready_fails_the_check_naming_the_url_and_the_fix(health):
    Health.not_ready_until = time.monotonic() + 60
    with pytest.raises(ServerError, match=rf"127.0.0.1:{health.server_port}/v2/health/ready \(HTTP 400, for 1 s\).*"
                                          r"make start"):
        check_server(f"127.0.0.1:{health.server_port}", wait_s=1)
