"""Gateway options: one frozen value, validated when built, then handed to every part of the gateway."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

from core.errors import UserError

API_KEY_ENV = "MODELPORT_API_KEY"


class OptionsError(UserError):
    """A wrong option; the message names it, the value and what is allowed."""


def _require(ok: bool, name: str, value: object, allowed: str) -> None:
    if not ok:
        raise OptionsError(f"gateway option {name}: got {value!r}; allowed: {allowed}")


@dataclasses.dataclass(frozen=True)
class Limits:
    """What a request may cost before the gateway looks at its content. Checked before a full parse."""

    max_body_bytes: int = 2 * 1024 * 1024  # a 1 MiB image (Triton's decode limit) is 1.4 MB as base64
    max_json_depth: int = 32  # the deepest tensor here is 5 levels; Triton 2.51 crashes at ~200,000
    header_timeout_s: float = 10.0  # the request line and headers, from the first byte
    body_timeout_s: float = 10.0  # the whole body, from the end of the headers
    keep_alive_timeout_s: float = 5.0  # an idle kept-alive connection, between requests
    max_request_line_bytes: int = 8192  # 414 beyond (the target; the paths here are short)
    max_header_bytes: int = 16384  # 431 beyond, all headers together (a JWT is 1-2 KB)
    max_connections: int = 2048  # per gateway process; new ones beyond are answered 503 and closed
    max_connections_per_client: int = 256  # per client address (the socket's peer; a benchmark opens 64)
    pixels_per_token: int = 1 << 20  # an image costs one rate-limit token per started megapixel it decodes to

    def __post_init__(self) -> None:
        _require(self.max_body_bytes >= 1024, "--max-body-bytes", self.max_body_bytes, "an integer >= 1024")
        _require(1 <= self.max_json_depth <= 1000, "--max-json-depth", self.max_json_depth, "1..1000")
        for name in ("max_request_line_bytes", "max_header_bytes"):
            _require(getattr(self, name) >= 256, f"--{name.replace('_', '-')}", getattr(self, name),
                     "an integer >= 256")
        for name in ("max_connections", "max_connections_per_client", "pixels_per_token"):
            _require(getattr(self, name) >= 1, f"--{name.replace('_', '-')}", getattr(self, name), "an integer >= 1")
        for name in ("header_timeout_s", "body_timeout_s", "keep_alive_timeout_s"):
            value = getattr(self, name)
            _require(value > 0, f"--{name[:-2].replace('_', '-')}", value, "seconds > 0")


@dataclasses.dataclass(frozen=True)
class Shedding:
    """Per model: at most `max_in_flight` requests at Triton and `max_pending` waiting for a slot, each for at most
    `max_wait_s`; anything beyond is answered 503 with Retry-After at once instead of queueing."""

    max_in_flight: int = 64  # two full batches of the reference models (max_batch_size 32)
    max_pending: int = 128
    max_wait_s: float = 1.0
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        _require(self.max_in_flight >= 1, "--max-in-flight", self.max_in_flight, "an integer >= 1")
        _require(self.max_pending >= 0, "--max-pending", self.max_pending, "an integer >= 0")
        _require(self.max_wait_s > 0, "--max-wait", self.max_wait_s, "seconds > 0")
        _require(self.retry_after_s >= 1, "--retry-after", self.retry_after_s, "whole seconds >= 1")


@dataclasses.dataclass(frozen=True)
class RateLimit:
    """A token bucket: `rate_per_s` requests per second on average, bursts of up to `burst`."""

    rate_per_s: float = 1000.0  # a guard against runaway clients; give keys their own (`keys add --rate`)
    burst: int = 2000

    def __post_init__(self) -> None:
        _require(self.rate_per_s > 0, "rate_per_s", self.rate_per_s, "a number > 0")
        _require(isinstance(self.burst, int) and self.burst >= 1, "burst", self.burst, "an integer >= 1")


@dataclasses.dataclass(frozen=True)
class TokenOptions:
    """OAuth2 / OIDC bearer tokens (JWT): whose, for whom, and where the signing keys are."""

    issuer: str  # the `iss` every token must carry
    audience: str  # the `aud` every token must carry
    jwks: str = ""  # a JWKS file, or its URL; empty: <issuer>/.well-known/openid-configuration's jwks_uri
    models_claim: str = "scope"  # model names, "*" or "metrics", space-separated or a list
    algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA")  # asymmetric only: the gateway holds no secret
    leeway_s: int = 30  # clock skew allowed on exp and nbf

    def __post_init__(self) -> None:
        _require(bool(self.issuer), "--jwt-issuer", self.issuer, "the issuer URL tokens carry in `iss`")
        _require(bool(self.audience), "--jwt-audience", self.audience, "the audience tokens carry in `aud`")
        _require(not self.jwks or self.jwks.startswith(("http://", "https://")) or Path(self.jwks).is_file(),
                 "--jwt-jwks", self.jwks, "a JWKS file, an http(s) URL, or nothing (the issuer's discovery)")
        _require(bool(self.algorithms) and not any(a.startswith("HS") or a == "none" for a in self.algorithms),
                 "--jwt-algorithm", self.algorithms, "asymmetric JWS algorithms such as RS256, ES256, EdDSA")
        _require(0 <= self.leeway_s <= 300, "--jwt-leeway", self.leeway_s, "0..300 seconds")


@dataclasses.dataclass(frozen=True)
class PayloadLogOptions:
    """The payload log (gateway/payload_log.py): where, how much of the traffic, what to leave out, and its caps."""

    folder: Path  # rotated JSON-lines files go here
    sample_rate: float = 1.0  # the share of predict requests logged
    drop: tuple[str, ...] = ()  # input names left out of every record
    hash: tuple[str, ...] = ()  # input names logged as the SHA-256 of their JSON value
    queue_size: int = 1000  # records waiting for the writer; beyond, records are dropped and counted
    queue_bytes: int = 64 * 1024 * 1024  # and their inputs' bytes: a queue of large images stays bounded too
    file_bytes: int = 16 * 1024 * 1024  # a new file past this size
    total_bytes: int = 256 * 1024 * 1024  # the oldest files are deleted past this total
    max_age_s: float = 7 * 24 * 3600.0  # and past this age

    def __post_init__(self) -> None:
        _require(0 < self.sample_rate <= 1, "--payload-sample", self.sample_rate, "a share in (0, 1]")
        _require(not set(self.drop) & set(self.hash), "--payload-drop/--payload-hash",
                 sorted(set(self.drop) & set(self.hash)), "an input either dropped or hashed, not both")
        _require(1 <= self.queue_size <= 1_000_000, "--payload-queue", self.queue_size, "1..1000000")
        _require(self.queue_bytes >= 1024, "--payload-queue-bytes", self.queue_bytes, "an integer >= 1024")
        _require(self.file_bytes >= 1024, "--payload-file-bytes", self.file_bytes, "an integer >= 1024")
        _require(self.total_bytes >= 2 * self.file_bytes, "--payload-total-bytes", self.total_bytes,
                 f"at least twice --payload-file-bytes ({2 * self.file_bytes})")
        _require(self.max_age_s > 0, "--payload-max-age", self.max_age_s, "seconds > 0")


@dataclasses.dataclass(frozen=True)
class GatewayOptions:
    host: str = "127.0.0.1"  # loopback by default: serving other hosts is a deliberate --host 0.0.0.0
    port: int = 8080
    triton_url: str = "127.0.0.1:8001"  # Triton's gRPC endpoint
    spec: Path = Path("models.toml")
    repository: Path = Path("model_repository")
    state_dir: Path = Path(".cache/gateway")
    keys_file: Path = Path(".cache/gateway/keys.json")
    auth: bool = True  # off only with --no-auth
    cors_origins: tuple[str, ...] = ()  # none by default: no cross-origin page may call the API
    limits: Limits = Limits()
    shedding: Shedding = Shedding()
    rate_limit: RateLimit = RateLimit()  # for keys that name no rate of their own, and per client without auth
    tls_cert: Path | None = None
    tls_key: Path | None = None
    access_log: Path | None = None  # JSON lines; None: stderr
    tokens: TokenOptions | None = None  # OAuth2 / OIDC bearer tokens besides API keys
    trusted_proxies: tuple[str, ...] = ()  # X-Forwarded-For is honoured from these peer addresses only
    metrics_port: int | None = None  # /metrics on its own bind, open (for Prometheus); the main port needs a scope
    metrics_host: str = "127.0.0.1"
    failed_auth: RateLimit = RateLimit(rate_per_s=1.0, burst=20)  # per client: bad keys or tokens, then 429
    drift_window: int = 1000  # the recent predictions per model the drift gauge compares with the reference
    drift_min_samples: int = 100  # below this the gauge is NaN: too few predictions to mean anything
    payload_log: PayloadLogOptions | None = None  # off by default
    feedback_window: int = 0  # recent predictions POST /v1/feedback can judge; 0: feedback off
    mirror_max_in_flight: int = 8  # per model: shadow (and canary-to-stable) copies at once; beyond, dropped
    triton_timeout_s: float = 30.0
    startup_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            raise OptionsError(f"gateway option --host: got {self.host!r}; allowed: an IP address such as "
                               f"127.0.0.1 (or 0.0.0.0 for every interface)") from None
        _require(isinstance(self.port, int) and 0 < self.port < 65536, "--port", self.port, "1..65535")
        _require(":" in self.triton_url, "--triton", self.triton_url, "HOST:PORT of Triton's gRPC endpoint")
        _require((self.tls_cert is None) == (self.tls_key is None), "--tls-cert/--tls-key",
                 (str(self.tls_cert), str(self.tls_key)), "both (a certificate and its key) or neither")
        for name in ("tls_cert", "tls_key"):
            path = getattr(self, name)
            _require(path is None or Path(path).is_file(), f"--{name.replace('_', '-')}", str(path),
                     "an existing PEM file")
        for origin in self.cors_origins:
            _require(origin.startswith(("http://", "https://")) and origin.count("/") == 2 and origin != "*",
                     "--cors-origin", origin, "an exact origin such as https://app.example.com (scheme://host[:port],"
                     " no path, no *)")
        _require(self.drift_window >= 10, "--drift-window", self.drift_window, "an integer >= 10")
        _require(1 <= self.drift_min_samples <= self.drift_window, "--drift-min-samples", self.drift_min_samples,
                 f"1..drift_window ({self.drift_window})")
        _require(0 <= self.feedback_window <= 10_000_000, "--feedback-window", self.feedback_window,
                 "0 (off) .. 10000000 recent predictions")
        _require(isinstance(self.mirror_max_in_flight, int) and 0 <= self.mirror_max_in_flight <= 1024,
                 "--mirror-max-in-flight", self.mirror_max_in_flight, "0 (no mirrors) .. 1024")
        _require(self.triton_timeout_s > 0, "--triton-timeout", self.triton_timeout_s, "seconds > 0")
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy)
            except ValueError:
                raise OptionsError(f"gateway option --trusted-proxy: got {proxy!r}; allowed: an IP address or "
                                   f"network such as 10.0.0.5 or 10.0.0.0/24") from None
        _require(self.metrics_port is None or (0 < self.metrics_port < 65536 and self.metrics_port != self.port),
                 "--metrics-port", self.metrics_port, "1..65535, not --port")

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"{self.scheme}://{host}:{self.port}"
