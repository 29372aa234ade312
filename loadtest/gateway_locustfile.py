"""The load test through the gateway: the spec's scenarios, the label-aware JSON API, the same report and SLO gate.

    locust -f loadtest/gateway_locustfile.py --headless -u 16 -t 1m --host http://127.0.0.1:8080 \
           --gateway-key "$(cat .cache/gateway/api.key)" --metrics-url 127.0.0.1:8002
    python -m loadtest --gateway http://127.0.0.1:8080            # the same, bounded, with the report
    locust -f loadtest/gateway_locustfile.py ... --feedback-share 0.2    # + POST /v1/feedback for one request in 5
    locust -f loadtest/gateway_locustfile.py ... -u 4 --throughput-per-user 25   # an offered load of 100 req/s

Options, tags, shapes and SLOs are those of loadtest/locustfile.py (imported, so its listeners and its load shape
apply here too); its Triton users are not in this file's namespace, so Locust runs only GatewayUser.
`--feedback-share` follows that share of the successful predict requests of held-out rows with their true label
(loadtest/feedback.py); the key then needs the `feedback` scope.
"""

import sys
from pathlib import Path

_REPO_ROOT = str(Path(__file__).resolve().parents[1])
if _REPO_ROOT not in sys.path:
    sys.path.append(_REPO_ROOT)

import logging  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402

from locust import FastHttpUser, constant_throughput, events  # noqa: E402
from locust.runners import WorkerRunner  # noqa: E402

import loadtest.locustfile as base  # noqa: E402  (registers the shared options, report and SLO gate)
from core.measure import gateway_payloads, payloads  # noqa: E402
from loadtest.locustfile import OptionShape  # noqa: E402,F401  (Locust finds the load shape by its name here)
from loadtest import feedback  # noqa: E402
from loadtest.users import _cycle  # noqa: E402

API_KEY_ENV = "MODELPORT_API_KEY"


class GatewayUser(FastHttpUser):
    """The spec's scenarios through the gateway over HTTP/1.1 keep-alive. Use `--host http://HOST:8080`; the key is
    `--gateway-key`, else $MODELPORT_API_KEY."""

    tasks = [base.ModelScenarios]

    def on_start(self) -> None:
        options = self.environment.parsed_options  # None when run as a library: the defaults below
        key = getattr(options, "gateway_key", "") or os.environ.get(API_KEY_ENV, "")
        self._headers = {"Content-Type": "application/json", "Accept-Encoding": "identity",
                         **({"Authorization": f"Bearer {key}"} if key else {})}
        self._requests = {}
        self._feedback_share = getattr(options, "feedback_share", 0.0)
        rate = getattr(options, "throughput_per_user", 0.0)
        self._pacing = constant_throughput(rate) if rate > 0 else None

    def wait_time(self) -> float:
        # as fast as it can by default: one request in flight per user, like a client connection
        return self._pacing(self) if self._pacing else 0.0

    def infer(self, target: payloads.Target) -> None:
        if target not in self._requests:  # each request with the truth of its row, in step
            truths = feedback.truths(target) if self._feedback_share else None
            requests = gateway_payloads.gateway_requests(target)
            self._requests[target] = _cycle(tuple(zip(requests, truths or (None,) * len(requests))))
        request, truth = next(self._requests[target])
        request_id = None
        with self.client.post(request.path, data=request.body, headers=self._headers, name=request.name,
                              catch_response=True) as response:
            if response.status_code == 0:
                response.failure(f"no response from {self.host}{request.path}: {response.error!r}")
                return
            error = gateway_payloads.response_error(response.status_code, response.content, request)
            if error:
                response.failure(error)
                return
            response.success()
            request_id = response.headers.get("X-Request-ID")
        if truth is not None and request_id and random.random() < self._feedback_share:
            self.send_feedback(request_id, truth)

    def send_feedback(self, request_id: str, truth: dict) -> None:
        with self.client.post(feedback.PATH, data=feedback.body(request_id, truth), headers=self._headers,
                              name=feedback.NAME, catch_response=True) as response:
            if response.status_code == 0:
                response.failure(f"no response from {self.host}{feedback.PATH}: {response.error!r}")
                return
            error = feedback.response_error(response.status_code, response.content)
            if error:
                response.failure(error)
            else:
                response.success()


@events.init_command_line_parser.add_listener
def _add_arguments(parser) -> None:
    # on the parser itself, not a group: only Locust's own add_argument takes include_in_web_ui (a key stays off it)
    parser.add_argument("--gateway-key", default="", include_in_web_ui=False,
                        help=f"API key for GatewayUser (default ${API_KEY_ENV}; `make start` prints where it is)")
    parser.add_argument("--feedback-share", type=float, default=0.0,
                        help="share of successful predict requests (held-out rows) followed by POST /v1/feedback "
                             "with the row's true label or value (0..1; default 0: none). The gateway needs "
                             "--feedback-window, the key the feedback scope")
    parser.add_argument("--throughput-per-user", type=float, default=0.0, metavar="RPS",
                        help="predict requests per second each user aims at (default 0: as many as it can); "
                             "-u users x RPS is the offered load")


@events.init.add_listener
def _check_options(environment, **_kwargs) -> None:
    options = environment.parsed_options
    if options is None or isinstance(environment.runner, WorkerRunner):
        return
    problem = feedback.check_share(options.feedback_share) or (
        f"--throughput-per-user {options.throughput_per_user:g}: requests per second, > 0 (or 0: as many as "
        f"each user can)" if options.throughput_per_user < 0 else None)
    if problem:
        logging.getLogger("loadtest").error("%s", problem)
        sys.exit(2)
    if not options.feedback_share:
        return
    selected, _ = payloads.select(base.CATALOGUE, options.tags, options.exclude_tags)
    without = [t.name for t in selected if not any(feedback.truths(t))]
    if without:
        logging.getLogger("loadtest").warning("no feedback for %s: its payloads have no held-out truth (only models "
                                              "load-tested from `heldout` rows with targets get feedback)",
                                              ", ".join(without))
