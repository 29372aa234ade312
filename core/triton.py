"""Triton's options and its command line: one frozen value built and validated once, and every command line that
starts tritonserver (the local launcher, triton.Dockerfile, the Kubernetes manifests) built from it."""
from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import sys
from pathlib import Path
from typing import Protocol

from core.errors import UserError

# The APIs a client needs to call a model stay open: health, metadata, model-config (clients read it to learn
# shapes), inference, statistics. Everything that changes or inspects the server's internals needs the admin key.
RESTRICTED_APIS = ("model-repository", "shared-memory", "trace", "logging")
ADMIN_HEADER = "modelport-admin-key"
ADMIN_KEY_ENV = "MODELPORT_ADMIN_KEY"


UNITS = {"": 1, "B": 1, "KB": 10 ** 3, "MB": 10 ** 6, "GB": 10 ** 9, "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30}


def cache_size(text: str) -> int:
    """`--cache-size`: bytes, or a whole number with a unit (KB/MB/GB powers of 10, KiB/MiB/GiB of 2)."""
    number = text.rstrip("KMGiBkmgib")
    unit = text[len(number):].strip().upper()
    if not number.strip().isdigit() or unit not in UNITS:
        raise argparse.ArgumentTypeError(
            f"takes bytes or a whole number with a unit (64MiB, 512MB, 1GiB), got {text!r}")
    return int(number) * UNITS[unit]


def flag(default, name: str, help: str | None = None, **argparse_fields):
    """A ServeOptions field that `serve run` takes as flag `name` (add_flags); flags_of writes it back. Its type is
    its default's (a bool: --name / --no-name)."""
    return dataclasses.field(default=default, metadata={"flag": name, "argparse": {"help": help, **argparse_fields}})


@dataclasses.dataclass(frozen=True)
class ServeOptions:
    repository: Path = flag(Path("model_repository"), "--repository", "model repository (default: %(default)s)")
    http_port: int = flag(8000, "--http-port")
    grpc_port: int = flag(8001, "--grpc-port")
    metrics_port: int = flag(8002, "--metrics-port")
    # Loopback by default: serving on every interface is a deliberate choice (`--address 0.0.0.0`).
    address: str = flag("127.0.0.1", "--address", "address HTTP, gRPC and metrics bind to (default %(default)s; "
                                                   "0.0.0.0 serves every interface)")
    log_file: Path = flag(Path(".cache/serve/tritonserver.log"), "--log-file", "Triton's log (default: %(default)s)")
    state_dir: Path = flag(Path(".cache/serve"), "--state-dir")
    build_dir: Path = flag(Path("build/backends"), "--build-dir", "where the backend directory is built")
    # From the environment or a 0600 file (serve/security.py), never a flag: every local user can read a command line.
    admin_key: str = dataclasses.field(default="", repr=False)
    # Seconds Triton waits for in-flight requests on shutdown; small so that a dead stub cannot stall a stop.
    exit_timeout_s: int = flag(3, "--exit-timeout", "seconds to drain on stop")
    startup_timeout_s: float = flag(120.0, "--startup-timeout")
    heal: bool = flag(True, "--heal", "reload a model whose backend process died (default: on)")
    log_verbose: int = flag(0, "--log-verbose")
    # The supervisor's heal/restart counters for Prometheus (serve/metrics.py); 0 serves none. Off unless asked, so
    # that servers started on free ports (the tests) never compete for a fixed one; `make serve` asks for 8003.
    supervisor_metrics_port: int = flag(0, "--supervisor-metrics-port", "serve the supervisor's heal/restart "
                                        "counters for Prometheus here (default 0: off)")
    # Bytes of Triton's local response cache, shared by the models whose config enables it (models.toml
    # `response_cache = true`); 0 serves without a cache.
    cache_size_bytes: int = flag(0, "--cache-size", "response cache for the models with response_cache = true: "
                                 "bytes, or with a unit (64MiB, 1GB; default 0: no cache)", type=cache_size,
                                 metavar="SIZE")

    def __post_init__(self) -> None:
        for name in ("http_port", "grpc_port", "metrics_port"):
            port = getattr(self, name)
            if not isinstance(port, int) or not 0 < port < 65536:
                raise UserError(f"{name} must be a port number in 1..65535, got {port!r}: pass --{name.replace('_', '-')} N")
        ports = [self.http_port, self.grpc_port, self.metrics_port]
        if len(set(ports)) != 3:
            raise UserError(
                f"http_port, grpc_port and metrics_port must differ, got {ports}: pick three distinct ports"
            )
        port = self.supervisor_metrics_port
        if not isinstance(port, int) or not 0 <= port < 65536 or port in ports:
            raise UserError(
                f"supervisor_metrics_port must be 0 (off) or a port in 1..65535 other than {ports}, got {port!r}: "
                "pass --supervisor-metrics-port N"
            )
        size = self.cache_size_bytes
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise UserError(f"cache_size_bytes must be an integer >= 0 (0: no response cache), got {size!r}: "
                             "pass --cache-size BYTES, e.g. --cache-size 64MiB")
        try:
            ipaddress.ip_address(self.address)
        except ValueError:
            raise UserError(
                f"address must be an IP address such as 127.0.0.1 or 0.0.0.0, got {self.address!r}: pass --address IP"
            ) from None
        if not self.admin_key or any(c.isspace() or c in ",=" for c in self.admin_key):
            raise UserError(
                f"admin key (env {ADMIN_KEY_ENV}) must be non-empty without spaces, commas or '=': "
                "set it to a random token, e.g. `export MODELPORT_ADMIN_KEY=$(openssl rand -hex 16)`"
            )
        if self.exit_timeout_s < 0 or self.startup_timeout_s <= 0:
            raise UserError(
                f"exit_timeout_s must be >= 0 and startup_timeout_s > 0, got {self.exit_timeout_s}, {self.startup_timeout_s}"
            )

    @property
    def url_host(self) -> str:
        """Where a local client connects: the bind address, or loopback when bound to every interface."""
        return "127.0.0.1" if self.address in ("0.0.0.0", "::") else self.address

    @property
    def http_url(self) -> str:
        return f"{self.url_host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.url_host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"{self.url_host}:{self.metrics_port}"


# Latency summaries (off by default in Triton) feed the dashboard's p50/p99 panels and the p99 alert. Quantile:error
# pairs as Triton's --metrics-config documents them.
METRICS_FLAGS = (
    "--metrics-config=summary_latencies=true",
    "--metrics-config=summary_quantiles=0.5:0.05,0.9:0.01,0.99:0.001",
)


class Installation(Protocol):  # where a tritonserver and its backends are (core/triton_install.py finds the wheel's)
    tritonserver: Path
    backend_dir: Path
    cache_dir: Path | None


def serving_flags(repository: str, admin_key: str, exit_timeout_s: int) -> list[str]:
    """The flags every deployment shares. `admin_key` may be a reference the container expands, such as
    `$(MODELPORT_ADMIN_KEY)` in a manifest."""
    restricted = f"{','.join(RESTRICTED_APIS)}:{ADMIN_HEADER}={admin_key}"
    return [
        f"--model-repository={repository}",
        # Explicit mode: nothing outside the repository's models can be loaded without the admin key,
        # and every repository model is loaded at start.
        "--model-control-mode=explicit",
        "--load-model=*",
        "--strict-readiness=true",
        f"--exit-timeout-secs={exit_timeout_s}",
        *METRICS_FLAGS,
        f"--http-restricted-api={restricted}",
        f"--grpc-restricted-protocol={restricted}",
    ]


def shm_prefix(tag: str) -> str:
    """Prefix of the python backend's /dev/shm regions, unique per launch so that cleanup removes only ours."""
    return f"modelport_{tag}_"


def tritonserver_argv(options: ServeOptions, installation: Installation, shm_tag: str) -> list[str]:
    return [
        str(installation.tritonserver),
        *serving_flags(str(options.repository.resolve()), options.admin_key, options.exit_timeout_s),
        f"--backend-directory={installation.backend_dir}",
        f"--http-address={options.address}",
        f"--http-port={options.http_port}",
        f"--grpc-address={options.address}",
        f"--grpc-port={options.grpc_port}",
        f"--metrics-address={options.address}",
        f"--metrics-port={options.metrics_port}",
        "--allow-gpu-metrics=false",
        f"--backend-config=python,shm-region-prefix-name={shm_prefix(shm_tag)}",
        f"--log-file={options.log_file.resolve()}",
        f"--log-verbose={options.log_verbose}",
        *cache_flags(options, installation),
    ]


def cache_flags(options: ServeOptions, installation: Installation) -> list[str]:
    """Triton's local response cache, for the models whose config has `response_cache { enable: true }`."""
    if not options.cache_size_bytes:
        return []
    directory = [f"--cache-directory={installation.cache_dir}"] if installation.cache_dir is not None else []
    return [*directory, f"--cache-config=local,size={options.cache_size_bytes}"]


def redact(argv: list[str], secret: str) -> list[str]:
    return [arg.replace(secret, "***") for arg in argv] if secret else list(argv)



def _flagged() -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(ServeOptions) if "flag" in f.metadata]


