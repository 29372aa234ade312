"""modelport.Client against raw tritonclient.http: the same call (one sample of the benchmarked model, every output),
one connection, sequential, interleaved blocks.

Median per-call latency of each; the difference is what the client adds (validation, chunking, retries bookkeeping,
result assembly).
"""

from __future__ import annotations

import statistics
import time

from bench.results import ClientOverhead
from core.measure.payloads import Sample


def _call_times_us(call, calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e6)
    return times


def measure(http_url: str, sample: Sample, blocks: int = 5, calls: int = 200) -> ClientOverhead:
    import modelport
    import tritonclient.http as httpclient

    raw = httpclient.InferenceServerClient(http_url)
    inputs = [httpclient.InferInput(t.name, list(t.array.shape), t.datatype) for t in sample.inputs]
    outputs = [httpclient.InferRequestedOutput(name, binary_data=True) for name in sample.outputs]

    def raw_call() -> None:
        # the raw client also packs the tensors per call: both sides start from numpy arrays
        for infer_input, tensor in zip(inputs, sample.inputs):
            infer_input.set_data_from_numpy(tensor.array, binary_data=True)
        result = raw.infer(sample.model, inputs, outputs=outputs)
        [result.as_numpy(name) for name in sample.outputs]

    client = modelport.Client(http_url)
    arrays = {t.name: t.array for t in sample.inputs}

    def modelport_call() -> None:
        client.infer(sample.model, arrays, outputs=list(sample.outputs))

    raw_call(), modelport_call()  # connect, fetch metadata once (the client caches it)
    # interleaved blocks so drift hits both alike; medians so one server-side stall does not decide the result
    raw_times, modelport_times = [], []
    for _ in range(blocks):
        raw_times += _call_times_us(raw_call, calls)
        modelport_times += _call_times_us(modelport_call, calls)
    raw.close()
    client.close()
    return ClientOverhead(raw_us=statistics.median(raw_times), modelport_us=statistics.median(modelport_times))
