"""Triton serves exactly the versions a model's lifecycle names: a rollout action rewrites config.pbtxt, and the
supervisor reloads the model through the repository API, without failing a request to stable meanwhile."""

from __future__ import annotations

import base64
import io
import shutil
import threading
import time
from pathlib import Path

from typing import Callable

import numpy as np
import onnx
import pytest
import requests
import tritonclient.http as httpclient
from onnx import numpy_helper

from core import lifecycle, repository
from tests.conftest import REPOSITORY, ROOT, exported_repository, launch_triton

pytestmark = pytest.mark.integration

RELOAD_BUDGET_S = 30.0


def changed_copy(source: Path, target: Path) -> None:
    """digits with its weights scaled: another version with the same contract and other answers."""
    model = onnx.load(source)
    for init in model.graph.initializer:
        values = numpy_helper.to_array(init)
        if values.dtype == np.float32 and values.size > 3:
            init.CopyFrom(numpy_helper.from_array(values * np.float32(1.5), init.name))
    target.parent.mkdir(parents=True)
    onnx.save(model, target)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`digits` alone, version 1 exported; then version 2 written beside it as the export writes a candidate."""
    exported_repository()
    target = tmp_path_factory.mktemp("repository")
    shutil.copytree(REPOSITORY / "digits", target / "digits", ignore=shutil.ignore_patterns("card.*", "[2-9]*"))
    with launch_triton(target, tmp_path_factory.mktemp("triton")) as server:
        digits = target / "digits"
        changed_copy(digits / "1" / "model.onnx", digits / "2" / "model.onnx")
        lifecycle.write_lifecycle(lifecycle.Lifecycle(stable=1), digits)
        lifecycle.apply_version_policy(digits)
        wait_for_versions(server, [1])
        yield server, digits


def index(server) -> dict[int, str]:
    with requests.post(f"http://{server.http_url}/v2/repository/index", json={}, headers=server.admin_headers,
                       timeout=5) as response:
        return {int(m["version"]): m.get("state", "") for m in response.json() if m["name"] == "digits"}


def ready(server) -> list[int]:
    return sorted(v for v, state in index(server).items() if state == "READY")


def wait_for_versions(server, versions: list[int]) -> float:
    began = time.monotonic()
    while time.monotonic() - began < RELOAD_BUDGET_S:
        if ready(server) == versions:
            return time.monotonic() - began
        time.sleep(0.05)
    pytest.fail(f"Triton serves versions {index(server)}, not {versions}\n{server.log_tail()}", pytrace=False)


def infer(server, path: str, images: np.ndarray) -> np.ndarray:
    body = {"inputs": [{"name": "image", "datatype": "FP32", "shape": list(images.shape),
                        "data": images.ravel().tolist()}]}
    response = requests.post(f"http://{server.http_url}{path}/infer", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["outputs"][0]["data"]).reshape(len(images), -1)


class StableTraffic:
    """Requests in a loop on a few threads while something happens: how many were sent, how many failed. `send`
    makes one request on its thread's client and raises when it fails."""

    def __init__(self, send: Callable[[object], None], client: Callable[[], object], threads: int = 2):
        self.send, self.client, self.stop = send, client, threading.Event()
        self.sent = self.failed = 0
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self.run) for _ in range(threads)]

    def run(self) -> None:
        client = self.client()
        while not self.stop.is_set():
            try:
                self.send(client)
            except Exception as e:  # noqa: BLE001 (any failure counts, with its text)
                self.failed += 1
                self.errors.append(str(e)[:300])
            self.sent += 1

    def __enter__(self):
        for t in self.threads:
            t.start()
        time.sleep(0.3)
        return self

    def __exit__(self, *exc):
        time.sleep(0.3)
        self.stop.set()
        for t in self.threads:
            t.join()


def digits_traffic(server, images: np.ndarray) -> StableTraffic:
    body = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 8, 8, 1],
                        "data": images[:1].ravel().tolist()}]}
    return StableTraffic(lambda session: session.post(f"http://{server.http_url}/v2/models/digits/infer", json=body,
                                                      timeout=10).raise_for_status(), requests.Session)


def test_a_canary_is_loaded_beside_stable_and_unloaded_on_rollback_while_stable_keeps_answering(served):
    server, digits = served
    images = np.load(ROOT / "models" / "digits" / "heldout.npz")["x"][:4].astype(np.float32)
    assert ready(server) == [1], "a candidate on disk serves nothing until a rollout starts it"
    stable_answer = infer(server, "/v2/models/digits", images)

    with digits_traffic(server, images) as during_start:
        lifecycle.update(digits, lambda lc: lifecycle.start(lc, 2, (1, 2), percent=20))
        start_s = wait_for_versions(server, [1, 2])
    canary_answer = infer(server, "/v2/models/digits/versions/2", images)
    assert np.allclose(infer(server, "/v2/models/digits/versions/1", images), stable_answer)
    assert not np.allclose(canary_answer, stable_answer), "version 2 is the changed model"

    with digits_traffic(server, images) as during_rollback:
        lifecycle.update(digits, lambda lc: lifecycle.rollback(lc, reason="test"))
        rollback_s = wait_for_versions(server, [1])
        deadline = time.monotonic() + RELOAD_BUDGET_S
        while index(server).get(2) != "UNAVAILABLE":  # UNLOADING while its instances finish
            assert time.monotonic() < deadline, (index(server), server.log_tail())
            time.sleep(0.05)
        unloaded_s = rollback_s + (time.monotonic() - deadline + RELOAD_BUDGET_S)
    gone = requests.post(f"http://{server.http_url}/v2/models/digits/versions/2/infer", timeout=5,
                         json={"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 8, 8, 1],
                                           "data": [0.0] * 64}]})
    assert gone.status_code == 503 and "version 2 is not at ready state" in gone.text, gone.text

    for traffic in (during_start, during_rollback):
        assert traffic.sent > 0 and traffic.failed == 0, (traffic.errors[:5], server.log_tail())
    events = server.events_path.read_text()
    assert "config.pbtxt of model 'digits' changed; reloading 'digits'" in events
    assert "versions ready: 1, 2" in events and "versions ready: 1\n" in events
    print(f"\nreload to serve 1+2: {start_s:.2f} s, back to 1 alone: {rollback_s:.2f} s (2 unloaded after "
          f"{unloaded_s:.2f} s); stable requests during them: "
          f"{during_start.sent} and {during_rollback.sent}, failed {during_start.failed} and {during_rollback.failed}")


