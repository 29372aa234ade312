"""`serve run`'s options: the command line a user types reaches Triton, and a background start hands them on."""
import dataclasses
from pathlib import Path

from core.triton import ADMIN_KEY_ENV, ServeOptions, flags_of, tritonserver_argv
from serve import cli
from core.triton_install import Runtime

RUNTIME = Runtime(Path("/rt/bin/tritonserver"), Path("/rt/libs"), Path("/build/backends"), Path("/venv/bin"), None)


def options(**overrides):
    return ServeOptions(**{"repository": Path("model_repository"), "admin_key": "k" * 16, **overrides})


def parsed(*argv: str) -> ServeOptions:
    return cli.options_from(cli.parser().parse_args(["run", *argv]))[0]


def test_serve_run_without_flags_starts_triton_on_loopback_on_the_standard_ports(monkeypatch):
    monkeypatch.setenv(ADMIN_KEY_ENV, "k" * 16)  # no key file written
    built = parsed()
    argv = tritonserver_argv(built, RUNTIME, "tag")
    for flag in ("--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1",
                 "--http-port=8000", "--grpc-port=8001", "--metrics-port=8002"):
        assert flag in argv
    assert (built.http_url, built.grpc_url, built.metrics_url) == ("127.0.0.1:8000", "127.0.0.1:8001", "127.0.0.1:8002")


def test_a_background_start_hands_every_option_to_its_child_unchanged(monkeypatch, tmp_path):
    monkeypatch.setenv(ADMIN_KEY_ENV, "k" * 16)
    chosen = options(repository=tmp_path / "repo", http_port=9100, grpc_port=9101, metrics_port=9102,
                     address="0.0.0.0", log_file=tmp_path / "t.log", state_dir=tmp_path / "state",
                     build_dir=tmp_path / "build", exit_timeout_s=7, startup_timeout_s=33.5, heal=False, log_verbose=2,
                     supervisor_metrics_port=9103, cache_size_bytes=1 << 20)
    # every option away from its default, so that one the child's command line leaves out shows
    assert [f.name for f in dataclasses.fields(ServeOptions)
            if getattr(chosen, f.name) == getattr(cli.DEFAULTS, f.name)] == []
    assert parsed(*flags_of(chosen)) == chosen
