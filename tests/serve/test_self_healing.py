"""A dead backend process or a crashed server heals itself. Uses its own server: these tests break things."""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import requests

from tests.conftest import exported_repository, launch_triton

pytestmark = pytest.mark.integration

HEAL_BUDGET_S = 5.0
IMAGE = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 8, 8, 1], "data": [0.0] * 64}]}


@pytest.fixture(scope="module")
def own_triton(tmp_path_factory):
    with launch_triton(exported_repository(), tmp_path_factory.mktemp("healing")) as server:
        yield server


def tritonserver(server) -> psutil.Process:
    return next(p for p in psutil.Process(server.pid).children() if p.name() == "tritonserver")


def digits_stubs(server) -> list[psutil.Process]:
    """Live stubs of `digits` (a killed stub stays a zombie child of tritonserver, without a command line)."""
    live = [p for p in tritonserver(server).children() if p.status() != psutil.STATUS_ZOMBIE]
    return [p for p in live if "/digits/1/" in " ".join(p.cmdline())]


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
        victims = digits_stubs(own_triton)
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
    assert not {p.pid for p in digits_stubs(own_triton)} & {v.pid for v in victims}


def test_crashed_tritonserver_is_restarted(own_triton):
    server = tritonserver(own_triton)
    os.kill(server.pid, signal.SIGKILL)
    began = time.monotonic()
    while time.monotonic() - began < 60 and not answers(own_triton):
        time.sleep(0.2)
    assert answers(own_triton), own_triton.log_tail()
    assert tritonserver(own_triton).pid != server.pid
    assert "tritonserver exited unexpectedly" in own_triton.events_path.read_text()


def test_server_answers_again_after_a_deeply_nested_json_body(own_triton):
    """A very deeply nested JSON body crashes Triton's HTTP front end; the supervisor brings it back."""
    body = b'{"inputs":' + b"[" * 200_000
    try:
        requests.post(f"http://{own_triton.http_url}/v2/models/digits/infer", data=body, timeout=10)
    except requests.RequestException:
        pass  # the connection dies with the server
    began = time.monotonic()
    while time.monotonic() - began < 60 and not answers(own_triton):
        time.sleep(0.2)
    assert answers(own_triton), own_triton.log_tail()


def test_stop_is_fast_even_with_a_dead_backend_process(tmp_path):
    with launch_triton(exported_repository(), tmp_path, extra_args=("--no-heal",)) as server:
        for stub in digits_stubs(server):
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
        victims = digits_stubs(own_triton)
        assert victims, f"round {round_}: no live digits stub"
        for victim in victims:
            os.kill(victim.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        while time.monotonic() - killed_at < HEAL_BUDGET_S and not all(answers(own_triton) for _ in range(3)):
            time.sleep(0.05)
        seconds = time.monotonic() - killed_at
        assert seconds <= HEAL_BUDGET_S, f"round {round_}: still failing {seconds:.1f} s after kill -9\n" + own_triton.log_tail()
