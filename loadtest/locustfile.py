"""modelport's locustfile: Triton over KServe v2 HTTP and gRPC, load shapes, SLO gate, microsecond report.

    locust -f loadtest/locustfile.py --host http://127.0.0.1:8000                      # web UI on :8089
    locust -f loadtest/locustfile.py --headless -u 16 -r 16 -t 1m --host http://127.0.0.1:8000 TritonHttpUser
    locust -f loadtest/locustfile.py ... --tags digits --encoding json --slo-p99-ms 50 --slo-error-rate 0.01

User classes (positional names pick them; none = both, users split evenly): TritonHttpUser, TritonGrpcUser.
Scenarios: --tags digits | digits_image | sentiment; no tags = the weighted mixed scenario.
Shapes: --shape constant|step|spike|soak (see `locust -f loadtest/locustfile.py --help`).
"""

import sys
from pathlib import Path

# Locust imports this file by path with only its own folder (and the cwd) on sys.path, and afterwards deletes
# sys.path[0]; appending the repository root survives that, so `loadtest` and `export` import from any cwd.
_REPO_ROOT = str(Path(__file__).resolve().parents[1])
if _REPO_ROOT not in sys.path:
    sys.path.append(_REPO_ROOT)

# grpcio blocks the whole gevent loop unless told to cooperate; must run before any channel is created.
# https://docs.locust.io/en/stable/testing-other-systems.html (gRPC example)
import grpc.experimental.gevent as grpc_gevent  # noqa: E402

grpc_gevent.init_gevent()

import logging  # noqa: E402

from locust import LoadTestShape, events  # noqa: E402

from loadtest import hdr, payloads, report, shapes, slo, users  # noqa: E402
from loadtest.users import TritonGrpcUser, TritonHttpUser  # noqa: E402,F401


class OptionShape(LoadTestShape):
    """The one shape Locust finds here; `--shape` and its options pick the plan (loadtest/shapes.py)."""

    # -u/-r/-t keep their meaning (and the web UI's fields stay live) instead of being ignored because a shape exists
    use_common_options = True

    def tick(self):
        return shapes.plan_from_options(self.runner.environment.parsed_options).at(self.get_run_time())


@events.init_command_line_parser.add_listener
def _add_arguments(parser) -> None:
    users.add_arguments(parser)
    shapes.add_arguments(parser)
    slo.add_arguments(parser)
    report.add_arguments(parser)


@events.init.add_listener
def _on_init(environment, **_kwargs) -> None:
    recorder = hdr.LatencyRecorder().attach(environment.events)
    slo.attach(environment, recorder)  # first: quitting listeners run last-registered first, the gate goes last
    report.RunReport(environment, recorder).attach()
    if environment.parsed_options is not None:
        _build_payloads(environment.parsed_options)


def _build_payloads(options) -> None:
    """Load the selected scenarios' datasets now, so a missing one stops the run with its reason instead of failing
    every request."""
    selected = [m for m in payloads.MODELS if (not options.tags or m in options.tags)
                and m not in (options.exclude_tags or [])]
    try:
        for model in selected:
            users.http_requests(model, options.encoding)
    except payloads.PayloadUnavailable as error:
        logging.getLogger("loadtest").error("cannot build payloads: %s", error)
        sys.exit(2)