def add_flags(parser: argparse.ArgumentParser) -> None:
    """`serve run`'s flags: one per ServeOptions field that has one, defaulting to the field's default."""
    for f in _flagged():
        name = f.metadata["flag"]
        kind = ({"action": argparse.BooleanOptionalAction} if isinstance(f.default, bool) else
                {"type": type(f.default), "metavar": name[2:].upper().replace("-", "_")})
        parser.add_argument(name, dest=f.name, default=f.default, **{**kind, **f.metadata["argparse"]})


def parsed_options(args: argparse.Namespace, admin_key: str) -> ServeOptions:
    """The options add_flags' flags were parsed into."""
    return ServeOptions(**{f.name: getattr(args, f.name) for f in _flagged()}, admin_key=admin_key)


def flags_of(options: ServeOptions) -> list[str]:
    """The flags that give `serve run` exactly these options (the admin key goes in the environment, ADMIN_KEY_ENV)."""
    flags = []
    for f in _flagged():
        name, value = f.metadata["flag"], getattr(options, f.name)
        flags += [name if value else f"--no-{name[2:]}"] if isinstance(value, bool) else [name, str(value)]
    return flags


def serve_command(options: ServeOptions) -> list[str]:
    """`python -m serve run` with these options: how `serve start`, the benchmarks and the tests start a server."""
    return [sys.executable, "-m", "serve", "run", *flags_of(options)]