def test_a_config_that_does_not_load_leaves_the_served_model_as_it_was_and_says_why(served):
    server, digits = served
    config = digits / "config.pbtxt"
    good = config.read_text()
    try:
        (digits / "3").mkdir()  # no model.onnx in it
        broken = repository.parse(good)
        broken.version_policy.specific.versions[:] = [3]
        config.write_text(repository.render(broken))
        deadline = time.monotonic() + RELOAD_BUDGET_S
        while "reloading model 'digits' failed" not in server.events_path.read_text():
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.1)
        assert ready(server) == [1]
        infer(server, "/v2/models/digits", np.zeros((1, 8, 8, 1), np.float32))
    finally:
        shutil.rmtree(digits / "3")
        config.write_text(good)
    wait_for_versions(server, [1])


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    """digits_image (an ensemble: decode, then digits) with digits' version 2 written beside 1 as a candidate."""
    exported_repository()
    target = tmp_path_factory.mktemp("repository")
    for name in ("digits", "digits_image_decode", "digits_image"):
        shutil.copytree(REPOSITORY / name, target / name, ignore=shutil.ignore_patterns("card.*", "[2-9]*"))
    with launch_triton(target, tmp_path_factory.mktemp("triton")) as server:
        digits = target / "digits"
        changed_copy(digits / "1" / "model.onnx", digits / "2" / "model.onnx")
        lifecycle.write_lifecycle(lifecycle.Lifecycle(stable=1), digits)
        lifecycle.apply_version_policy(digits)
        assert lifecycle.apply_step_versions(digits) == ["digits_image"]
        wait_for_event(server, "model 'digits_image' reloaded")
        yield server, digits


def wait_for_event(server, text: str, after: int = 0) -> None:
    deadline = time.monotonic() + RELOAD_BUDGET_S
    while text not in server.events_path.read_text()[after:]:
        assert time.monotonic() < deadline, server.log_tail()
        time.sleep(0.05)


def send_png(client: httpclient.InferenceServerClient) -> None:
    """One request through digits_image (decode, then digits): a held-out digit as a PNG."""
    from PIL import Image

    pixels = (np.load(ROOT / "models" / "digits" / "heldout.npz")["x"][0, :, :, 0] * 16).clip(0, 255)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), mode="L").save(buffer, format="PNG")
    image = httpclient.InferInput("image_bytes", [1, 1], "BYTES")
    image.set_data_from_numpy(np.array([[buffer.getvalue()]], dtype=object))
    client.infer("digits_image", [image])


def inferences(server, version: int) -> int:
    response = requests.get(f"http://{server.http_url}/v2/models/digits/versions/{version}/stats", timeout=5)
    stats = response.json()["model_stats"]
    return int(stats[0]["inference_stats"]["success"]["count"]) if stats else 0


def test_requests_through_an_ensemble_stay_on_stable_while_its_step_has_a_canary(ensemble):
    server, digits = ensemble
    client = httpclient.InferenceServerClient(server.http_url)
    send = lambda n: [send_png(client) for _ in range(n)]  # noqa: E731
    marks = []

    with StableTraffic(send_png, lambda: httpclient.InferenceServerClient(server.http_url)) as during:
        lifecycle.update(digits, lambda lc: lifecycle.start(lc, 2, (1, 2), percent=50))
        wait_for_versions(server, [1, 2])
        before = inferences(server, 1), inferences(server, 2)
        send(10)
        marks.append((inferences(server, 1) - before[0], inferences(server, 2) - before[1]))

        size = len(server.events_path.read_text())
        lifecycle.update(digits, lifecycle.promote)
        wait_for_versions(server, [2])
        wait_for_event(server, "model 'digits_image' reloaded", size)
        before = inferences(server, 2)
        send(10)
        marks.append((None, inferences(server, 2) - before))

        size = len(server.events_path.read_text())
        lifecycle.update(digits, lambda lc: lifecycle.rollback(lc, reason="undo the promotion"))
        wait_for_versions(server, [1])
        wait_for_event(server, "model 'digits_image' reloaded", size)
        before = inferences(server, 1)
        send(10)
        marks.append((inferences(server, 1) - before, None))

    # the counts include the background requests, all through the ensemble too
    assert marks[0][0] >= 10 and marks[0][1] == 0, "during the canary the ensemble calls stable (1) only"
    assert marks[1][1] >= 10 and marks[2][0] >= 10, "after a promotion, and its rollback, the ensemble follows stable"
    assert during.sent > 0 and during.failed == 0, (during.errors[:5], server.log_tail())
    print(f"\nrequests through digits_image during start, promote and rollback: {during.sent}, failed {during.failed}")
