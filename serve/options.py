"""Launcher options: one frozen value built and validated once, then passed to every step."""
from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

from serve.errors import ServeError

# The APIs a client needs to call a model stay open: health, metadata, model-config (clients read it to learn
# shapes), inference, statistics. Everything that changes or inspects the server's internals needs the admin key.
RESTRICTED_APIS = ("model-repository", "shared-memory", "trace", "logging")
ADMIN_HEADER = "modelport-admin-key"
ADMIN_KEY_ENV = "MODELPORT_ADMIN_KEY"


@dataclasses.dataclass(frozen=True)
class ServeOptions:
    repository: Path
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    # Loopback by default: serving on every interface is a deliberate choice (`--address 0.0.0.0`).
    address: str = "127.0.0.1"
    log_file: Path = Path(".cache/serve/tritonserver.log")
    state_dir: Path = Path(".cache/serve")
    build_dir: Path = Path("build/backends")
    admin_key: str = dataclasses.field(default="", repr=False)
    # Seconds Triton waits for in-flight requests on shutdown; small so that a dead stub cannot stall a stop.
    exit_timeout_s: int = 3
    startup_timeout_s: float = 120.0
    heal: bool = True
    log_verbose: int = 0
    # The supervisor's heal/restart counters for Prometheus (serve/metrics.py); 0 serves none. Off unless asked, so
    # that servers started on free ports (the tests) never compete for a fixed one; `make serve` asks for 8003.
    supervisor_metrics_port: int = 0
    # Bytes of Triton's local response cache, shared by the models whose config enables it (models.toml
    # `response_cache = true`); 0 serves without a cache.
    cache_size_bytes: int = 0

    def __post_init__(self) -> None:
        for name in ("http_port", "grpc_port", "metrics_port"):
            port = getattr(self, name)
            if not isinstance(port, int) or not 0 < port < 65536:
                raise ServeError(f"{name} must be a port number in 1..65535, got {port!r}: pass --{name.replace('_', '-')} N")
        ports = [self.http_port, self.grpc_port, self.metrics_port]
        if len(set(ports)) != 3:
            raise ServeError(
                f"http_port, grpc_port and metrics_port must differ, got {ports}: pick three distinct ports"
            )
        port = self.supervisor_metrics_port
        if not isinstance(port, int) or not 0 <= port < 65536 or port in ports:
            raise ServeError(
                f"supervisor_metrics_port must be 0 (off) or a port in 1..65535 other than {ports}, got {port!r}: "
                "pass --supervisor-metrics-port N"
            )
        size = self.cache_size_bytes
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ServeError(f"cache_size_bytes must be an integer >= 0 (0: no response cache), got {size!r}: "
                             "pass --cache-size BYTES, e.g. --cache-size 64MiB")
        try:
            ipaddress.ip_address(self.address)
        except ValueError:
            raise ServeError(
                f"address must be an IP address such as 127.0.0.1 or 0.0.0.0, got {self.address!r}: pass --address IP"
            ) from None
        if not self.admin_key or any(c.isspace() or c in ",=" for c in self.admin_key):
            raise ServeError(
                f"admin key (env {ADMIN_KEY_ENV}) must be non-empty without spaces, commas or '=': "
                "set it to a random token, e.g. `export MODELPORT_ADMIN_KEY=$(openssl rand -hex 16)`"
            )
        if self.exit_timeout_s < 0 or self.startup_timeout_s <= 0:
            raise ServeError(
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
