"""`python -m gateway run|start|stop|status|keys`: parse the command line into GatewayOptions and dispatch."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core import cli
from gateway import keys as api_keys
from gateway.options import (GatewayOptions, Limits, OptionsError, PayloadLogOptions, RateLimit, Shedding,
                             TokenOptions)

D = GatewayOptions()


def _serve_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--host", default=D.host, help="address to bind (default %(default)s; 0.0.0.0: every interface)")
    sub.add_argument("--port", type=int, default=D.port)
    sub.add_argument("--triton", default=D.triton_url, help="Triton's gRPC HOST:PORT (default %(default)s)")
    sub.add_argument("--spec", type=Path, default=D.spec)
    sub.add_argument("--repository", type=Path, default=D.repository)
    sub.add_argument("--state-dir", type=Path, default=D.state_dir)
    sub.add_argument("--keys-file", type=Path, default=None,
                     help="the keys' digests (default: keys.json in --state-dir, i.e. %s)" % D.keys_file)
    sub.add_argument("--no-auth", action="store_true", help="accept requests without an API key (deliberately open)")
    sub.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                     help="an origin whose pages may call the API (repeatable; default: none)")
    sub.add_argument("--tls-cert", type=Path, help="PEM certificate: serve HTTPS (with --tls-key)")
    sub.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    sub.add_argument("--access-log", type=Path, help="JSON-lines access log (default: stderr)")
    limits = sub.add_argument_group("limits (checked before a body is parsed)")
    limits.add_argument("--max-body-bytes", type=int, default=D.limits.max_body_bytes)
    limits.add_argument("--max-json-depth", type=int, default=D.limits.max_json_depth)
    limits.add_argument("--header-timeout", type=float, default=D.limits.header_timeout_s, metavar="S")
    limits.add_argument("--body-timeout", type=float, default=D.limits.body_timeout_s, metavar="S")
    limits.add_argument("--keep-alive-timeout", type=float, default=D.limits.keep_alive_timeout_s, metavar="S")
    limits.add_argument("--max-request-line-bytes", type=int, default=D.limits.max_request_line_bytes,
                        help="414 beyond (default %(default)s)")
    limits.add_argument("--max-header-bytes", type=int, default=D.limits.max_header_bytes,
                        help="431 beyond, all headers together (default %(default)s)")
    limits.add_argument("--max-connections", type=int, default=D.limits.max_connections)
    limits.add_argument("--max-connections-per-client", type=int, default=D.limits.max_connections_per_client)
    limits.add_argument("--pixels-per-token", type=int, default=D.limits.pixels_per_token,
                        help="an image input costs a rate-limit token per started N pixels (default %(default)s)")
    trust = sub.add_argument_group("trust")
    trust.add_argument("--trusted-proxy", action="append", default=[], metavar="IP_OR_NET",
                       help="honour X-Forwarded-For from this peer (repeatable; default: from none)")
    trust.add_argument("--metrics-port", type=int, default=None,
                       help="serve /metrics, open, on its own bind (for Prometheus); the API port's needs a key")
    trust.add_argument("--metrics-host", default=D.metrics_host)
    trust.add_argument("--failed-auth-burst", type=int, default=D.failed_auth.burst,
                       help="failed authentications a client may make before 429 (then 1/s)")
    jwt = sub.add_argument_group("OAuth2 / OIDC bearer tokens (JWT), besides API keys")
    jwt.add_argument("--jwt-issuer", help="the `iss` tokens must carry; turns tokens on")
    jwt.add_argument("--jwt-audience", help="the `aud` tokens must carry")
    jwt.add_argument("--jwt-jwks", default="", help="the signing keys: a JWKS file or URL (default: the issuer's "
                                                   "/.well-known/openid-configuration jwks_uri)")
    jwt.add_argument("--jwt-models-claim", default="scope",
                     help="the claim naming the models a token may call (`*`: all; `metrics`: /metrics)")
    jwt.add_argument("--jwt-algorithm", action="append", default=[], help="accepted algorithms (default RS256, "
                                                                         "ES256, EdDSA)")
    shed = sub.add_argument_group("load shedding, per model")
    shed.add_argument("--max-in-flight", type=int, default=D.shedding.max_in_flight)
    shed.add_argument("--max-pending", type=int, default=D.shedding.max_pending)
    shed.add_argument("--max-wait", type=float, default=D.shedding.max_wait_s, metavar="S")
    shed.add_argument("--retry-after", type=int, default=D.shedding.retry_after_s, metavar="S")
    rate = sub.add_argument_group("rate limits (keys without their own; per client without auth)")
    rate.add_argument("--rate", type=float, default=D.rate_limit.rate_per_s, help="requests per second")
    rate.add_argument("--burst", type=int, default=D.rate_limit.burst)
    quality = sub.add_argument_group("model quality")
    quality.add_argument("--drift-window", type=int, default=D.drift_window)
    quality.add_argument("--drift-min-samples", type=int, default=D.drift_min_samples)
    quality.add_argument("--feedback-window", type=int, default=D.feedback_window, metavar="N",
                         help="POST /v1/feedback judges the last N predictions (default %(default)s: feedback off)")
    quality.add_argument("--mirror-max-in-flight", type=int, default=D.mirror_max_in_flight, metavar="N",
                         help="per model, requests mirrored to a shadow or canary's stable at once; more are dropped "
                              "and counted (default %(default)s)")
    P = PayloadLogOptions(Path("."))
    payload = sub.add_argument_group("payload log (off unless --payload-log)")
    payload.add_argument("--payload-log", type=Path, metavar="DIR", help="log sampled requests and answers here")
    payload.add_argument("--payload-sample", type=float, default=P.sample_rate, metavar="SHARE",
                         help="share of predict requests logged (default %(default)s)")
    payload.add_argument("--payload-drop", action="append", default=[], metavar="INPUT",
                         help="leave this input out of the records (repeatable)")
    payload.add_argument("--payload-hash", action="append", default=[], metavar="INPUT",
                         help="log this input as the SHA-256 of its value (repeatable)")
    payload.add_argument("--payload-queue", type=int, default=P.queue_size, metavar="N",
                         help="records waiting for the writer before new ones are dropped (default %(default)s)")
    payload.add_argument("--payload-queue-bytes", type=int, default=P.queue_bytes,
                         help="and at most this many bytes of inputs waiting (default %(default)s)")
    payload.add_argument("--payload-file-bytes", type=int, default=P.file_bytes, help="a new file past this size")
    payload.add_argument("--payload-total-bytes", type=int, default=P.total_bytes,
                         help="delete the oldest files past this total")
    payload.add_argument("--payload-max-age", type=float, default=P.max_age_s, metavar="S",
                         help="delete files older than this (default %(default)s s)")
    sub.add_argument("--triton-timeout", type=float, default=D.triton_timeout_s, metavar="S")
    sub.add_argument("--startup-timeout", type=float, default=D.startup_timeout_s, metavar="S")


def parser() -> argparse.ArgumentParser:
    root = cli.parser("gateway", "A label-aware JSON API and a web page in front of Triton.")
    commands = root.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="serve in the foreground (Ctrl-C stops)")
    _serve_arguments(run)
    run.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    _serve_arguments(commands.add_parser("start", help="serve in the background; returns when ready"))
    for name, text in (("stop", "stop the gateway `start` started"), ("status", "is it up?")):
        commands.add_parser(name, help=text).add_argument("--state-dir", type=Path, default=D.state_dir)
    soak = commands.add_parser("soak", help="a long run of mixed good and hostile traffic through a running gateway")
    soak.add_argument("--url", help="the gateway (default: the one `make start` started, else %s)" % D.url)
    soak.add_argument("--key", help="an API key for every reference model (default: $MODELPORT_API_KEY, else "
                                    "api.key in --state-dir)")
    soak.add_argument("--state-dir", type=Path, default=D.state_dir)
    soak.add_argument("--minutes", type=float, default=30.0)
    soak.add_argument("--connections", type=int, default=8)
    soak.add_argument("--hostile-share", type=float, default=0.1)
    soak.add_argument("--rate", type=float, default=200.0, help="requests/s, all connections together (0: as fast "
                                                                "as it answers; default %(default)s)")
    soak.add_argument("--pid", type=int, help="the gateway's process, whose memory is sampled (default: the one "
                                              "`make start` started)")
    soak.add_argument("--report", type=Path, help="write the summary (JSON) here too")
    keys = commands.add_parser("keys", help="manage API keys (only their SHA-256 digests are stored)")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    add = keys_commands.add_parser("add", help="create a key, print it once, store its digest")
    add.add_argument("--keys-file", type=Path, default=D.keys_file)
    add.add_argument("--models", default="*", help="comma-separated Triton models it may call (default: all)")
    add.add_argument("--rate", type=float, default=None, help="its requests per second (default: the gateway's)")
    add.add_argument("--burst", type=int, default=None)
    add.add_argument("--note", default="")
    add.add_argument("--scopes", default="", help="comma-separated: feedback (POST /v1/feedback), admin "
                                                    "(GET /v1/rollouts/{model}); default none")
    keys_commands.add_parser("list", help="ids, scopes and limits").add_argument("--keys-file", type=Path,
                                                                                 default=D.keys_file)
    return root


def options_from(args: argparse.Namespace) -> GatewayOptions:
    return GatewayOptions(
        host=args.host, port=args.port, triton_url=args.triton, spec=args.spec, repository=args.repository,
        state_dir=args.state_dir, keys_file=args.keys_file or args.state_dir / D.keys_file.name,
        auth=not args.no_auth,
        cors_origins=tuple(args.cors_origin), tls_cert=args.tls_cert, tls_key=args.tls_key,
        access_log=args.access_log,
        limits=Limits(max_body_bytes=args.max_body_bytes, max_json_depth=args.max_json_depth,
                      header_timeout_s=args.header_timeout, body_timeout_s=args.body_timeout,
                      keep_alive_timeout_s=args.keep_alive_timeout,
                      max_request_line_bytes=args.max_request_line_bytes, max_header_bytes=args.max_header_bytes,
                      max_connections=args.max_connections,
                      max_connections_per_client=args.max_connections_per_client,
                      pixels_per_token=args.pixels_per_token),
        tokens=TokenOptions(args.jwt_issuer, args.jwt_audience or "", args.jwt_jwks, args.jwt_models_claim,
                            tuple(args.jwt_algorithm) or TokenOptions.algorithms) if args.jwt_issuer else None,
        trusted_proxies=tuple(args.trusted_proxy), metrics_port=args.metrics_port, metrics_host=args.metrics_host,
        failed_auth=RateLimit(D.failed_auth.rate_per_s, args.failed_auth_burst),
        shedding=Shedding(args.max_in_flight, args.max_pending, args.max_wait, args.retry_after),
        rate_limit=RateLimit(args.rate, args.burst), drift_window=args.drift_window,
        drift_min_samples=args.drift_min_samples, feedback_window=args.feedback_window,
        mirror_max_in_flight=args.mirror_max_in_flight,
        payload_log=PayloadLogOptions(args.payload_log, args.payload_sample, tuple(args.payload_drop),
                                      tuple(args.payload_hash), args.payload_queue, args.payload_queue_bytes,
                                      args.payload_file_bytes,
                                      args.payload_total_bytes, args.payload_max_age) if args.payload_log else None,
        triton_timeout_s=args.triton_timeout,
        startup_timeout_s=args.startup_timeout)


@cli.program("gateway")
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    # the server's imports (FastAPI, uvicorn, tritonclient) take seconds: not for keys or a wrong option
    if args.command == "keys":
        return keys_command(args)
    if args.command == "soak":
        return soak_command(args)
    options = options_from(args) if args.command in ("run", "start") else None
    from gateway import server

    if args.command == "stop":
        return server.stop(args.state_dir)
    if args.command == "status":
        return server.status(args.state_dir)
    if args.command == "start":
        return server.start(options, argv[1:])
    return server.run(options, quiet=args.quiet)


def soak_command(args: argparse.Namespace) -> int:
    import json
    import os

    from gateway import soak

    state_file = args.state_dir / "gateway.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    key = args.key or os.environ.get("MODELPORT_API_KEY") or ""
    if not key and (args.state_dir / "api.key").exists():
        key = (args.state_dir / "api.key").read_text().strip()
    if not key:
        raise OptionsError("soak: no API key: pass --key, set $MODELPORT_API_KEY, or start the gateway with "
                           "`make start` (it writes api.key)")
    if not 0 <= args.hostile_share < 1 or args.minutes <= 0 or args.connections < 1 or args.rate < 0:
        raise OptionsError("soak: --hostile-share is 0..1 (exclusive), --minutes > 0, --connections >= 1, "
                           "--rate >= 0")
    options = soak.SoakOptions(url=args.url or state.get("url", D.url), key=key, minutes=args.minutes,
                               connections=args.connections, hostile_share=args.hostile_share, rate_per_s=args.rate,
                               pid=args.pid or state.get("pid"))
    return soak.run(options, args.report)


def keys_command(args: argparse.Namespace) -> int:
    if args.keys_command == "list":
        for k in api_keys.load(args.keys_file):
            print(f"{k.id}  models={','.join(k.models)}  scopes={','.join(k.scopes) or '-'}  "
                  f"rate={k.rate_per_s or 'default'}/s  "
                  f"burst={k.burst or 'default'}  {k.note}")
        return 0
    key = api_keys.new_key()
    entry = api_keys.add(args.keys_file, key, models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
                         rate_per_s=args.rate, burst=args.burst, note=args.note,
                         scopes=tuple(s.strip() for s in args.scopes.split(",") if s.strip()))
    print(key)
    print(f"(shown once; id {entry.id}, its digest is in {args.keys_file})", file=sys.stderr)
    return 0
