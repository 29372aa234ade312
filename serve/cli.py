"""`python -m serve run|start|stop|status`: parse the command line into ServeOptions and dispatch."""
from __future__ import annotations

import argparse
from pathlib import Path

from core import cli
from core.triton import ADMIN_KEY_ENV, ServeOptions, add_flags, parsed_options
from serve import launcher
from serve.security import resolve_admin_key

DEFAULTS = ServeOptions(admin_key="unused")


def parser() -> argparse.ArgumentParser:
    root = cli.parser(
        "serve", "Run the model repository on the Triton Inference Server shipped in the nvidia-pytriton wheel.")
    commands = root.add_subparsers(dest="command", required=True)
    for name, help_text in [
        ("run", "serve in the foreground (Ctrl-C stops)"),
        ("start", "serve in the background; returns when every model is ready"),
    ]:
        sub = commands.add_parser(name, help=help_text)
        add_flags(sub)
        if name == "run":
            sub.add_argument("--background", action="store_true", help=argparse.SUPPRESS)
    for name, help_text in [("stop", "stop the server `start` started"), ("status", "show the background server")]:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--state-dir", type=Path, default=DEFAULTS.state_dir)
    return root


def options_from(args: argparse.Namespace) -> tuple[ServeOptions, str]:
    key = resolve_admin_key(args.state_dir)
    source = key.source if key.source.startswith("env") else f"{key.source} (0600; or set {ADMIN_KEY_ENV})"
    return parsed_options(args, key.value), source


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
