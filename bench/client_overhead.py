"""modelport.Client against raw tritonclient.http: the same digits call, one connection, sequential, interleaved blocks.

Median per-call latency of each; the difference is what the client adds (validation, chunking, retries bookkeeping, result assembly).
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from bench.results import ClientOverhead


def _call_times_us(call, calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e6)
    return times


def measure(http_url: str, image: np.ndarray, blocks: int = 5, calls: int = 200) -> ClientOverhead:
    import modelport
    import tritonclient.http as httpclient

    raw = httpclient.InferenceServerClient(http_url)
    infer_input = httpclient.InferInput("image", list(image.shape), "FP32")
    output = httpclient.InferRequestedOutput("probabilities", binary_data=True)

    def raw_call() -> None:
        # the raw client also packs the tensor per call: both sides start from a numpy array
        infer_input.set_data_from_numpy(image, binary_data=True)
        raw.infer("digits", [infer_input], outputs=[output]).as_numpy("probabilities")

    client = modelport.Client(http_url)

    def modelport_call() -> None:
        client.infer("digits", image, outputs=["probabilities"])["probabilities"]

    raw_call(), modelport_call()  # connect, fetch metadata once (the client caches it)
    # interleaved blocks so drift hits both alike; medians so one server-side stall does not decide the result
    raw_times, modelport_times = [], []
    for _ in range(blocks):
        raw_times += _call_times_us(raw_call, calls)
        modelport_times += _call_times_us(modelport_call, calls)
    raw.close()
    client.close()
    return ClientOverhead(raw_us=statistics.median(raw_times), modelport_us=statistics.median(modelport_times))
