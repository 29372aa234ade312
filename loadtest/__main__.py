"""`make loadtest`: a bounded headless Locust run (about a minute) against the running server, with an SLO gate.

    python -m loadtest                                  # mixed scenario, HTTP + gRPC users, 60 s, default SLOs
    python -m loadtest --duration 20 --users 8 -- --tags digits --encoding json
    python -m loadtest --spec my/models.toml -- --tags my_model     # any served model of a spec, by Triton name
    python -m loadtest --gateway http://127.0.0.1:8080              # the same scenarios through the gateway
    python -m loadtest --gateway http://127.0.0.1:8080 --feedback-share 0.2    # + the truth of one request in 5

Everything after `--` goes to Locust unchanged. The report (Locust CSV + HTML, summary.md with microsecond percentiles
and Triton's side, timeline.png) lands in reports/loadtest-<time>/, printed at the end. Exit code: Locust's (3 when an
SLO is missed).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from core import cli, process
from core.errors import ServerError, UserError

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = REPO_ROOT / "loadtest" / "locustfile.py"
GATEWAY_LOCUSTFILE = REPO_ROOT / "loadtest" / "gateway_locustfile.py"
READY_WAIT_S = 10.0


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    extra: list[str] = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1:]
        argv = argv[: argv.index("--")]
    parser = cli.parser("loadtest", __doc__.split("\n")[0])
    parser.add_argument("--http-url", default="127.0.0.1:8000", help="Triton HTTP address")
    parser.add_argument("--grpc-url", default="127.0.0.1:8001", help="Triton gRPC address")
    parser.add_argument("--metrics-url", default="127.0.0.1:8002", help="Triton metrics address")
    parser.add_argument("--users", type=int, default=16, help="concurrent users (each keeps one request in flight)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument(
        "--user-class", action="append", choices=("TritonHttpUser", "TritonGrpcUser"), default=None,
        help="repeatable; default both (users split evenly)",
    )
    parser.add_argument("--gateway", default=None, metavar="URL",
                        help="load-test through the gateway at URL (e.g. http://127.0.0.1:8080; its key from "
                             "--gateway-key or $MODELPORT_API_KEY) instead of Triton's own endpoints")
    parser.add_argument("--gateway-key", default=None, help="API key for --gateway (default $MODELPORT_API_KEY)")
    parser.add_argument("--feedback-share", type=float, default=0.0, metavar="SHARE",
                        help="with --gateway: the share of predict requests followed by POST /v1/feedback with the "
                             "held-out row's true label (the key needs the feedback scope; docs/loadtest.md)")
    parser.add_argument("--spec", type=Path, default=None,
                        help="the models.toml whose models are load-tested (default: the repository's)")
    parser.add_argument("--report-dir", type=Path, default=None, help="default reports/loadtest-<UTC time>")
    # defaults loose enough for a shared 2-core machine, tight enough to catch a broken server
    parser.add_argument("--slo-p99-ms", type=float, default=250.0)
    parser.add_argument("--slo-error-rate", type=float, default=0.0)
    parser.add_argument("--slo-min-rps", type=float, default=50.0)
    return parser.parse_args(argv), extra


def check_server(http_url: str, wait_s: float = READY_WAIT_S) -> None:
    """Triton answers ready within wait_s: while it reloads a model (a rollout action), a strict-readiness server
    says not ready for a second or two, and a load test started then should not fail for it."""
    url = f"http://{http_url}/v2/health/ready"
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
                problem = f"HTTP {response.status}"
        except urllib.error.HTTPError as error:
            problem = f"HTTP {error.code}"
        except OSError as error:
            problem = repr(error)
        if time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    raise ServerError(
        f"Triton is not ready at {url} ({problem}, for {wait_s:g} s). Start it with `make start` (or point "
        f"--http-url/--grpc-url/--metrics-url at your server)."
    )


def locust_command(args: argparse.Namespace, extra: list[str], report_dir: Path) -> list[str]:
    # user classes first: a trailing `--tags a b` in extra would swallow them as more tags
    through = ("-f", str(GATEWAY_LOCUSTFILE)) if args.gateway else ("-f", str(LOCUSTFILE), *(args.user_class or ()))
    return [
        sys.executable, "-m", "locust", *through, "--headless",
        "-u", str(args.users), "-r", str(args.users), "-t", f"{int(args.duration)}s",
        "--host", args.gateway or f"http://{args.http_url}", "--grpc-host", args.grpc_url,
        "--metrics-url", args.metrics_url,
        "--csv", str(report_dir / "locust"), "--csv-full-history", "--html", str(report_dir / "locust.html"),
        "--report-dir", str(report_dir), "--only-summary",
        "--slo-p99-ms", str(args.slo_p99_ms), "--slo-error-rate", str(args.slo_error_rate),
        "--slo-min-rps", str(args.slo_min_rps),
        *(("--spec", str(args.spec.resolve())) if args.spec else ()),
        *(("--feedback-share", str(args.feedback_share)) if args.feedback_share else ()),
        *extra,
    ]


@cli.program("loadtest")
def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(sys.argv[1:] if argv is None else argv)
    if args.feedback_share and not args.gateway:
        raise UserError("--feedback-share needs --gateway URL: feedback goes to the gateway's POST /v1/feedback")
    check_server(args.http_url)
    report_dir = args.report_dir or REPO_ROOT / "reports" / time.strftime("loadtest-%Y%m%d-%H%M%S", time.gmtime())
    report_dir.mkdir(parents=True, exist_ok=True)
    command = locust_command(args, extra, report_dir)
    print("running:", " ".join(command), flush=True)
    # the key goes in the environment, not on Locust's command line, where every local user could read it
    env = {**os.environ, "MODELPORT_API_KEY": args.gateway_key} if args.gateway_key else None
    # Its output is ours; on Ctrl-C or SIGTERM it gets a SIGINT, as from the terminal, and writes its report.
    with process.Child("locust", command, None, env=env, cwd=REPO_ROOT, stop_signal=signal.SIGINT).spawn() as locust:
        code = locust.wait()
    print(f"\nload test report: {report_dir}/ (locust.html, locust_stats.csv, summary.md, timeline.png)")
    print(f"locust exit code {code}" + (" (SLO missed)" if code == 3 else ""))
    return code


if __name__ == "__main__":
    sys.exit(main())
