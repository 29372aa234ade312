"""Routing by label through a real gateway and a real Triton serving, from a copy of the repository, three versions
of `digits`: 1 (the exported model), 2 (the same file: it agrees with 1) and 3 (a random linear model: it
disagrees); and two of `digits_int8`: 1 and 2 (fails at run time). Triton loads them all (version_policy specific),
and each test writes the lifecycle the gateway routes by.

The split by percent, the sticky header, shadow comparisons, a canary Triton does not serve (yet), the answering
version in the header, the access log, the metrics, the payload log and feedback, the admin-only rollout report, a
version named directly at Triton, a canary unloaded under the gateway, and the automatic rollback of a disagreeing
canary and of a failing one while every request is answered (last: each rewrites its model's version policy, which
serve reloads)."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import requests
from google.protobuf import json_format
from onnx import TensorProto, helper, numpy_helper

import modelport
from core import lifecycle as lifecycles, repository
from core.lifecycle import Lifecycle
from tests.conftest import REPOSITORY, ROOT, launch_triton
from tests.gateway.conftest import launch_gateway

MIN_REQUESTS = 20  # the test spec's [model.lifecycle] min_requests
HELDOUT = np.load(ROOT / "models" / "digits" / "heldout.npz")
ITEMS = HELDOUT["x"][:40].tolist()


def disagreeing_model(path: Path) -> None:
    """digits' signature (image [N, 8, 8, 1] -> probabilities [N, 10]) over a fixed random linear map."""
    weights = np.random.default_rng(7).normal(size=(64, 10)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["image", "shape"], ["flat"]),
         helper.make_node("MatMul", ["flat", "weights"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)],
        "disagreeing_digits",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 8, 8, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(np.array([-1, 64], dtype=np.int64), "shape"),
         numpy_helper.from_array(weights, "weights")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def failing_model(path: Path) -> None:
    """digits' signature, but every call fails at run time: it gathers row max(image) of a 10-row table, and a
    digit's brightest pixel is far above 9 (an all-zero image, Triton's warm-up, passes)."""
    graph = helper.make_graph(
        [helper.make_node("ReduceMax", ["image"], ["brightest"], keepdims=0),
         helper.make_node("Cast", ["brightest"], ["row"], to=TensorProto.INT64),
         helper.make_node("Gather", ["table", "row"], ["offset"], axis=0),
         helper.make_node("Reshape", ["image", "shape"], ["flat"]),
         helper.make_node("MatMul", ["flat", "weights"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["scores"], axis=1),
         helper.make_node("Add", ["scores", "offset"], ["probabilities"])],
        "failing_digits",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 8, 8, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(np.zeros((10, 10), dtype=np.float32), "table"),
         numpy_helper.from_array(np.array([-1, 64], dtype=np.int64), "shape"),
         numpy_helper.from_array(np.zeros((64, 10), dtype=np.float32), "weights")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def served_versions(model: Path, versions: list[int]) -> bool:
    """Make the config serve these versions; True when it changed (serve then reloads the model)."""
    config = repository.parse((model / "config.pbtxt").read_text(encoding="utf-8"))
    if list(config.version_policy.specific.versions) == versions and config.instance_group[0].count == 1:
        return False
    config.instance_group[0].count = 1  # several versions: one instance each is plenty here
    config.ClearField("version_policy")
    config.version_policy.specific.versions.extend(versions)
    (model / "config.pbtxt").write_text(repository.render(config), encoding="utf-8")
    return True


def all_ready(triton, model: Path, versions: list[int]) -> bool:
    return all(requests.get(f"http://{triton.http_url}/v2/models/{model.name}/versions/{v}/ready",
                            timeout=5).status_code == 200 for v in versions)


def wait_served(triton, model: Path, versions: list[int], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all_ready(triton, model, versions):
            return
        time.sleep(0.2)
    pytest.fail(f"Triton did not serve {model.name} versions {versions} within {timeout_s} s")


def rollout_spec(folder: Path) -> Path:
    """models.toml's digits entry alone, its paths made absolute, with small rollout limits."""
    text = (ROOT / "models.toml").read_text(encoding="utf-8")
    start = text.index("\n[[model]]\n")
    entry = text[start:text.index("\n[[model]]\n", start + 1)].replace('"models/', f'"{ROOT}/models/')
    entry = entry.replace('variants = ["fp32", "int8", "fp16"]', 'variants = ["fp32", "int8"]')
    path = folder / "models.toml"
    path.write_text(entry + f"\n[model.lifecycle]\nmin_requests = {MIN_REQUESTS}\nmax_disagreement = 0.2\n"
                            f"max_error_rate = 0.5\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Triton and a gateway in front of it, on a repository with digits versions 1, 2 and 3, and digits_int8
    versions 1 and 2 (failing)."""
    work = tmp_path_factory.mktemp("rollout")
    repo = work / "repository"
    model = repo / "digits"
    shutil.copytree(REPOSITORY / "digits", model, ignore=shutil.ignore_patterns("card.*", ".lifecycle*"))
    (model / "2").mkdir()
    shutil.copy(model / "1" / "model.onnx", model / "2" / "model.onnx")
    (model / "3").mkdir()
    disagreeing_model(model / "3" / "model.onnx")
    served_versions(model, [1, 2, 3])
    int8 = repo / "digits_int8"
    shutil.copytree(REPOSITORY / "digits_int8", int8, ignore=shutil.ignore_patterns("card.*", ".lifecycle*"))
    (int8 / "2").mkdir()
    failing_model(int8 / "2" / "model.onnx")
    served_versions(int8, [1, 2])
    keys = {"admin": {"scopes": ("admin", "feedback")}, "caller": {}}
    with launch_triton(repo, work / "triton") as triton:
        with launch_gateway(triton, work / "gateway", "--repository", str(repo), "--spec", str(rollout_spec(work)),
                            "--feedback-window", "1000", "--payload-log", str(work / "payloads"),
                            "--payload-sample", "1", keys=keys) as gateway:
            yield triton, gateway, model


def set_lifecycle(gateway, directory: Path, lifecycle: Lifecycle, served: bool = True) -> None:
    """Write the lifecycle file as the CLI would (without touching the config), and wait until the gateway routes
    by it (and, for a canary, has seen Triton serve it)."""
    lifecycles.write_lifecycle(lifecycle, directory)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        report = rollouts(gateway, model=directory.name)
        if (report["stable"], report["canary"], report["started"]) == (
                lifecycle.stable, lifecycle.canary, lifecycle.started if lifecycle.canary is not None else None) \
                and (report["canary_served"] or lifecycle.canary is None or not served):
            return
        time.sleep(0.1)
    pytest.fail(f"the gateway did not read the lifecycle within 10 s: {report}")


@pytest.fixture(autouse=True)
def back_to_stable(served):
    """Each test starts its own rollout; none outlives it (the judge would act on it during the next test)."""
    yield
    triton, gateway, model = served
    set_lifecycle(gateway, model, Lifecycle(stable=1))
    # An automatic rollback rewrites the config to serve stable alone, and serve reloads it: bring the versions back.
    for directory, versions in ((model, [1, 2, 3]), (model.parent / "digits_int8", [1, 2])):
        if served_versions(directory, versions):
            time.sleep(1.5)  # serve checks configs once a second; an unchanged ready answer could be the old load's
        elif not all_ready(triton, directory, versions):  # a test unloaded a version through the load API itself
            requests.post(f"http://{triton.http_url}/v2/repository/models/{directory.name}/load",
                          headers=triton.admin_headers, timeout=60)
        wait_served(triton, directory, versions)


def logged_records(files, request_id: str, timeout_s: float = 5) -> list[dict]:
    """The JSON-lines records of one request, waiting for the writer: a line still being written is skipped."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = []
        for path in files():
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("request_id") == request_id:
                    found.append(record)
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def rollouts(gateway, key: str | None = None, model: str = "digits") -> dict:
    response = requests.get(f"{gateway.url}/v1/rollouts/{model}", headers=gateway.auth(key), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def canary(version: int, percent: float = 0.0, mode: str = "canary", sticky: str = "") -> Lifecycle:
    return Lifecycle(stable=1, canary=version, mode=mode, percent=percent, sticky=sticky, started=time.time())


def answer(gateway, item: int = 0, headers: dict | None = None, model: str = "digits") -> tuple[str, str]:
    response = gateway.predict(model, {"inputs": [ITEMS[item % len(ITEMS)]]}, headers=headers or {})
    assert response.status_code == 200, response.text
    return response.headers["model-version"], response.json()["predictions"][0]["label"]


def binomial_bounds(n: int, p: float, sigmas: float = 4.5) -> tuple[float, float]:
    spread = sigmas * math.sqrt(n * p * (1 - p))
    return n * p - spread, n * p + spread


@pytest.mark.integration
def test_stable_answers_and_says_its_version_in_the_header_the_access_log_and_the_metrics(served):
    _, gateway, model = served
    set_lifecycle(gateway, model, Lifecycle(stable=1))
    response = gateway.predict("digits", {"inputs": ITEMS[:2]}, headers={"X-Request-ID": "stable-only-1"})
    assert response.status_code == 200 and response.headers["model-version"] == "1", response.text
    assert gateway.metric("modelport_gateway_request_duration_seconds_count", model="digits", status="200",
                          version="1") >= 1
    assert gateway.metric("modelport_gateway_rollout_stable_version", model="digits") == 1
    logged = logged_records(lambda: [gateway.access_log], "stable-only-1")
    assert logged and logged[0]["version"] == "1", logged


@pytest.mark.integration
def test_a_direct_triton_caller_names_a_version(served):
    triton, _, _ = served
    with modelport.Client(triton.http_url) as client:
        first = [p.label for p in client.classify_digits(HELDOUT["x"][:40])]
        named = {v: [o["probabilities"].label for o in client.predict("digits", HELDOUT["x"][:40], version=v)]
                 for v in (1, 2, 3)}
    assert named[1] == named[2]  # 2 is a copy of 1
    assert sum(a != b for a, b in zip(named[1], named[3])) >= 10  # 3 is another model
    # naming none gets the newest version loaded: why the gateway always names the one it routes to
    assert first == named[3]


@pytest.mark.integration
def test_a_canary_gets_its_percent_of_requests_within_a_binomial_bound(served):
    _, gateway, model = served
    set_lifecycle(gateway, model, canary(2, percent=30))
    versions = [answer(gateway, i)[0] for i in range(200)]
    assert set(versions) <= {"1", "2"}
    low, high = binomial_bounds(200, 0.30)
    assert low <= versions.count("2") <= high, versions.count("2")
    assert gateway.metric("modelport_gateway_rollout_canary_percent", model="digits", version="2") == 30
    report = rollouts(gateway)
    assert report["versions"]["2"]["requests"] == versions.count("2")
    assert report["versions"]["2"]["label"] == "canary" and report["versions"]["1"]["label"] == "stable"
    # every canary-routed request was compared with stable in the background: 2 is a copy of 1, so none disagreed
    deadline = time.monotonic() + 5
    while rollouts(gateway)["versions"]["2"]["compared"] < versions.count("2") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert rollouts(gateway)["versions"]["2"]["compared"] == versions.count("2")
    assert rollouts(gateway)["versions"]["2"]["disagreement"] == 0.0


@pytest.mark.integration
def test_a_sticky_header_always_lands_on_the_same_version(served):
    _, gateway, model = served
    set_lifecycle(gateway, model, canary(2, percent=50, sticky="X-User"))
    seen: dict[str, set[str]] = {}
    for user in range(40):
        for repeat in range(3):
            version, _ = answer(gateway, user + repeat, headers={"X-User": f"user-{user}"})
            seen.setdefault(f"user-{user}", set()).add(version)
    assert all(len(versions) == 1 for versions in seen.values()), seen
    on_canary = sum(versions == {"2"} for versions in seen.values())
    low, high = binomial_bounds(40, 0.5)
    assert low <= on_canary <= high and 0 < on_canary < 40, on_canary


@pytest.mark.integration
def test_shadow_answers_come_from_stable_and_the_candidate_is_compared(served):
    _, gateway, model = served
    set_lifecycle(gateway, model, canary(3, mode="shadow"))
    before = gateway.metric("modelport_gateway_shadow_compared_total", model="digits", version="3") or 0
    sent = MIN_REQUESTS - 5  # fewer than the judge needs: this test watches the comparisons, not the rollback
    answers = [answer(gateway, i) for i in range(sent)]
    assert {version for version, _ in answers} == {"1"}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (gateway.metric(
            "modelport_gateway_shadow_compared_total", model="digits", version="3") or 0) < before + sent:
        time.sleep(0.1)
    compared = gateway.metric("modelport_gateway_shadow_compared_total", model="digits", version="3") - before
    dropped = gateway.metric("modelport_gateway_shadow_dropped_total", model="digits", version="3") or 0
    assert compared + dropped == sent and compared >= sent - 3, (compared, dropped)
    assert gateway.metric("modelport_gateway_shadow_disagreed_total", model="digits", version="3") >= 5
    figures = rollouts(gateway)["versions"]["3"]
    assert figures["compared"] == compared and figures["disagreement"] >= 0.3, figures
    assert figures["label"] == "canary" and rollouts(gateway)["mode"] == "shadow"


@pytest.mark.integration
def test_a_canary_triton_does_not_serve_gets_no_traffic(served):
    _, gateway, model = served
    set_lifecycle(gateway, model, canary(9, percent=100), served=False)  # as a version still loading would be
    time.sleep(1.5)  # the gateway checks once a second whether Triton serves it
    answers = [answer(gateway, i) for i in range(10)]
    assert {version for version, _ in answers} == {"1"}
    report = rollouts(gateway)
    assert report["canary_served"] is False and report["versions"]["9"]["requests"] == 0, report


@pytest.mark.integration
def test_feedback_and_the_payload_log_carry_the_version_that_answered(served):
    _, gateway, model = served
    set_lifecycle(gateway, model, canary(2, percent=100))
    response = gateway.predict("digits", {"inputs": [ITEMS[0]]}, headers={"X-Request-ID": "canary-answered-1"})
    assert response.headers["model-version"] == "2"
    judged = requests.post(f"{gateway.url}/v1/feedback", headers=gateway.auth(),
                           json={"request_id": "canary-answered-1", "label": str(int(HELDOUT["y"][0]))}, timeout=10)
    assert judged.status_code == 200 and judged.json()["version"] == "2", judged.text
    assert gateway.metric("modelport_gateway_feedback_judged_total", model="digits", version="2") >= 1
    assert rollouts(gateway)["versions"]["2"]["judged"] >= 1
    folder = gateway.access_log.parent.parent / "payloads"
    found = logged_records(lambda: folder.glob("payload-*.jsonl"), "canary-answered-1")
    assert found and found[0]["version"] == "2", found


@pytest.mark.integration
def test_explanations_come_from_stable_while_a_canary_runs(served):
    triton, gateway, model = served
    with modelport.Client(triton.http_url) as client:
        named = {v: [o["probabilities"].label for o in client.predict("digits", HELDOUT["x"][:40], version=v)]
                 for v in (1, 3)}
    item = next(i for i in range(40) if named[1][i] != named[3][i])
    set_lifecycle(gateway, model, canary(3, percent=100))
    found = requests.post(f"{gateway.url}/v1/models/digits:explain", headers=gateway.auth(),
                          json={"inputs": [ITEMS[item]], "budget": 2}, timeout=30)
    assert found.status_code == 200 and found.json()["label"] == named[1][item], found.text


@pytest.mark.integration
def test_the_rollout_report_needs_the_admin_scope_and_names_the_models_for_an_unknown_one(served):
    _, gateway, _ = served
    refused = requests.get(f"{gateway.url}/v1/rollouts/digits", headers=gateway.auth(gateway.keys["caller"]),
                           timeout=10)
    assert refused.status_code == 403 and "--scopes admin" in refused.json()["fix"], refused.text
    unknown = requests.get(f"{gateway.url}/v1/rollouts/nope", headers=gateway.auth(), timeout=10)
    assert unknown.status_code == 404 and "digits" in unknown.json()["detail"], unknown.text
    report = rollouts(gateway)
    assert set(report) == {"model", "stable", "canary", "mode", "percent", "sticky", "started", "canary_served",
                           "window", "limits", "versions", "history"}
    assert report["limits"]["min_requests"] == MIN_REQUESTS
    assert set(report["versions"]["1"]) == {"label", "requests", "errors", "unavailable", "error_rate", "p50_ms",
                                            "p99_ms", "psi", "compared", "disagreed", "disagreement", "judged",
                                            "correct", "accuracy"}
    status = requests.get(f"{gateway.url}/v1/status", headers=gateway.auth(), timeout=10).json()
    assert status["models"][0]["rollout"]["stable"] == 1


@pytest.mark.integration
def test_a_canary_unloaded_while_it_serves_is_answered_by_stable(served):
    triton, gateway, model = served
    set_lifecycle(gateway, model, canary(2, percent=100))
    assert answer(gateway)[0] == "2"
    # what serve does after a rollback: reload the model without the canary (the repository load API, admin key;
    # config.pbtxt stays as it is, so serve does not reload it again)
    config = repository.parse((model / "config.pbtxt").read_text(encoding="utf-8"))
    config.version_policy.ClearField("specific")
    config.version_policy.specific.versions.extend([1, 3])
    body = {"parameters": {"config": json_format.MessageToJson(config)}}
    loaded = requests.post(f"http://{triton.http_url}/v2/repository/models/digits/load", json=body,
                           headers=triton.admin_headers, timeout=60)
    assert loaded.status_code == 200, loaded.text
    answers = [answer(gateway, i) for i in range(10)]  # the gateway still routes to 2: every one answered by 1
    assert {version for version, _ in answers} == {"1"}
    figures = rollouts(gateway)["versions"]["2"]
    assert figures["unavailable"] >= 10 and figures["errors"] == 0, figures


@pytest.mark.integration
def test_a_disagreeing_canary_is_rolled_back_automatically_and_every_request_is_answered(served):
    _, gateway, model = served
    rollbacks = gateway.metric("modelport_gateway_rollout_actions_total", model="digits", action="rollback",
                               by="auto") or 0
    set_lifecycle(gateway, model, canary(3, percent=50))
    versions = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        versions.append(answer(gateway, len(versions))[0])  # asserts a 200 every time
        recorded = lifecycles.read_lifecycle(model)
        if recorded.canary is None and len(versions) > 10 and versions[-5:] == ["1"] * 5:
            break
    recorded = lifecycles.read_lifecycle(model)
    assert recorded.canary is None and recorded.stable == 1, recorded
    last = recorded.history[-1]
    assert (last["action"], last["version"], last["by"]) == ("rollback", 3, "auto"), last
    assert last["reason"].startswith("disagreement with stable") and "> max_disagreement 20.0%" in last["reason"]
    assert versions.count("3") >= MIN_REQUESTS
    assert gateway.metric("modelport_gateway_rollout_actions_total", model="digits", action="rollback",
                          by="auto") == rollbacks + 1
    assert "automatic rollback of version 3: disagreement" in gateway.output.read_text()
    assert {answer(gateway, i)[0] for i in range(10)} == {"1"}
    config = repository.parse((model / "config.pbtxt").read_text(encoding="utf-8"))
    assert list(config.version_policy.specific.versions) == [1]  # what serve reloads Triton with


@pytest.mark.integration
def test_a_failing_canary_is_rolled_back_automatically_and_stable_answers_its_requests(served):
    triton, gateway, model = served
    int8 = model.parent / "digits_int8"
    with modelport.Client(triton.http_url) as client:
        with pytest.raises(modelport.ModelportError):
            client.predict("digits_int8", HELDOUT["x"][:1], version=2)
    set_lifecycle(gateway, int8, canary(2, percent=50))
    versions = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and lifecycles.read_lifecycle(int8).canary is not None:
        versions.append(answer(gateway, len(versions), model="digits_int8")[0])  # asserts a 200 every time
    recorded = lifecycles.read_lifecycle(int8)
    assert recorded.canary is None and set(versions) == {"1"}, (recorded, versions)
    last = recorded.history[-1]
    assert (last["action"], last["version"], last["by"]) == ("rollback", 2, "auto"), last
    assert last["reason"].startswith("error rate 100.0% > max_error_rate 50.0%"), last
    assert rollouts(gateway, model="digits_int8")["versions"]["2"]["errors"] >= MIN_REQUESTS
    # the requests were answered by stable, so the canary's failures show in its call counter, not as 5xx
    assert gateway.metric("modelport_gateway_version_calls_total", model="digits_int8", version="2",
                          result="error") >= MIN_REQUESTS
    assert gateway.metric("modelport_gateway_request_duration_seconds_count", model="digits_int8",
                          status="502") is None
