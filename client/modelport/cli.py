"""`modelport` on the command line: health, models, metadata MODEL, predict MODEL INPUT...

Exit codes: 0 success, 1 server up but not ready (health), 2 usage error, 3 server unreachable, 4 inference error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from typing import Optional, Sequence

from .client import Client
from .errors import AccessDenied, InvalidInput, ModelportError, ServerUnavailable

EXIT_OK, EXIT_NOT_READY, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INFERENCE = 0, 1, 2, 3, 4
DEFAULT_PORTS = {"http": 8000, "grpc": 8001}
DIGIT_MODELS = ("digits", "digits_int8", "digits_fp16")


class UsageError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelport", description="Call models served by Triton Inference Server.",
        epilog="exit codes: 0 ok, 1 not ready (health), 2 usage error, 3 server unreachable, 4 inference error. "
               "Environment: MODELPORT_URL (default url), MODELPORT_ADMIN_KEY (sent as modelport-admin-key).")
    parser.add_argument("--url", default=os.environ.get("MODELPORT_URL"),
                        help="host:port of the server (default: $MODELPORT_URL or 127.0.0.1:8000 for http, "
                             ":8001 for grpc)")
    parser.add_argument("--protocol", choices=("http", "grpc"), default="http")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per call (default 30)")
    parser.add_argument("--retries", type=int, default=3, help="retries of failed inference (default 3)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("health", help="is the server live and ready")
    commands.add_parser("models", help="list the repository's models (needs MODELPORT_ADMIN_KEY)")
    metadata = commands.add_parser("metadata", help="a model's inputs, outputs and max_batch_size")
    metadata.add_argument("model")
    predict = commands.add_parser(
        "predict", help="classify inputs with a contract model",
        description="digits_image: image files (PNG/JPEG); sentiment: texts; digits, digits_int8, digits_fp16: "
                    ".npy files holding 8x8 images (0..255) or batches of them")
    predict.add_argument("model")
    predict.add_argument("inputs", nargs="+", help="image files, texts, or .npy files depending on the model")
    return parser


def _client(args) -> Client:
    url = args.url or f"127.0.0.1:{DEFAULT_PORTS[args.protocol]}"
    key = os.environ.get("MODELPORT_ADMIN_KEY")
    return Client(url, protocol=args.protocol, timeout=args.timeout, retries=args.retries,
                  headers={"modelport-admin-key": key} if key else None)


def _predictions(client: Client, model: str, inputs: Sequence[str]):
    """Return [(input name, Prediction)]."""
    if model.startswith("sentiment"):
        return list(zip(inputs, client.sentiment(list(inputs), model=model)))
    if not (model.startswith("digits_image") or model in DIGIT_MODELS):
        raise UsageError(f"predict knows digits_image, sentiment and {', '.join(DIGIT_MODELS)}, not {model!r}; "
                         f"call other models from Python: modelport.Client(url).infer({model!r}, inputs)")
    missing = [path for path in inputs if not os.path.isfile(path)]
    if missing:
        raise UsageError(f"no such file: {', '.join(missing)}")
    if model.startswith("digits_image"):
        return list(zip(inputs, client.classify_images(list(inputs), model=model)))
    import numpy as np

    names, results = [], []
    for path in inputs:
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise UsageError(f"{path}: not a .npy file of 8x8 images ({exc})") from exc
        found = client.classify_digits(array, model=model)
        found = [found] if not isinstance(found, list) else found
        names += [path if len(found) == 1 else f"{path}[{i}]" for i in range(len(found))]
        results += found
    return list(zip(names, results))


def _print(args, payload, text: str) -> None:
    print(json.dumps(payload, indent=2) if args.json else text)


def run(args) -> int:
    client = _client(args)
    try:
        if args.command == "health":
            live, ready = client.is_live(), client.is_ready()
            _print(args, {"url": client.options.url, "live": live, "ready": ready},
                   f"{client.options.url}: live={live} ready={ready}")
            if not live:
                print(f"modelport: cannot reach {client.options.url} ({args.protocol})", file=sys.stderr)
                return EXIT_UNREACHABLE
            return EXIT_OK if ready else EXIT_NOT_READY
        if args.command == "models":
            models = client.models()
            _print(args, [asdict(m) for m in models],
                   "\n".join(f"{m.name}\t{','.join(m.versions) or '-'}\t{m.state}"
                             f"{chr(9) + m.reason if m.reason else ''}" for m in models))
            return EXIT_OK
        if args.command == "metadata":
            meta = client.metadata(args.model)
            max_batch_size = client.config(args.model).max_batch_size if _config_readable(client, args.model) \
                else None
            payload = {**asdict(meta), "max_batch_size": max_batch_size}
            lines = [f"{meta.name} (versions {', '.join(meta.versions)}, platform {meta.platform or '-'}, "
                     f"max_batch_size {max_batch_size if max_batch_size is not None else 'unknown'})"]
            lines += [f"  input  {t.name}: {t.datatype} {list(t.shape)}" for t in meta.inputs]
            lines += [f"  output {t.name}: {t.datatype} {list(t.shape)}" for t in meta.outputs]
            _print(args, payload, "\n".join(lines))
            return EXIT_OK
        found = _predictions(client, args.model, args.inputs)
        _print(args, [{"input": name, **asdict(p)} for name, p in found],
               "\n".join(f"{name}\t{p.label}\t{p.score:.4f}" for name, p in found))
        return EXIT_OK
    finally:
        client.close()


def _config_readable(client: Client, model: str) -> bool:
    try:
        client.config(model)
        return True
    except ModelportError:
        return False


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"modelport: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:  # bad --url / --timeout values rejected by the client's options
        print(f"modelport: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ServerUnavailable as exc:
        print(f"modelport: server unreachable: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except AccessDenied as exc:
        print(f"modelport: access denied: {exc.server_message}; set MODELPORT_ADMIN_KEY", file=sys.stderr)
        return EXIT_INFERENCE
    except InvalidInput as exc:
        print(f"modelport: invalid input: {exc}", file=sys.stderr)
        return EXIT_INFERENCE
    except ModelportError as exc:
        print(f"modelport: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_INFERENCE
