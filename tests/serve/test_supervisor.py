import http.server
import socket
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from core.errors import PortInUseError, RuntimeMissingError, ServerStartError
from core.triton import ServeOptions
from serve.metrics import SupervisorMetrics
from core.process import free_ports
from core.triton_process import TritonProcess, check_ports_free, clean_shm, explain_start_failure
from serve.security import admin_key_exposure, proc_hides_other_users, resolve_admin_key
from serve.supervisor import RESTART_BACKOFF_MAX_S, Stub, StubWatch, Supervisor, model_of_stub, restart_delay

REPO = Path("/srv/repo")
OPTIONS = ServeOptions(repository=REPO, admin_key="k" * 16)


def test_stub_argv_names_the_model_it_serves():
    argv = ["/b/python/triton_python_backend_stub", "/srv/repo/digits/1/model.onnx", "modelport_x_uuid", "1048576"]
    assert model_of_stub(argv, REPO) == "digits"
    assert model_of_stub(["/b/stub", "/elsewhere/digits/1/model.py"], REPO) is None
    assert model_of_stub([], REPO) is None


def test_a_stub_turning_zombie_reports_its_model_once():
    watch = StubWatch(REPO)
    assert watch.dead_models([Stub(10, False, "digits", "r10"), Stub(11, False, "sentiment_tokenizer", "r11")]) == {}
    dead = watch.dead_models([Stub(10, True, None), Stub(11, False, "sentiment_tokenizer", "r11")])
    assert {model: [s.pid for s in stubs] for model, stubs in dead.items()} == {"digits": [10]}
    assert dead["digits"][0].shm_region == "r10"
    assert watch.dead_models([Stub(10, True, None), Stub(11, False, "sentiment_tokenizer", "r11")]) == {}


def test_a_stub_that_exits_cleanly_is_not_a_death():
    """Unloading or reloading a model reaps its stubs: they vanish instead of turning zombie."""
    watch = StubWatch(REPO)
    watch.dead_models([Stub(10, False, "digits")])
    assert watch.dead_models([]) == {}


def test_stubs_of_a_replaced_model_are_not_deaths_when_they_end():
    """After a heal the old model's stubs go (Triton ends them, or the supervisor kills the ones it leaves): neither
    their zombie nor their exit may trigger another reload; the new stubs are watched as usual."""
    watch = StubWatch(REPO)
    other = Stub(12, False, "sentiment")
    watch.dead_models([Stub(10, False, "digits", "r10"), Stub(11, False, "digits", "r11"), other])
    assert [s.pid for s in watch.stubs_of("digits")] == [10, 11]

    watch.retire(watch.stubs_of("digits"))

    assert watch.stubs_of("digits") == []
    assert watch.dead_models([Stub(10, True, None), Stub(11, False, "digits", "r11"), Stub(20, False, "digits"), other]) == {}
    assert [s.pid for s in watch.stubs_of("digits")] == [20]
    dead = watch.dead_models([Stub(10, True, None), Stub(11, True, None), Stub(20, True, None), other])
    assert {model: [s.pid for s in stubs] for model, stubs in dead.items()} == {"digits": [20]}


def test_restart_backoff_starts_at_once_doubles_and_stays_capped_without_end():
    delays = [restart_delay(n) for n in range(1, 1001)]
    assert delays[0] == 0.0 and 0 < delays[1] < delays[2] < delays[3]
    assert all(later >= earlier for earlier, later in zip(delays, delays[1:]))
    assert max(delays) == RESTART_BACKOFF_MAX_S <= 5.0  # a few seconds, however long the crash loop lasts
    assert delays[-1] == RESTART_BACKOFF_MAX_S


