"""`python -m serve run|start|stop|status`: parse the command line into ServeOptions and dispatch."""
from __future__ import annotations

import argparse
from pathlib import Path

from core import cli
from core.triton import ADMIN_KEY_ENV, ServeOptions, cache_size
from serve import launcher
from serve.security import resolve_admin_key

DEFAULTS = ServeOptions(repository=Path("model_repository"), admin_key="unused")


def parser() -> argparse.ArgumentParser:
    root = cli.parser(
        "serve", "Run the model repository on the Triton Inference Server shipped in the nvidia-pytriton wheel.")
    commands = root.add_subparsers(dest="command", required=True)
    for name, help_text in [
        ("run", "serve in the foreground (Ctrl-C stops)"),
        ("start", "serve in the background; returns when every model is ready"),
    ]:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--repository", type=Path, default=DEFAULTS.repository, help="model repository (default: %(default)s)")
        sub.add_argument("--http-port", type=int, default=DEFAULTS.http_port)
        sub.add_argument("--grpc-port", type=int, default=DEFAULTS.grpc_port)
        sub.add_argument("--metrics-port", type=int, default=DEFAULTS.metrics_port)
        sub.add_argument(
            "--address", default=DEFAULTS.address,
            help="address HTTP, gRPC and metrics bind to (default %(default)s; 0.0.0.0 serves every interface)",
        )
        sub.add_argument("--log-file", type=Path, default=DEFAULTS.log_file, help="Triton's log (default: %(default)s)")
        sub.add_argument("--state-dir", type=Path, default=DEFAULTS.state_dir)
        sub.add_argument("--build-dir", type=Path, default=DEFAULTS.build_dir, help="where the backend directory is built")
        sub.add_argument("--exit-timeout", type=int, default=DEFAULTS.exit_timeout_s, help="seconds to drain on stop")
        sub.add_argument("--startup-timeout", type=float, default=DEFAULTS.startup_timeout_s)
        sub.add_argument("--heal", action=argparse.BooleanOptionalAction, default=True,
                         help="reload a model whose backend process died (default: on)")
        sub.add_argument("--log-verbose", type=int, default=0)
        sub.add_argument("--supervisor-metrics-port", type=int, default=DEFAULTS.supervisor_metrics_port,
                         help="serve the supervisor's heal/restart counters for Prometheus here (default 0: off)")
        sub.add_argument("--cache-size", type=cache_size, default=DEFAULTS.cache_size_bytes, metavar="SIZE",
                         help="response cache for the models with response_cache = true: bytes, or with a unit "
                              "(64MiB, 1GB; default 0: no cache)")
        if name == "run":
            sub.add_argument("--background", action="store_true", help=argparse.SUPPRESS)
    for name, help_text in [("stop", "stop the server `start` started"), ("status", "show the background server")]:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--state-dir", type=Path, default=DEFAULTS.state_dir)
    return root


def options_from(args: argparse.Namespace) -> tuple[ServeOptions, str]:
    key = resolve_admin_key(args.state_dir)
    options = ServeOptions(
        repository=args.repository, http_port=args.http_port, grpc_port=args.grpc_port, metrics_port=args.metrics_port,
        address=args.address, log_file=args.log_file, state_dir=args.state_dir, build_dir=args.build_dir,
        admin_key=key.value, exit_timeout_s=args.exit_timeout, startup_timeout_s=args.startup_timeout,
        heal=args.heal, log_verbose=args.log_verbose, supervisor_metrics_port=args.supervisor_metrics_port,
        cache_size_bytes=args.cache_size,
    )
    source = key.source if key.source.startswith("env") else f"{key.source} (0600; or set {ADMIN_KEY_ENV})"
    return options, source


@cli.program("serve")
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "stop":
        return launcher.stop(args.state_dir)
    if args.command == "status":
        return launcher.status(args.state_dir)
    options, source = options_from(args)
    if args.command == "start":
        return launcher.start(options, source)
    return launcher.run(options, source, background=args.background)
