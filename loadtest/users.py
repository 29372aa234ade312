"""Locust users speaking to Triton: KServe v2 over HTTP (FastHttpUser) and over gRPC (tritonclient.grpc).

Both run the same scenarios, built from the spec (`model_scenarios`): one task per served model, tagged with its
Triton name so `--tags digits_int8` runs one model; no tags is the mixed scenario, weighted by `loadtest_weight`.
Users wait 0 s between requests: each one keeps one request in flight, like a client connection; the number of users
is the concurrency.
"""

from __future__ import annotations

import itertools
import random
import time
from functools import lru_cache

from locust import FastHttpUser, TaskSet, User, constant, tag
from tritonclient.utils import InferenceServerException

from core.errors import ServerError
from core.measure import payloads, v2


def add_arguments(parser) -> None:
    group = parser.add_argument_group("modelport users")
    group.add_argument(
        "--spec", default=str(payloads.spec_path([])),
        help=f"the models.toml whose models get tasks (default ${payloads.SPEC_ENV} or the repository's; read when "
             f"the locustfile is imported, so distributed workers need it too: pass it or set ${payloads.SPEC_ENV})",
    )
    group.add_argument(
        "--encoding", choices=v2.ENCODINGS, default="binary",
        help="HTTP body: KServe v2 binary tensor extension (default) or plain JSON",
    )
    group.add_argument("--grpc-host", default="127.0.0.1:8001", help="Triton's gRPC address for TritonGrpcUser")


class ModelScenarios(TaskSet):
    """Holds one task per target (subclasses made by `model_scenarios`). Locust's tag filter leaves the selected
    ones; each instance then repeats them by weight: the spec's `loadtest_weight` in the mixed scenario (0 leaves a
    model out, so variants only run when tagged), at least 1 for a model picked by tag."""

    def on_start(self) -> None:
        options = self.user.environment.parsed_options
        tagged = bool(options is not None and options.tags)
        # an instance attribute: the class's (filtered) list stays as Locust left it
        self.tasks = [t for t in self.tasks for _ in range(payloads.share(t.target, tagged))]


def model_scenarios(catalogue: tuple[payloads.Target, ...]) -> type[ModelScenarios]:
    """A ModelScenarios with a tagged task for every target that has payloads."""
    return type("ModelScenarios", (ModelScenarios,), {"tasks": [_task(t) for t in catalogue if t.source]})


def _task(target: payloads.Target):
    def call(taskset: TaskSet) -> None:
        taskset.user.infer(target)

    call.__name__ = call.__qualname__ = target.name
    call.target = target
    return tag(target.name)(call)


@lru_cache(maxsize=None)
def http_requests(target: payloads.Target, encoding: str) -> tuple[v2.HttpInfer, ...]:
    return tuple(v2.http_request(s, encoding) for s in payloads.samples(target))


@lru_cache(maxsize=None)
def grpc_requests(target: payloads.Target) -> tuple[tuple, ...]:
    import tritonclient.grpc as grpcclient

    built = []
    for sample in payloads.samples(target):
        inputs = []
        for tensor in sample.inputs:
            infer_input = grpcclient.InferInput(tensor.name, list(tensor.array.shape), tensor.datatype)
            infer_input.set_data_from_numpy(tensor.array)
            inputs.append(infer_input)
        built.append((sample, inputs, [grpcclient.InferRequestedOutput(name) for name in sample.outputs]))
    return tuple(built)


def _cycle(items):
    # each user starts at its own place so concurrent users do not send identical requests in lockstep
    start = random.randrange(len(items))
    return itertools.cycle(items[start:] + items[:start])


class HttpModelUser(FastHttpUser):
    """KServe v2 over HTTP/1.1 keep-alive; `--encoding json` for the JSON protocol. Use `--host http://HOST:8000`."""

    abstract = True  # the locustfile's TritonHttpUser gives it the spec's tasks
    wait_time = constant(0)

    def on_start(self) -> None:
        self._encoding = self.environment.parsed_options.encoding if self.environment.parsed_options else "binary"
        self._requests = {}

    def infer(self, target: payloads.Target) -> None:
        if target not in self._requests:  # built on first use: a tag-selected run loads only its own payloads
            self._requests[target] = _cycle(http_requests(target, self._encoding))
        request = next(self._requests[target])
        with self.client.post(
            request.path, data=request.body, headers=request.headers, name=request.name, catch_response=True
        ) as response:
            if response.status_code == 0:  # no HTTP response at all: connection refused, reset, timeout
                response.failure(f"no response from {self.host}{request.path}: {response.error!r}")
                return
            error = v2.response_error(response.status_code, response.content, response.headers, request)
            if error:
                response.failure(error)
            else:
                response.success()


class GrpcInferError(ServerError):
    """A gRPC inference the server refused or failed; Locust groups failures by this message."""


class GrpcModelUser(User):
    """KServe v2 over gRPC via tritonclient.grpc, reported to Locust as request_type "grpc". Use `--grpc-host`."""

    abstract = True  # the locustfile's TritonGrpcUser gives it the spec's tasks
    wait_time = constant(0)

    def on_start(self) -> None:
        import tritonclient.grpc as grpcclient

        url = self.environment.parsed_options.grpc_host if self.environment.parsed_options else "127.0.0.1:8001"
        self.client = grpcclient.InferenceServerClient(url=url)
        self._requests = {}

    def on_stop(self) -> None:
        self.client.close()

    def infer(self, target: payloads.Target) -> None:
        if target not in self._requests:
            self._requests[target] = _cycle(grpc_requests(target))
        sample, inputs, outputs = next(self._requests[target])
        start = time.perf_counter()
        exception = None
        length = 0
        try:
            result = self.client.infer(target.name, inputs, outputs=outputs)
            problem = v2.outputs_error(target.name, {name: result.as_numpy(name) for name in sample.outputs},
                                       sample.rows)
            if problem:
                raise ValueError(problem)
            length = result.get_response().ByteSize()
        except InferenceServerException as error:  # its repr is empty: keep the status and the server's message
            exception = GrpcInferError(f"{target.name}: {error.status()} {error.message()}")
        except Exception as error:  # every failure is a failed request in the statistics, never a crashed user
            exception = error
        self.environment.events.request.fire(
            request_type="grpc",
            name=target.name,
            response_time=(time.perf_counter() - start) * 1000,
            response_length=length,
            exception=exception,
            context={},
        )
