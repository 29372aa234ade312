"""Dynamic batching really batches under concurrent load, on the configured number of instances."""
from __future__ import annotations

import queue
import time

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient

from serve.supervisor import LEFTOVER_GRACE_PER_STUB_S, LEFTOVER_GRACE_S

pytestmark = pytest.mark.integration


def counts(triton, model):
    stats = requests.get(f"http://{triton.http_url}/v2/models/{model}/stats", timeout=5).json()["model_stats"][0]
    return stats["inference_count"], stats["execution_count"]


def test_concurrent_requests_are_batched_into_fewer_executions(triton):
    image = np.random.default_rng(0).uniform(0, 255, (1, 8, 8, 1)).astype(np.float32)
    inferences_before, executions_before = counts(triton, "digits")

    # 400 single-image requests in flight at once over gRPC: the server sees a queue, not a trickle.
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    tensor = grpcclient.InferInput("image", [1, 8, 8, 1], "FP32")
    tensor.set_data_from_numpy(image)
    results: queue.Queue = queue.Queue()
    for _ in range(400):
        client.async_infer("digits", [tensor], callback=lambda result, error: results.put((result, error)))
    for _ in range(400):
        result, error = results.get(timeout=60)
        assert error is None and result.as_numpy("probabilities").shape == (1, 10)
    client.close()
    inferences_after, executions_after = counts(triton, "digits")
    inferences, executions = inferences_after - inferences_before, executions_after - executions_before
    assert inferences == 400
    assert executions < 0.7 * inferences, f"{executions} executions for {inferences} inferences: no batching"
    print(f"digits: {executions} executions for {inferences} inferences")


def test_configured_instance_count_is_running(triton):
    configured = len(triton.instance_names("digits"))
    # Tests that kill stubs may have healed digits just before: the supervisor ends stubs of the replaced model that
    # Triton leaves running once their grace period is over, so wait that long for the count to settle, no longer.
    deadline = time.monotonic() + LEFTOVER_GRACE_S + LEFTOVER_GRACE_PER_STUB_S * configured + 2.0
    while len(stubs := triton.backend_stubs("digits")) != configured and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(stubs) == configured >= 1, (
        f"{configured} digits instances configured, {len(stubs)} stubs running: "
        f"{[(p.pid, p.ppid(), p.cmdline()[-2]) for p in stubs]} (pid, ppid, instance)\n" + triton.log_tail(10)
    )
