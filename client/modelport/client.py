"""`Client`: the synchronous front of modelport. Validates, splits, sends with retries, reassembles."""

from __future__ import annotations

import time
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from . import chunking, explain as explaining, inputs as friendly
from .errors import AccessDenied, ModelportError, ServerUnavailable
from .explain import DEFAULT_BUDGET, ExplainOptions, Explanation
from .metadata import ModelInfo, ModelMetadata, parse_config, parse_metadata, parse_repository_index
from .predictions import (PROBABILITIES, ModelOutput, check_top, label_candidates, parse_labels, predictions_of,
                          to_outputs)
from .retry import NO_RETRY, RetryPolicy, send_with_retry
from .transport import InferRequest, TransportOptions, make_transport
from .validation import Inputs, Signature, check_outputs, prepare_inputs

Retries = Union[int, RetryPolicy]
Labels = dict[str, Optional[tuple[str, ...]]]  # output name -> labels by class index (None: the output has none)
PredictResult = Union[ModelOutput, list[ModelOutput]]


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


def first_item(batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The request that asks the server for labels: one item is enough, the labels are the same for every item."""
    return {name: array[:1] for name, array in batch.items()}


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
        self._labels: dict[tuple[str, str], Labels] = {}

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
                config = self.config(model, version)
            except AccessDenied:  # model-config may be restricted: keep the batch axis, skip splitting
                config = None
            self._signatures[key] = Signature.of(metadata, config)
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

    def predict(self, model: str, inputs: Any, top: Optional[int] = None, outputs: Optional[Sequence[str]] = None,
                version: Union[int, str, None] = None, timeout: Optional[float] = None) -> PredictResult:
        """Run `model` and name its answers: one item in -> one `ModelOutput`, a batch -> a list of them.

        `inputs`: a dict by input name, or the value itself for a single-input model; numpy arrays, nested lists,
        and for BYTES (TYPE_STRING) inputs str (sent as UTF-8), bytes, pathlib paths (the file's bytes) or PIL
        images (PNG). An item whose shape is the model's dims (or a single string) is one item; with a leading
        batch axis (or a list of strings) it is a batch. Each ModelOutput maps output name -> `Prediction` for the
        outputs that have labels on the server (with `top`, its `scores` keep the `top` best), and -> np.ndarray
        for the others; `.prediction` is the only labelled output's Prediction.
        """
        version_text = _version(version)
        signature = self._signature(model, version_text)
        check_top(model, top)
        batch, single = friendly.to_batch(signature, inputs)
        batch = prepare_inputs(signature, batch).arrays  # refuse bad inputs before asking for labels
        chosen = check_outputs(signature.metadata, outputs, None)
        labels = self._labels_for(signature, version_text, chosen, batch, timeout)
        raw = self.infer(model, batch, outputs=chosen, version=version, timeout=timeout)
        return to_outputs(model, raw, labels, single, signature.batched, top)

    def explain(self, model: str, inputs: Any, method: Optional[str] = None, output: Optional[str] = None,
                budget: int = DEFAULT_BUDGET, baseline: Any = None, patch: Optional[int] = None, seed: int = 0,
                version: Union[int, str, None] = None, timeout: Optional[float] = None) -> Explanation:
        """Why `model` answers what it does for one item (`inputs` as predict takes them), per class of `output`.

        The method follows the input (modelport.explain): an occlusion heatmap for an image, leave-one-word-out for
        text, Kernel SHAP for other tensors; `method` forces one. At most `budget` requests of max_batch_size items
        are sent. `baseline` is the reference input (occlusion's fill value, Kernel SHAP's row; default zeros).
        """
        options = ExplainOptions(method=method, output=output, budget=budget, baseline=baseline, patch=patch,
                                 seed=seed)
        version_text = _version(version)
        signature = self._signature(model, version_text)
        batch, _ = friendly.to_batch(signature, inputs)
        batch = prepare_inputs(signature, batch).arrays
        item = explaining.one_item(signature, batch)
        config = self._config_or_none(model, version_text)
        chosen = explaining.choose_output(signature.metadata, config, options.output)
        labels = self._labels_for(signature, version_text, [chosen], batch, timeout).get(chosen)
        target = explaining.Target(signature=signature, config=config, output=chosen, labels=labels)

        def run(items):
            return self.infer(model, items, outputs=[chosen], version=version, timeout=timeout)[chosen]

        return explaining.explain(run, target, item, options)

    def _config_or_none(self, model: str, version: str):
        try:
            return self.config(model, version)
        except AccessDenied:  # without the config the client cannot tell which outputs have labels
            return None

    def _labels_for(self, signature: Signature, version: str, chosen: Sequence[str], batch, timeout) -> Labels:
        """Ask the server once per client, model and output for the labels of every class."""
        model = signature.metadata.name
        known = self._labels.setdefault((model, version), {})
        candidates = label_candidates(signature.metadata, self._config_or_none(model, version), signature.batched)
        for name, count in candidates.items():
            if name in chosen and name not in known:
                probe = first_item(batch) if signature.batched else batch
                answer = self.infer(model, probe, outputs=[name], class_count=count, version=version,
                                    timeout=timeout)
                known[name] = parse_labels(answer[name][0] if signature.batched else answer[name], count)
        return known

    # Contract models: thin wrappers over predict, kept for their friendlier inputs
    def classify_digits(self, images: Any, model: str = "digits"):
        """8x8 images, 0..255, ink bright on dark: one image -> Prediction, a batch -> list of Predictions."""
        batch, single = friendly.digits_batch(images)
        return predictions_of(self.predict(model, batch, outputs=[PROBABILITIES]), PROBABILITIES, single)

    def classify_images(self, images: Any, model: str = "digits_image"):
        """Encoded images (paths, bytes or PIL images) of a handwritten digit, decoded by the server."""
        batch, single = friendly.image_batch(images)
        return predictions_of(self.predict(model, batch, outputs=[PROBABILITIES]), PROBABILITIES, single)

    def sentiment(self, texts: Any, model: str = "sentiment"):
        """A string -> Prediction (the server's labels, e.g. "negative"/"positive"); a list -> list of Predictions."""
        batch, single = friendly.text_batch(texts)
        return predictions_of(self.predict(model, batch, outputs=[PROBABILITIES]), PROBABILITIES, single)
