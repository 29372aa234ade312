"""`AsyncClient`: the same methods as `Client`, awaited, over tritonclient's asyncio clients.

Chunks of a large batch are sent concurrently with asyncio.gather. The underlying connection is opened on first
use, inside the running event loop (aiohttp and grpc.aio bind to the loop that creates them).
"""

from __future__ import annotations

import asyncio
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from . import chunking, explain as explaining, inputs as friendly
from .client import Labels, PredictResult, Retries, _version, first_item, plan_requests, retry_policy
from .errors import AccessDenied, ModelportError, ServerUnavailable
from .explain import DEFAULT_BUDGET, ExplainOptions, Explanation
from .metadata import ModelInfo, ModelMetadata, parse_config, parse_metadata, parse_repository_index
from .predictions import PROBABILITIES, check_top, label_candidates, parse_labels, predictions_of, to_outputs
from .retry import send_with_retry_async
from .transport import TransportOptions, make_async_transport
from .validation import Inputs, Signature, check_outputs, prepare_inputs


class AsyncClient:
    """See `modelport.Client`; use `async with AsyncClient(...) as client:` or `await client.close()`."""

    def __init__(self, url: str = "127.0.0.1:8000", protocol: str = "http", timeout: float = 60.0,
                 retries: Retries = 3, headers: Optional[Mapping[str, str]] = None, ssl: Any = False,
                 transport: Any = None):
        self.options = TransportOptions(url=url, protocol=protocol, timeout_s=timeout, headers=headers, ssl=ssl)
        self.retry = retry_policy(retries)
        self._connection = transport  # None: opened on first use
        self._signatures: dict[tuple[str, str], Signature] = {}
        self._configs: dict[tuple[str, str], Any] = {}
        self._labels: dict[tuple[str, str], Labels] = {}

    def __repr__(self) -> str:
        return f"AsyncClient({self.options.url!r}, protocol={self.options.protocol!r})"

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    @property
    def _transport(self):
        if self._connection is None:
            self._connection = make_async_transport(self.options)
        return self._connection

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def _read(self, method: str, *args):
        async def send(_):
            try:
                return [await getattr(self._transport, method)(*args)]
            except ModelportError as error:
                return [error]
        return (await send_with_retry_async(send, [None], self.retry))[0]

    async def is_live(self) -> bool:
        try:
            return bool(await self._transport.is_live())
        except ServerUnavailable:
            return False

    async def is_ready(self) -> bool:
        try:
            return bool(await self._transport.is_ready())
        except ServerUnavailable:
            return False

    async def wait_until_ready(self, timeout: float = 60.0, model: Optional[str] = None) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.05
        while True:
            try:
                if await self._transport.is_ready() and (
                        model is None or await self._transport.is_model_ready(model, "")):
                    return
                last = "server or model not ready yet"
            except ModelportError as error:
                last = error.message
            if loop.time() + delay > deadline:
                raise ServerUnavailable(f"{self.options.url} not ready{' for ' + model if model else ''} after "
                                        f"{timeout:g}s: {last}", model=model)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def models(self) -> tuple[ModelInfo, ...]:
        return parse_repository_index(await self._read("repository_index"))

    async def metadata(self, model: str, version: Union[int, str, None] = None) -> ModelMetadata:
        return (await self._signature(model, _version(version))).metadata

    async def config(self, model: str, version: Union[int, str, None] = None):
        key = (model, _version(version))
        if key not in self._configs:
            self._configs[key] = parse_config(await self._read("config", model, key[1]))
        return self._configs[key]

    async def _signature(self, model: str, version: str) -> Signature:
        key = (model, version)
        if key not in self._signatures:
            metadata = parse_metadata(await self._read("metadata", model, version))
            try:
                config = await self.config(model, version)
            except AccessDenied:
                config = None
            self._signatures[key] = Signature.of(metadata, config)
        return self._signatures[key]

    async def infer(self, model: str, inputs: Inputs, outputs: Optional[Sequence[str]] = None,
                    class_count: Optional[int] = None, version: Union[int, str, None] = None,
                    timeout: Optional[float] = None) -> dict[str, np.ndarray]:
        version_text = _version(version)
        requests = plan_requests(await self._signature(model, version_text), inputs, outputs, class_count,
                                 version_text)
        timeout_s = timeout if timeout is not None else self.options.timeout_s
        if timeout_s <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout_s!r}")
        parts = await send_with_retry_async(lambda pending: self._transport.infer_many(pending, timeout_s),
                                            requests, self.retry)
        return chunking.join(parts)

    async def predict(self, model: str, inputs: Any, top: Optional[int] = None,
                      outputs: Optional[Sequence[str]] = None, version: Union[int, str, None] = None,
                      timeout: Optional[float] = None) -> PredictResult:
        version_text = _version(version)
        signature = await self._signature(model, version_text)
        check_top(model, top)
        batch, single = friendly.to_batch(signature, inputs)
        batch = prepare_inputs(signature, batch).arrays
        chosen = check_outputs(signature.metadata, outputs, None)
        labels = await self._labels_for(signature, version_text, chosen, batch, timeout)
        raw = await self.infer(model, batch, outputs=chosen, version=version, timeout=timeout)
        return to_outputs(model, raw, labels, single, signature.batched, top)

    async def explain(self, model: str, inputs: Any, method: Optional[str] = None, output: Optional[str] = None,
                      budget: int = DEFAULT_BUDGET, baseline: Any = None, patch: Optional[int] = None,
                      seed: int = 0, version: Union[int, str, None] = None,
                      timeout: Optional[float] = None) -> Explanation:
        """Client.explain, awaited."""
        options = ExplainOptions(method=method, output=output, budget=budget, baseline=baseline, patch=patch,
                                 seed=seed)
        version_text = _version(version)
        signature = await self._signature(model, version_text)
        batch, _ = friendly.to_batch(signature, inputs)
        batch = prepare_inputs(signature, batch).arrays
        item = explaining.one_item(signature, batch)
        config = await self._config_or_none(model, version_text)
        chosen = explaining.choose_output(signature.metadata, config, options.output)
        labels = (await self._labels_for(signature, version_text, [chosen], batch, timeout)).get(chosen)
        target = explaining.Target(signature=signature, config=config, output=chosen, labels=labels)

        async def run(items):
            return (await self.infer(model, items, outputs=[chosen], version=version, timeout=timeout))[chosen]

        return await explaining.explain_async(run, target, item, options)

    async def _config_or_none(self, model: str, version: str):
        try:
            return await self.config(model, version)
        except AccessDenied:
            return None

    async def _labels_for(self, signature: Signature, version: str, chosen: Sequence[str], batch,
                          timeout) -> Labels:
        model = signature.metadata.name
        known = self._labels.setdefault((model, version), {})
        candidates = label_candidates(signature.metadata, await self._config_or_none(model, version),
                                      signature.batched)
        for name, count in candidates.items():
            if name in chosen and name not in known:
                probe = first_item(batch) if signature.batched else batch
                answer = await self.infer(model, probe, outputs=[name], class_count=count, version=version,
                                          timeout=timeout)
                known[name] = parse_labels(answer[name][0] if signature.batched else answer[name], count)
        return known

    async def classify_digits(self, images: Any, model: str = "digits"):
        batch, single = friendly.digits_batch(images)
        return predictions_of(await self.predict(model, batch, outputs=[PROBABILITIES]), PROBABILITIES, single)

    async def classify_images(self, images: Any, model: str = "digits_image"):
        batch, single = friendly.image_batch(images)
        return predictions_of(await self.predict(model, batch, outputs=[PROBABILITIES]), PROBABILITIES, single)

    async def sentiment(self, texts: Any, model: str = "sentiment"):
        batch, single = friendly.text_batch(texts)
        return predictions_of(await self.predict(model, batch, outputs=[PROBABILITIES]), PROBABILITIES, single)