def test_a_server_that_never_starts_again_is_retried_without_end_and_a_stop_cuts_the_backoff_short(tmp_path):
    """A real process that exits at once stands in for a tritonserver that crashes on every start: the supervisor
    keeps trying past the old give-up count (more than 5), counts each failed restart, and stops within a moment
    even in the middle of a 4 s backoff."""
    http, grpc, metrics = free_ports(3)
    options = ServeOptions(repository=tmp_path, admin_key="k" * 16, http_port=http, grpc_port=grpc, metrics_port=metrics,
                           log_file=tmp_path / "t.log", startup_timeout_s=5)
    triton = TritonProcess(["/bin/sh", "-c", "exit 3"], {}, options, "modelport_test_never_")
    events: list[str] = []
    supervisor = Supervisor(options, triton, [], events.append, metrics=SupervisorMetrics([]))
    stop = threading.Event()
    restarting = threading.Thread(target=supervisor.restart_after_crash, args=(stop,))
    restarting.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum("restarting tritonserver failed" in e for e in events) < 6:
            time.sleep(0.05)
        assert restarting.is_alive(), events
    finally:
        stop.set()
        began = time.monotonic()
        restarting.join(timeout=10)
    assert not restarting.is_alive() and time.monotonic() - began < 1.5
    failed = sum("restarting tritonserver failed" in e for e in events)
    assert failed >= 6 and any("in 4.00 s" in e for e in events), events
    text = generate_latest(supervisor.metrics.registry).decode()
    assert f'modelport_supervisor_restarts_total{{outcome="failed"}} {float(failed)}' in text


class EndpointUpModelsNot(http.server.BaseHTTPRequestHandler):
    """Stands in for tritonserver's HTTP endpoint in the moment it is up and its models are not yet ready."""

    def do_GET(self):
        self.send_response(200 if self.path == "/v2/health/ready" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint_port():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EndpointUpModelsNot)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def supervisor_running(script: str, http_port: int, tmp_path) -> tuple[Supervisor, list[str]]:
    """A supervisor whose "tritonserver" is `sh -c script`, serving one model `m`."""
    grpc_port, metrics_port = free_ports(2)
    options = ServeOptions(repository=tmp_path, admin_key="k" * 16, http_port=http_port, grpc_port=grpc_port,
                           metrics_port=metrics_port, log_file=tmp_path / "t.log", startup_timeout_s=5)
    events: list[str] = []
    triton = TritonProcess(["/bin/sh", "-c", script], {}, options, "modelport_test_first_")
    return Supervisor(options, triton, ["m"], events.append, metrics=SupervisorMetrics(["m"])), events


def test_a_server_killed_after_its_endpoint_came_up_in_the_first_start_is_restarted_not_given_up(tmp_path, endpoint_port):
    """A request it cannot survive, sent the moment the port opens, must not end the service before it began."""
    supervisor, events = supervisor_running("sleep 0.3; kill -SEGV $$", endpoint_port, tmp_path)
    stop = threading.Event()
    outcome: list = []
    first = threading.Thread(target=lambda: outcome.append(supervisor.start_first(stop)))
    first.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and sum("restarting tritonserver failed" in e for e in events) < 2:
        time.sleep(0.05)
    stop.set()
    first.join(timeout=10)
    assert not first.is_alive() and outcome, events  # returned, did not raise
    assert "exited unexpectedly (code -11, 1 in a row)" in events[0]
    assert sum("restarting tritonserver failed" in e for e in events) >= 2


@pytest.mark.parametrize(("script", "endpoint_up", "why"), [
    ("exit 1", True, "exits by itself on an error of its own (a model that does not load)"),
    ("kill -SEGV $$", False, "dies before its endpoint ever answered"),
])
def test_a_first_start_that_fails_by_itself_raises_at_once_with_its_message(tmp_path, endpoint_port, script,
                                                                            endpoint_up, why):
    (closed,) = free_ports(1)
    supervisor, events = supervisor_running(script, endpoint_port if endpoint_up else closed, tmp_path)
    began = time.monotonic()
    with pytest.raises(ServerStartError, match="exited with code"):
        supervisor.start_first(threading.Event())
    assert time.monotonic() - began < 5 and not any("restarting" in e for e in events), why


def test_port_in_use_names_the_port_and_the_flag():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError) as error:
            check_ports_free(ServeOptions(repository=REPO, admin_key="k" * 16, http_port=port, grpc_port=1, metrics_port=2))
    assert f"port {port} on 127.0.0.1 is already in use" in str(error.value) and "--http-port" in str(error.value)


def test_start_failure_from_a_missing_library_is_one_clear_line():
    output = "tritonserver: error while loading shared libraries: libnuma.so.1: cannot open shared object file"
    error = explain_start_failure("tritonserver exited with code 127", output, OPTIONS)
    assert isinstance(error, RuntimeMissingError) and "libnuma.so.1" in str(error)


