"""`modelport` on the command line: health, models, metadata MODEL, predict MODEL INPUT..., explain MODEL INPUT

Exit codes: 0 success, 1 server up but not ready (health), 2 usage error, 3 server unreachable, 4 inference error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from typing import Optional, Sequence

import numpy as np

from . import cli_inputs
from .cli_inputs import UsageError
from .client import Client
from .errors import AccessDenied, InvalidInput, ModelportError, ServerUnavailable
from .explain import DEFAULT_BUDGET, METHODS, Explanation
from .predictions import ModelOutput, Prediction

EXIT_OK, EXIT_NOT_READY, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INFERENCE = 0, 1, 2, 3, 4
DEFAULT_PORTS = {"http": 8000, "grpc": 8001}


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
        "predict", help="run a model on .npy/.npz/JSON files, image or other files, or texts",
        description="Each .npy file is the array of a single-input model, .npz files hold arrays by input name, "
                    "JSON files {\"input_name\": nested list} (or a bare nested list for a single-input model); "
                    "each of these files is one request, one item or a batch. Other files (their bytes, e.g. "
                    "PNG/JPEG images) and texts form one batch for a model whose one input is TYPE_STRING. "
                    "Outputs with labels on the server print as label and score, others as arrays.")
    predict.add_argument("model")
    predict.add_argument("inputs", nargs="+", help=".npy, .npz or .json files, other files, or texts")
    predict.add_argument("--top", type=_positive, metavar="K", help="print the K best labels of each prediction")
    predict.add_argument("--output", action="append", metavar="NAME",
                         help="only this output (repeat for several; default: all)")
    predict.add_argument("--text", action="store_true",
                         help="send every argument that is not .npy/.npz/.json as text, even if a file has its name")
    predict.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                         help="print JSON instead of text")
    explain = commands.add_parser(
        "explain", help="why a model answers what it does for one input",
        description="One input, given as for predict (a .npy/.npz/JSON file holding one item, a file or a text). "
                    "Images get an occlusion heatmap, text leave-one-word-out, other tensors Kernel SHAP; each "
                    "printed for the predicted class (--label for another), every class with --json.")
    explain.add_argument("model")
    explain.add_argument("input", help="a .npy, .npz or .json file with one item, another file, or a text")
    explain.add_argument("--method", choices=METHODS, help="default: chosen from the input's kind")
    explain.add_argument("--budget", type=_positive, default=DEFAULT_BUDGET, metavar="REQUESTS",
                         help="most requests to send (default %(default)s; each holds up to max_batch_size items)")
    explain.add_argument("--output", metavar="NAME", help="the output to explain (default: the labelled one)")
    explain.add_argument("--label", help="print this class's attributions (default: the predicted class)")
    explain.add_argument("--text", action="store_true", help="send the argument as text even if a file has its name")
    explain.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                         help="print JSON instead of text")
    return parser


def _client(args) -> Client:
    url = args.url or f"127.0.0.1:{DEFAULT_PORTS[args.protocol]}"
    key = os.environ.get("MODELPORT_ADMIN_KEY")
    return Client(url, protocol=args.protocol, timeout=args.timeout, retries=args.retries,
                  headers={"modelport-admin-key": key} if key else None)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"takes a positive integer, got {text!r}")
    return int(text)


def _predictions(client: Client, args) -> list[tuple[str, ModelOutput]]:
    """Return [(what the input is called, its ModelOutput)], in the order of the arguments."""
    arguments = cli_inputs.classify(args.inputs, as_text=args.text)
    found = []
    for request in cli_inputs.requests(arguments, client.metadata(args.model)):
        answer = client.predict(args.model, request.inputs, top=args.top, outputs=args.output)
        if isinstance(answer, ModelOutput):
            found.append((request.name, answer))
        else:
            names = request.names or [f"{request.name}[{i}]" for i in range(len(answer))]
            found += zip(names, answer)
    return found


def _explanation(client: Client, args) -> Explanation:
    arguments = cli_inputs.classify([args.input], as_text=args.text)
    found = cli_inputs.requests(arguments, client.metadata(args.model))
    inputs = found[0].inputs
    if arguments[0].kind != "array":  # a text or a file's bytes: one item, not a batch of one
        inputs = inputs[0]
    return client.explain(args.model, inputs, method=args.method, output=args.output, budget=args.budget)


def _explanation_lines(found: Explanation, label: Optional[str]) -> list[str]:
    chosen = label if label is not None else found.label
    values = found.of(chosen)
    index = found.labels.index(chosen)
    lines = [f"{found.model}\t{found.label}\t{found.prediction[found.target]:.4f}\t({found.method}, "
             f"{found.requests} requests, {found.items} items; attributions to {chosen!r}"
             f"{'' if found.baseline is None else f': baseline {found.baseline[index]:.4f}'}, sum {values.sum():+.4f})"]
    if found.features is None:
        lines.append(np.array2string(values, precision=3, separator=", ", suppress_small=True,
                                     max_line_width=1 << 30))
    else:
        lines += [f"{name}\t{value:+.4f}" for name, value in zip(found.features, values)]
    return lines


def _jsonable(value):
    if isinstance(value, Prediction):
        return asdict(value)
    if value.dtype == object:  # BYTES outputs
        return np.frompyfunc(lambda v: v.decode("utf-8", "replace") if isinstance(v, bytes) else v, 1, 1)(
            value).tolist()
    return value.tolist()


def _lines(name: str, output: ModelOutput, top) -> list[str]:
    lines = []
    for output_name, value in output.items():
        prefix = name if len(output) == 1 else f"{name}\t{output_name}"
        if isinstance(value, Prediction):
            pairs = list(value.scores.items()) if top else [(value.label, value.score)]
            lines.append(prefix + "".join(f"\t{label}\t{score:.4f}" for label, score in pairs))
        else:
            lines.append(f"{prefix}\t" + np.array2string(value, precision=4, separator=", ", threshold=20,
                                                         max_line_width=1 << 30))
    return lines


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
        if args.command == "explain":
            explained = _explanation(client, args)
            if args.label is not None:
                explained.of(args.label)  # an unknown label is refused before anything is printed
            _print(args, explained.to_dict(), "\n".join(_explanation_lines(explained, args.label)))
            return EXIT_OK
        found = _predictions(client, args)
        _print(args, [{"input": name, "outputs": {k: _jsonable(v) for k, v in output.items()}}
                      for name, output in found],
               "\n".join(line for name, output in found for line in _lines(name, output, args.top)))
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
