from pathlib import Path
from types import SimpleNamespace

import pytest

from core.errors import UserError
from core.triton import ServeOptions, cache_size, redact, shm_prefix, tritonserver_argv

RUNTIME = SimpleNamespace(tritonserver=Path("/rt/bin/tritonserver"), backend_dir=Path("/build/backends"),
                          cache_dir=Path("/rt/caches"))


def argv(**overrides):
    options = ServeOptions(**{"repository": Path("/repo"), "admin_key": "KEY", "log_file": Path("/logs/t.log"), **overrides})
    return tritonserver_argv(options, RUNTIME, "tag")


def test_argv_loads_every_repository_model_in_explicit_mode():
    built = argv()
    assert built[0] == "/rt/bin/tritonserver"
    assert "--model-control-mode=explicit" in built and "--load-model=*" in built
    assert "--model-repository=/repo" in built and "--backend-directory=/build/backends" in built


def test_argv_binds_every_endpoint_to_the_chosen_address():
    built = argv(address="0.0.0.0", http_port=9000, grpc_port=9001, metrics_port=9002)
    for flag in ("--http-address=0.0.0.0", "--grpc-address=0.0.0.0", "--metrics-address=0.0.0.0",
                 "--http-port=9000", "--grpc-port=9001", "--metrics-port=9002"):
        assert flag in built
    assert "--http-address=127.0.0.1" in argv()


def test_argv_restricts_admin_apis_behind_the_key_and_leaves_model_config_open():
    built = argv()
    expected = "model-repository,shared-memory,trace,logging:modelport-admin-key=KEY"
    assert f"--http-restricted-api={expected}" in built
    assert f"--grpc-restricted-protocol={expected}" in built
    assert not any("model-config" in arg for arg in built)


def test_argv_gives_the_stubs_shared_memory_a_prefix_of_our_own():
    assert f"--backend-config=python,shm-region-prefix-name={shm_prefix('tag')}" in argv()
    assert shm_prefix("tag") == "modelport_tag_"


def test_redact_hides_the_key_when_the_command_is_logged():
    assert not any("KEY" in arg for arg in redact(argv(), "KEY"))


def test_argv_sizes_the_response_cache_and_points_at_the_wheels_caches_only_when_asked():
    built = argv(cache_size_bytes=64 << 20)
    assert "--cache-config=local,size=67108864" in built and "--cache-directory=/rt/caches" in built
    assert not any(arg.startswith("--cache") for arg in argv())



def options(**overrides):
    return ServeOptions(**{"repository": Path("model_repository"), "admin_key": "k" * 16, **overrides})


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
    with pytest.raises(UserError) as error:
        options(**{field: value})
    assert message in str(error.value)


def test_admin_key_is_not_shown_in_repr():
    assert "secret-key-value" not in repr(options(admin_key="secret-key-value"))


@pytest.mark.parametrize("text, size", [("1048576", 1 << 20), ("64MiB", 64 << 20), ("512MB", 512 * 10 ** 6),
                                        ("1gib", 1 << 30), ("0", 0)])
def test_cache_size_takes_bytes_or_a_whole_number_with_a_unit(text, size):
    assert cache_size(text) == size