def test_start_failure_from_a_model_lists_the_error_lines_and_the_log():
    output = 'I0 loading\nE1123 model_lifecycle.cc:642] "failed to load \'digits\' version 1: Invalid argument"\n'
    error = explain_start_failure("tritonserver exited with code 1", output, OPTIONS)
    assert isinstance(error, ServerStartError)
    assert "failed to load 'digits'" in str(error) and str(OPTIONS.log_file) in str(error)


def test_clean_shm_removes_only_our_prefix(tmp_path):
    (tmp_path / "modelport_1_a_region").write_text("")
    (tmp_path / "triton_python_backend_shm_region_other").write_text("")
    assert [p.name for p in clean_shm("modelport_1_a_", tmp_path)] == ["modelport_1_a_region"]
    assert [p.name for p in tmp_path.iterdir()] == ["triton_python_backend_shm_region_other"]


def test_generated_admin_key_is_private_and_stable(tmp_path):
    first = resolve_admin_key(tmp_path, environ={})
    assert (tmp_path / "admin.key").stat().st_mode & 0o777 == 0o600
    assert resolve_admin_key(tmp_path, environ={}).value == first.value and len(first.value) >= 32


def test_admin_key_from_the_environment_wins(tmp_path):
    key = resolve_admin_key(tmp_path, environ={"MODELPORT_ADMIN_KEY": "from-env"})
    assert (key.value, key.source) == ("from-env", "env MODELPORT_ADMIN_KEY")
    assert not (tmp_path / "admin.key").exists()


PROC_PLAIN = "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
PROC_HIDDEN = "66 48 0:40 / /proc rw,relatime - proc proc rw,hidepid=invisible\n"


@pytest.mark.parametrize(("mountinfo", "hidden"), [
    (PROC_PLAIN, False),
    (PROC_HIDDEN, True),
    ("66 48 0:40 / /proc rw,nosuid shared:12 - proc proc rw,hidepid=2,gid=4\n", True),
    ("66 48 0:40 / /proc rw - proc proc rw,hidepid=0\n", False),
    ("66 48 0:40 / /proc/sys ro - proc proc rw,hidepid=2\n", False),  # not /proc itself
    (PROC_PLAIN + PROC_HIDDEN, True),  # the last mount on /proc is the one in effect
    (PROC_HIDDEN + PROC_PLAIN, False),
    # hidepid mounted over /proc (its parent is the plain mount), listed first: the stack decides, not the order
    ("67 22 0:41 / /proc rw - proc proc rw,hidepid=2\n" + PROC_PLAIN, True),
])
def test_proc_hides_other_users_only_when_the_mount_in_effect_has_hidepid(mountinfo, hidden):
    assert proc_hides_other_users(mountinfo) is hidden


def test_the_admin_key_exposure_warning_names_the_fix_and_is_absent_under_hidepid(tmp_path):
    (tmp_path / "plain").write_text(PROC_PLAIN)
    (tmp_path / "hidden").write_text(PROC_HIDDEN)
    warning = admin_key_exposure(tmp_path / "plain")
    assert "/proc/PID/cmdline" in warning and "hidepid=2" in warning and "docs/serving-security.md" in warning
    assert admin_key_exposure(tmp_path / "hidden") is None


def test_a_changed_config_is_reported_once_and_a_rewrite_with_the_same_text_not_at_all(tmp_path):
    from serve.supervisor import ConfigWatch

    for name in ("digits", "sentiment"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.pbtxt").write_text(f'name: "{name}"\n')
    watch = ConfigWatch(tmp_path, ["digits", "sentiment"])
    watch.snapshot()
    assert watch.changed() == []
    (tmp_path / "digits" / "config.pbtxt").write_text('name: "digits"\nversion_policy { specific { versions: 1 } }\n')
    assert watch.changed() == ["digits"]
    assert watch.changed() == [], "tried once per change of the file"
    replacement = tmp_path / "sentiment" / "new.pbtxt"  # the export swaps whole trees: same text, another file
    replacement.write_text('name: "sentiment"\n')
    replacement.replace(tmp_path / "sentiment" / "config.pbtxt")
    (tmp_path / "digits" / "config.pbtxt").unlink()  # gone for a moment: judged when it is back
    assert watch.changed() == []
    (tmp_path / "digits" / "config.pbtxt").write_text('name: "digits"\n')
    assert watch.changed() == ["digits"]
