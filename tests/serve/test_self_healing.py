"""A dead backend process or a crashed server heals itself. Uses its own server: these tests break things."""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import shutil

import numpy as np
import psutil
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from core.process import free_ports
from serve.supervisor import LEFTOVER_GRACE_PER_STUB_S, LEFTOVER_GRACE_S
from tests.conftest import exported_repository, launch_triton

pytestmark = pytest.mark.integration

HEAL_BUDGET_S = 5.0
IMAGE = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 8, 8, 1], "data": [0.0] * 64}]}


@pytest.fixture(scope="module")
def own_triton(tmp_path_factory):
    with launch_triton(exported_repository(), tmp_path_factory.mktemp("healing")) as server:
        yield server


def every_digits_stub(server) -> list[psutil.Process]:
    """The stubs of all digits instances: killing them all leaves no healthy instance to answer."""
    stubs = server.backend_stubs("digits")
    assert len(stubs) == len(server.instance_names("digits")), f"stubs {[p.pid for p in stubs]}\n" + server.log_tail()
    return stubs


def answers(server, timeout=2.0) -> bool:
    try:
        return requests.post(f"http://{server.http_url}/v2/models/digits/infer", json=IMAGE, timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def test_killed_backend_process_under_load_serves_again_within_5_seconds(own_triton):
    stop = threading.Event()
    outcomes: list[tuple[float, bool]] = []

    def load():
        session = requests.Session()
        while not stop.is_set():
            # Record when the request was sent: one routed to the dead instance just before the swap may fail late.
            sent_at = time.monotonic()
            try:
                ok = session.post(f"http://{own_triton.http_url}/v2/models/digits/infer", json=IMAGE, timeout=10).status_code == 200
            except requests.RequestException:
                ok = False
            outcomes.append((sent_at, ok))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        victims = every_digits_stub(own_triton)
        killed_at = time.monotonic()
        for victim in victims:
            os.kill(victim.pid, signal.SIGKILL)
        deadline = killed_at + HEAL_BUDGET_S
        healed_at = None
        while time.monotonic() < deadline + 5:
            if all(answers(own_triton) for _ in range(5)):
                healed_at = time.monotonic()
                break
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert healed_at is not None and healed_at - killed_at <= HEAL_BUDGET_S, (
        f"digits answered again {None if healed_at is None else round(healed_at - killed_at, 2)} s after kill -9\n"
        + own_triton.log_tail()
    )
    failures_after_heal = [t for t, ok in outcomes if t > healed_at + 0.5 and not ok]
    assert not failures_after_heal, (
        f"{len(failures_after_heal)} failures after the heal, at "
        f"{[round(t - killed_at, 2) for t in failures_after_heal[:10]]} s after the kill\n" + own_triton.log_tail()
    )
    # a request sent just before the kill may be the one the dead stub drops
    assert any(not ok for t, ok in outcomes if t > killed_at - 0.5), "the kill did not break anything: test is not testing"
    events = own_triton.events_path.read_text()
    assert "of model 'digits' died" in events and "model 'digits' reloaded" in events
    assert not {p.pid for p in own_triton.backend_stubs("digits")} & {v.pid for v in victims}


def test_crashed_tritonserver_is_restarted(own_triton):
    server = own_triton.tritonserver()
    os.kill(server.pid, signal.SIGKILL)
    began = time.monotonic()
    while time.monotonic() - began < 60 and not answers(own_triton):
        time.sleep(0.2)
    assert answers(own_triton), own_triton.log_tail()
    assert own_triton.tritonserver().pid != server.pid
    assert "tritonserver exited unexpectedly" in own_triton.events_path.read_text()


DEEP_JSON = b'{"inputs":' + b"[" * 200_000  # Triton 2.51's HTTP front end recurses once per level and segfaults


def send_deep_json(server) -> None:
    try:
        requests.post(f"http://{server.http_url}/v2/models/digits/infer", data=DEEP_JSON, timeout=10)
    except requests.RequestException:
        pass  # the connection dies with the server


def test_server_answers_again_after_a_deeply_nested_json_body(own_triton):
    """A very deeply nested JSON body crashes Triton's HTTP front end; the supervisor brings it back."""
    send_deep_json(own_triton)
    began = time.monotonic()
    while time.monotonic() - began < 60 and not answers(own_triton):
        time.sleep(0.2)
    assert answers(own_triton), own_triton.log_tail()


def supervisor_restarts(port: int) -> dict[str, float]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {s.labels["outcome"]: s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "modelport_supervisor_restarts_total"}


def restarted(port: int, times: int) -> bool:
    try:
        return supervisor_restarts(port)["ok"] >= times
    except requests.RequestException:
        return False  # the supervisor is gone


def test_a_server_crashed_again_and_again_keeps_coming_back_and_every_restart_is_counted(tmp_path):
    """Seven deep-JSON crashes in well under a minute (the supervisor once gave up after the sixth): each time
    tritonserver is back and serving, and the supervisor's counter has every restart."""
    crashes = 7
    repository = tmp_path / "repository"
    shutil.copytree(exported_repository() / "digits", repository / "digits")  # one model: quick restarts
    (metrics_port,) = free_ports(1)
    with launch_triton(repository, tmp_path / "run", supervisor_metrics_port=metrics_port) as server:
        assert supervisor_restarts(metrics_port) == {"ok": 0, "failed": 0}
        deadline = time.monotonic() + 30  # the supervisor's own start is done once it has seen every model ready
        while time.monotonic() < deadline and "Triton ready" not in server.events_path.read_text():
            time.sleep(0.05)
        began = time.monotonic()
        for crash in range(1, crashes + 1):
            victim = server.tritonserver()
            send_deep_json(server)
            victim.wait(timeout=10)  # psutil.TimeoutExpired: the request no longer crashes Triton
            # Back means the supervisor saw it ready (a crash before that is a failed restart) and it serves.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not restarted(metrics_port, crash):
                time.sleep(0.1)
            assert restarted(metrics_port, crash) and answers(server), f"not back after crash {crash}\n" + server.log_tail()
        seconds = time.monotonic() - began
        assert psutil.Process(server.pid).is_running()
        restarts = supervisor_restarts(metrics_port)
        events = server.events_path.read_text()
    assert restarts == {"ok": crashes, "failed": 0}, events
    assert events.count("tritonserver restarted, all models ready") == crashes
    assert "giving up" not in events
    print(f"{crashes} crashes and restarts in {seconds:.1f} s")


def test_stop_is_fast_even_with_a_dead_backend_process(tmp_path):
    with launch_triton(exported_repository(), tmp_path, heal=False) as server:
        for stub in every_digits_stub(server):
            os.kill(stub.pid, signal.SIGKILL)
        time.sleep(0.5)
        assert not answers(server)  # without healing the model stays broken
        launcher = psutil.Process(server.pid)
        began = time.monotonic()
        launcher.send_signal(signal.SIGINT)
        launcher.wait(timeout=30)
        seconds = time.monotonic() - began
    assert seconds < 8, f"stopping took {seconds:.1f} s"
    assert not list(Path("/dev/shm").glob(f"modelport_{server.pid}_*")), "shared memory left behind"


def test_a_model_heals_again_when_its_new_backend_process_is_killed_too(own_triton):
    """Each heal must be a real reload: Triton skips a load whose config override equals the last one."""
    for round_ in range(2):
        victims = every_digits_stub(own_triton)
        for victim in victims:
            os.kill(victim.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        while time.monotonic() - killed_at < HEAL_BUDGET_S and not all(answers(own_triton) for _ in range(3)):
            time.sleep(0.05)
        seconds = time.monotonic() - killed_at
        assert seconds <= HEAL_BUDGET_S, f"round {round_}: still failing {seconds:.1f} s after kill -9\n" + own_triton.log_tail()


def test_after_a_heal_only_the_configured_instances_run_even_when_one_of_several_stubs_died(own_triton):
    """A request that reaches the dead stub pins the replaced model inside Triton, with its surviving stubs
    (serve/supervisor.py says why); the supervisor must still end them, leaving exactly the configured instances."""
    before = every_digits_stub(own_triton)
    os.kill(before[0].pid, signal.SIGKILL)
    killed_at = time.monotonic()
    # Triton spreads requests over the instances: one soon reaches the dead stub, and that is what pins the model.
    reached_the_dead_stub = False
    while not reached_the_dead_stub and time.monotonic() - killed_at < HEAL_BUDGET_S:
        reached_the_dead_stub = not answers(own_triton)
    assert reached_the_dead_stub, "no request failed after the kill: the test is not testing"
    configured = len(own_triton.instance_names("digits"))
    replaced = {p.pid for p in before}
    deadline = killed_at + HEAL_BUDGET_S + LEFTOVER_GRACE_S + LEFTOVER_GRACE_PER_STUB_S * configured + 2.0
    while True:
        running = {p.pid for p in own_triton.backend_stubs("digits")}
        if (len(running) == configured and not running & replaced) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(running) == configured and not running & replaced, (
        f"{configured} instances configured; running digits stubs {sorted(running)}, "
        f"stubs before the kill {sorted(replaced)}\n" + own_triton.log_tail()
    )
    assert answers(own_triton)
