"""Locust users speaking to Triton: KServe v2 over HTTP (FastHttpUser) and over gRPC (tritonclient.grpc).

Both run the same scenarios (`ModelScenarios`): one task per model, tagged with the model's name so `--tags digits`
runs one model, and weighted so that no tags gives the mixed scenario. Users wait 0 s between requests: each one
keeps one request in flight, like a client connection; the number of users is the concurrency.
"""

from __future__ import annotations

import itertools
import random
import time
from functools import lru_cache

import numpy as np
from locust import FastHttpUser, TaskSet, User, constant, tag, task

from tritonclient.utils import InferenceServerException

from loadtest import payloads, v2

# the mixed scenario: mostly raw tensors, some uploaded pictures, a good share of text
WEIGHTS = {"digits": 5, "digits_image": 2, "sentiment": 3}
SAMPLES_PER_MODEL = 256


def add_arguments(parser) -> None:
    group = parser.add_argument_group("modelport users")
    group.add_argument(
        "--encoding", choices=v2.ENCODINGS, default="binary",
        help="HTTP body: KServe v2 binary tensor extension (default) or plain JSON",
    )
    group.add_argument("--grpc-host", default="127.0.0.1:8001", help="Triton's gRPC address for TritonGrpcUser")


class ModelScenarios(TaskSet):
    @tag("digits")
    @task(WEIGHTS["digits"])
    def digits(self) -> None:
        self.user.infer("digits")

    @tag("digits_image")
    @task(WEIGHTS["digits_image"])
    def digits_image(self) -> None:
        self.user.infer("digits_image")

    @tag("sentiment")
    @task(WEIGHTS["sentiment"])
    def sentiment(self) -> None:
        self.user.infer("sentiment")


@lru_cache(maxsize=None)
def http_requests(model: str, encoding: str) -> tuple[v2.HttpInfer, ...]:
    return tuple(v2.http_request(s, encoding) for s in payloads.samples(model, SAMPLES_PER_MODEL))


@lru_cache(maxsize=None)
def grpc_requests(model: str) -> tuple[tuple, ...]:
    import tritonclient.grpc as grpcclient

    built = []
    for sample in payloads.samples(model, SAMPLES_PER_MODEL):
        infer_input = grpcclient.InferInput(sample.input_name, list(sample.array.shape), sample.datatype)
        infer_input.set_data_from_numpy(sample.array)
        built.append((sample, infer_input, grpcclient.InferRequestedOutput(sample.output_name)))
    return tuple(built)


def _cycle(items):
    # each user starts at its own place so concurrent users do not send identical requests in lockstep
    start = random.randrange(len(items))
    return itertools.cycle(items[start:] + items[:start])


class TritonHttpUser(FastHttpUser):
    """KServe v2 over HTTP/1.1 keep-alive; `--encoding json` for the JSON protocol. Use `--host http://HOST:8000`."""

    tasks = [ModelScenarios]
    wait_time = constant(0)

    def on_start(self) -> None:
        self._encoding = self.environment.parsed_options.encoding if self.environment.parsed_options else "binary"
        self._requests = {}

    def infer(self, model: str) -> None:
        if model not in self._requests:  # built on first use: a tag-selected run loads only its own dataset
            self._requests[model] = _cycle(http_requests(model, self._encoding))
        request = next(self._requests[model])
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


class GrpcInferError(RuntimeError):
    """A gRPC inference the server refused or failed; Locust groups failures by this message."""


class TritonGrpcUser(User):
    """KServe v2 over gRPC via tritonclient.grpc, reported to Locust as request_type "grpc". Use `--grpc-host`."""

    tasks = [ModelScenarios]
    wait_time = constant(0)

    def on_start(self) -> None:
        import tritonclient.grpc as grpcclient

        url = self.environment.parsed_options.grpc_host if self.environment.parsed_options else "127.0.0.1:8001"
        self.client = grpcclient.InferenceServerClient(url=url)
        self._requests = {}

    def on_stop(self) -> None:
        self.client.close()

    def infer(self, model: str) -> None:
        if model not in self._requests:
            self._requests[model] = _cycle(grpc_requests(model))
        sample, infer_input, output = next(self._requests[model])
        start = time.perf_counter()
        exception = None
        length = 0
        try:
            result = self.client.infer(model, [infer_input], outputs=[output])
            probabilities = result.as_numpy(sample.output_name)
            if probabilities is None or probabilities.shape[0] != sample.array.shape[0] or not np.all(
                np.isfinite(probabilities)
            ):
                raise ValueError(
                    f"{model}: output {sample.output_name!r} expected {sample.array.shape[0]} finite rows, "
                    f"got {None if probabilities is None else probabilities.shape}"
                )
            length = result.get_response().ByteSize()
        except InferenceServerException as error:  # its repr is empty: keep the status and the server's message
            exception = GrpcInferError(f"{model}: {error.status()} {error.message()}")
        except Exception as error:  # every failure is a failed request in the statistics, never a crashed user
            exception = error
        self.environment.events.request.fire(
            request_type="grpc",
            name=model,
            response_time=(time.perf_counter() - start) * 1000,
            response_length=length,
            exception=exception,
            context={},
        )
