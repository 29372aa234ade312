"""Triton serves exactly the versions a model's lifecycle names: a rollout action rewrites config.pbtxt, and the
supervisor reloads the model through the repository API, without failing a request to stable meanwhile."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import requests
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
    """Requests to stable (no version named) in a loop, while something happens: how many failed."""

    def __init__(self, server, images: np.ndarray, threads: int = 2):
        self.server, self.images, self.stop = server, images, threading.Event()
        self.sent = self.failed = 0
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self.run) for _ in range(threads)]

    def run(self) -> None:
        session = requests.Session()
        body = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 8, 8, 1],
                            "data": self.images[:1].ravel().tolist()}]}
        while not self.stop.is_set():
            try:
                response = session.post(f"http://{self.server.http_url}/v2/models/digits/infer", json=body, timeout=10)
                ok = response.status_code == 200
                error = "" if ok else f"HTTP {response.status_code} {response.text[:200]}"
            except requests.RequestException as e:
                ok, error = False, str(e)
            self.sent += 1
            if not ok:
                self.failed += 1
                self.errors.append(error)

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


def test_a_canary_is_loaded_beside_stable_and_unloaded_on_rollback_while_stable_keeps_answering(served):
    server, digits = served
    images = np.load(ROOT / "models" / "digits" / "heldout.npz")["x"][:4].astype(np.float32)
    assert ready(server) == [1], "a candidate on disk serves nothing until a rollout starts it"
    stable_answer = infer(server, "/v2/models/digits", images)

    with StableTraffic(server, images) as during_start:
        lifecycle.update(digits, lambda lc: lifecycle.start(lc, 2, (1, 2), percent=20))
        start_s = wait_for_versions(server, [1, 2])
    canary_answer = infer(server, "/v2/models/digits/versions/2", images)
    assert np.allclose(infer(server, "/v2/models/digits/versions/1", images), stable_answer)
    assert not np.allclose(canary_answer, stable_answer), "version 2 is the changed model"

    with StableTraffic(server, images) as during_rollback:
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
