"""The tritonserver command line, derived from the options alone."""
from __future__ import annotations

from serve.options import ADMIN_HEADER, RESTRICTED_APIS, ServeOptions
from serve.runtime import Runtime


# Latency summaries (off by default in Triton) feed the dashboard's p50/p99 panels and the p99 alert; the Kubernetes
# manifests (operate/k8s.py) pass the same flags. Quantile:error pairs as Triton's --metrics-config documents them.
METRICS_FLAGS = (
    "--metrics-config=summary_latencies=true",
    "--metrics-config=summary_quantiles=0.5:0.05,0.9:0.01,0.99:0.001",
)


def shm_prefix(tag: str) -> str:
    """Prefix of the python backend's /dev/shm regions, unique per launch so that cleanup removes only ours."""
    return f"modelport_{tag}_"


def tritonserver_argv(options: ServeOptions, runtime: Runtime, shm_tag: str) -> list[str]:
    restricted = f"{','.join(RESTRICTED_APIS)}:{ADMIN_HEADER}={options.admin_key}"
    return [
        str(runtime.tritonserver),
        f"--model-repository={options.repository.resolve()}",
        f"--backend-directory={runtime.backend_dir}",
        # Explicit mode: nothing outside the repository's models can be loaded without the admin key,
        # and every repository model is loaded at start.
        "--model-control-mode=explicit",
        "--load-model=*",
        "--strict-readiness=true",
        f"--exit-timeout-secs={options.exit_timeout_s}",
        f"--http-address={options.address}",
        f"--http-port={options.http_port}",
        f"--grpc-address={options.address}",
        f"--grpc-port={options.grpc_port}",
        f"--metrics-address={options.address}",
        f"--metrics-port={options.metrics_port}",
        *METRICS_FLAGS,
        "--allow-gpu-metrics=false",
        f"--http-restricted-api={restricted}",
        f"--grpc-restricted-protocol={restricted}",
        f"--backend-config=python,shm-region-prefix-name={shm_prefix(shm_tag)}",
        f"--log-file={options.log_file.resolve()}",
        f"--log-verbose={options.log_verbose}",
        *cache_flags(options, runtime),
    ]


def cache_flags(options: ServeOptions, runtime: Runtime) -> list[str]:
    """Triton's local response cache, for the models whose config has `response_cache { enable: true }`."""
    if not options.cache_size_bytes:
        return []
    directory = [f"--cache-directory={runtime.cache_dir}"] if runtime.cache_dir is not None else []
    return [*directory, f"--cache-config=local,size={options.cache_size_bytes}"]


def redact(argv: list[str], secret: str) -> list[str]:
    return [arg.replace(secret, "***") for arg in argv] if secret else list(argv)
