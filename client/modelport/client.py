"""`Client`: the synchronous front of modelport. Validates, splits, sends with retries, reassembles."""

from __future__ import annotations

import time
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from . import chunking, predictions
from .errors import AccessDenied, ModelportError, ServerUnavailable
from .metadata import ModelInfo, ModelMetadata, parse_config, parse_metadata, parse_repository_index
from .retry import NO_RETRY, RetryPolicy, send_with_retry
from .transport import InferRequest, TransportOptions, make_transport
from .validation import Inputs, Signature, check_outputs, prepare_inputs

Retries = Union[int, RetryPolicy]


def retry_policy(retries: Retries) -> RetryPolicy:
    if isinstance(retries, RetryPolicy):
        return retries
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries takes a count >= 0 or a RetryPolicy, got {retries!r}")
    return RetryPolicy(retries=retries) if retries else NO_RETRY


def plan_requests(signature: Signature, inputs: Inputs, outputs: Optional[Sequence[str]],
                  class_count: Optional[int], version: str) -> list[InferRequest]:
    """Validate the inputs and cut them into requests no larger than the model's max_batch_size."""
    prepared = prepare_inputs(signature, inputs)
    chosen = check_outputs(signature.metadata, outputs, class_count)
    return [
        InferRequest(model=signature.metadata.name, version=version, inputs=chunk, datatypes=prepared.datatypes,
                     outputs=chosen, class_count=class_count)
        for chunk in chunking.split(prepared.arrays, prepared.batch_size, signature.max_batch_size)
    ]


def _version(version: Union[int, str, None]) -> str:
    return "" if version is None else str(version)


class Client:
    """A client for one Triton server.

    url is host:port without a scheme ("127.0.0.1:8000" for HTTP, "127.0.0.1:8001" for gRPC). `timeout` (seconds)
    bounds every attempt of every call; `retries` (a count or a RetryPolicy) applies to inference and metadata reads;
    `headers` go with every call (e.g. {"modelport-admin-key": key} for models()). Metadata and config are cached
    per client: create a new client after reloading a model with a different signature. Over HTTP a client belongs
    to one thread (tritonclient.http is not thread-safe); a gRPC client may be shared.
    """

    def __init__(self, url: str = "127.0.0.1:8000", protocol: str = "http", timeout: float = 60.0,
                 retries: Retries = 3, headers: Optional[Mapping[str, str]] = None, ssl: Any = False,
                 concurrency: int = 4, transport: Any = None):
        self.options = TransportOptions(url=url, protocol=protocol, timeout_s=timeout, headers=headers, ssl=ssl,
                                        concurrency=concurrency)
        self.retry = retry_policy(retries)
        # `transport` replaces the tritonclient adapter (see modelport.transport), e.g. with a fake in unit tests.
        self._transport = transport if transport is not None else make_transport(self.options)
        self._signatures: dict[tuple[str, str], Signature] = {}
        self._configs: dict[tuple[str, str], Any] = {}

    def __repr__(self) -> str:
        return f"Client({self.options.url!r}, protocol={self.options.protocol!r})"

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._transport.close()

    def _read(self, method: str, *args):
        """Idempotent reads are retried like inference."""
        def send(_):
            try:
                return [getattr(self._transport, method)(*args)]
            except ModelportError as error:
                return [error]
        return send_with_retry(send, [None], self.retry)[0]

    # Server
    def is_live(self) -> bool:
        """False when the server cannot be reached."""
        try:
            return bool(self._transport.is_live())
        except ServerUnavailable:
            return False

    def is_ready(self) -> bool:
        try:
            return bool(self._transport.is_ready())
        except ServerUnavailable:
            return False

    def wait_until_ready(self, timeout: float = 60.0, model: Optional[str] = None) -> None:
        """Poll until the server (and `model`, if given) is ready, or raise ServerUnavailable after `timeout` s."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            try:
                if self._transport.is_ready() and (model is None or self._transport.is_model_ready(model, "")):
                    return
                last = "server or model not ready yet"
            except ModelportError as error:
                last = error.message
            if time.monotonic() + delay > deadline:
                raise ServerUnavailable(f"{self.options.url} not ready{' for ' + model if model else ''} after "
                                        f"{timeout:g}s: {last}", model=model)
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def models(self) -> tuple[ModelInfo, ...]:
        """Every model in the repository; the repository API is restricted, so pass the admin header."""
        return parse_repository_index(self._read("repository_index"))

    # Models
    def metadata(self, model: str, version: Union[int, str, None] = None) -> ModelMetadata:
        return self._signature(model, _version(version)).metadata

    def config(self, model: str, version: Union[int, str, None] = None):
        """The model's configuration as Triton's `ModelConfig` protobuf message."""
        key = (model, _version(version))
        if key not in self._configs:
            self._configs[key] = parse_config(self._read("config", model, key[1]))
        return self._configs[key]

    def _signature(self, model: str, version: str) -> Signature:
        key = (model, version)
        if key not in self._signatures:
            metadata = parse_metadata(self._read("metadata", model, version))
            try:
                max_batch_size: Optional[int] = self.config(model, version).max_batch_size
            except AccessDenied:  # model-config may be restricted: keep the batch axis, skip splitting
                max_batch_size = None
            self._signatures[key] = Signature(metadata=metadata, max_batch_size=max_batch_size)
        return self._signatures[key]

    def infer(self, model: str, inputs: Inputs, outputs: Optional[Sequence[str]] = None,
              class_count: Optional[int] = None, version: Union[int, str, None] = None,
              timeout: Optional[float] = None) -> dict[str, np.ndarray]:
        """Run `model` on `inputs` (name -> array, or one array for a single-input model).

        Returns output name -> array. With `class_count`, each requested output holds the classification
        extension's top-k strings b"score:index:label" instead of raw values.
        """
        version_text = _version(version)
        requests = plan_requests(self._signature(model, version_text), inputs, outputs, class_count, version_text)
        timeout_s = timeout if timeout is not None else self.options.timeout_s
        if timeout_s <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout_s!r}")
        parts = send_with_retry(lambda pending: self._transport.infer_many(pending, timeout_s), requests,
                                self.retry)
        return chunking.join(parts)

    # Contract models
    def classify_digits(self, images: Any, model: str = "digits"):
        """8x8 images, 0..255, ink bright on dark: one image -> Prediction, a batch -> list of Predictions."""
        batch, single = predictions.digits_batch(images)
        result = self.infer(model, batch, outputs=[predictions.PROBABILITIES])
        return predictions.to_predictions(result[predictions.PROBABILITIES], predictions.DIGIT_LABELS, single)

    def classify_images(self, images: Any, model: str = "digits_image"):
        """Encoded images (paths, bytes or PIL images) of a handwritten digit, decoded by the server."""
        batch, single = predictions.image_batch(images)
        result = self.infer(model, batch, outputs=[predictions.PROBABILITIES])
        return predictions.to_predictions(result[predictions.PROBABILITIES], predictions.DIGIT_LABELS, single)

    def sentiment(self, texts: Any, model: str = "sentiment"):
        """A string -> Prediction ("negative"/"positive"); a list of strings -> list of Predictions."""
        batch, single = predictions.text_batch(texts)
        result = self.infer(model, batch, outputs=[predictions.PROBABILITIES])
        return predictions.to_predictions(result[predictions.PROBABILITIES], predictions.SENTIMENT_LABELS, single)
