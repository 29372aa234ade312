from pathlib import Path

import pytest

from serve.errors import ServeError
from serve.options import ServeOptions


def options(**overrides):
    return ServeOptions(**{"repository": Path("model_repository"), "admin_key": "k" * 16, **overrides})


def test_defaults_bind_loopback_on_the_standard_ports():
    built = options()
    assert (built.address, built.http_port, built.grpc_port, built.metrics_port) == ("127.0.0.1", 8000, 8001, 8002)
    assert built.http_url == "127.0.0.1:8000"


def test_binding_every_interface_still_gives_a_connectable_url():
    assert options(address="0.0.0.0").grpc_url == "127.0.0.1:8001"


@pytest.mark.parametrize("field, value, message", [
    ("http_port", 0, "http_port must be a port number in 1..65535, got 0: pass --http-port N"),
    ("metrics_port", 70000, "metrics_port must be a port number"),
    ("grpc_port", 8000, "must differ, got [8000, 8000, 8002]"),
    ("address", "localhost:80", "address must be an IP address"),
    ("admin_key", "", "MODELPORT_ADMIN_KEY"),
    ("admin_key", "a,b=c", "without spaces, commas or '='"),
    ("exit_timeout_s", -1, "exit_timeout_s must be >= 0"),
    ("cache_size_bytes", -1, "cache_size_bytes must be an integer >= 0 (0: no response cache), got -1: pass --cache-size"),
])
def test_invalid_option_fails_at_construction_naming_the_field(field, value, message):
    with pytest.raises(ServeError) as error:
        options(**{field: value})
    assert message in str(error.value)


def test_admin_key_is_not_shown_in_repr():
    assert "secret-key-value" not in repr(options(admin_key="secret-key-value"))
