"""modelport's locustfile: Triton over KServe v2 HTTP and gRPC, load shapes, SLO gate, microsecond report.

    locust -f loadtest/locustfile.py --host http://127.0.0.1:8000                      # web UI on :8089
    locust -f loadtest/locustfile.py --headless -u 16 -r 16 -t 1m --host http://127.0.0.1:8000 TritonHttpUser
    locust -f loadtest/locustfile.py ... --tags digits --encoding json --slo-p99-ms 50 --slo-error-rate 0.01
    locust -f loadtest/locustfile.py ... --spec path/to/models.toml --tags my_model

User classes (positional names pick them; none = both, users split evenly): TritonHttpUser, TritonGrpcUser.
Scenarios come from the spec (--spec, else $MODELPORT_SPEC, else the repository's models.toml): --tags <Triton model
name> runs that model (variants included); no tags = the mixed scenario, weighted by each model's loadtest_weight.
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
from locust.runners import WorkerRunner  # noqa: E402

from core.errors import SpecError  # noqa: E402
from core.spec import load_spec  # noqa: E402
from core.measure import payloads  # noqa: E402
from loadtest import hdr, report, shapes, slo, users  # noqa: E402

_log = logging.getLogger("loadtest")

# Locust builds its task lists when it imports this file, before it parses options: the spec is read now.
SPEC_PATH = payloads.spec_path(sys.argv[1:])
try:
    CATALOGUE = payloads.targets(load_spec(SPEC_PATH))
except SpecError as error:
    sys.exit(f"loadtest: {error}")

ModelScenarios = users.model_scenarios(CATALOGUE)


class TritonHttpUser(users.HttpModelUser):
    """The spec's scenarios over HTTP (loadtest/users.py)."""

    tasks = [ModelScenarios]


class TritonGrpcUser(users.GrpcModelUser):
    """The spec's scenarios over gRPC (loadtest/users.py)."""

    tasks = [ModelScenarios]


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
    # a worker learns the tags from the master only when the test starts; the master (or a local run) checks for it
    if environment.parsed_options is not None and not isinstance(environment.runner, WorkerRunner):
        _check_scenario(environment.parsed_options)


def _check_scenario(options) -> None:
    """Select the scenario and build its payloads now, so a bad tag or a missing file stops the run with its reason
    instead of failing every request."""
    try:
        selected, notes = payloads.select(CATALOGUE, options.tags, options.exclude_tags)
        for note in notes:
            _log.warning("%s", note)
        for target in selected:
            users.http_requests(target, options.encoding)
    except (payloads.ScenarioError, payloads.PayloadUnavailable) as error:
        _log.error("cannot run the load test (spec %s): %s", SPEC_PATH, error)
        sys.exit(2)
    _log.info("scenario from %s: %s", SPEC_PATH,
              ", ".join(f"{t.name} ({t.weight})" if not options.tags else t.name for t in selected))
