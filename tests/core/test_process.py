"""core.process with real child processes: free ports, a start retried when its port is taken, readiness that
times out with the child's output in the error, and a stop that ends the child's whole process group, also when the
parent is told to stop by a signal."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import process

ROOT = Path(__file__).resolve().parents[2]


def http_server(port: int, log: Path, **fields) -> process.Child:
    return process.Child("http.server", [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                                         "--directory", str(log.parent)], log, f"http://127.0.0.1:{port}/", **fields)


def group_members(group: int) -> list[int]:
    """Live processes whose process group is `group`, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == group and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_free_ports_are_distinct_and_a_child_started_on_one_serves_there_until_stopped(tmp_path):
    ports = process.free_ports(5)
    assert len(set(ports)) == 5 and all(process.bind_error(port) is None for port in ports)

    with process.start(lambda picked: http_server(picked[0], tmp_path / "server.log", ports=picked), 30,
                       ports=1) as child:
        (port,) = child.ports
        assert process.answers(f"http://127.0.0.1:{port}/") and listening(port)
    assert not listening(port) and not process.running(child.pid)


def test_a_child_whose_port_another_process_took_is_started_again_on_new_ports(tmp_path):
    tried: list[int] = []
    intruder = socket.socket()

    def launch(ports: list[int]) -> process.Child:
        if not tried:  # another process binds the port between our pick and the child's start
            intruder.bind(("127.0.0.1", ports[0]))
            intruder.listen()
        tried.append(ports[0])
        return http_server(ports[0], tmp_path / f"server-{len(tried)}.log", ports=ports)

    with intruder, process.start(launch, 30, ports=1) as child:
        assert len(tried) == 2 and tried[0] != tried[1]
        assert process.answers(f"http://127.0.0.1:{tried[1]}/")
        assert "Address already in use" in process.tail(tmp_path / "server-1.log")  # why the first one exited
        assert child.ports == [tried[1]]


def test_a_child_that_fails_with_its_ports_free_is_not_retried_and_the_error_shows_its_output(tmp_path):
    launches = []

    def launch(ports: list[int]) -> process.Child:
        launches.append(ports)
        return process.Child("broken", ["sh", "-c", "echo 'bad setting in line 3' >&2; exit 3"], tmp_path / "b.log",
                             "http://127.0.0.1:1/", ports=ports)

    with pytest.raises(process.StartFailed) as failed:
        process.start(launch, 30, ports=1)
    assert len(launches) == 1 and failed.value.exit_code == 3 and failed.value.busy_ports == ()
    assert "broken exited with code 3 while starting" in str(failed.value)
    assert "bad setting in line 3" in str(failed.value)


def test_a_given_port_that_is_taken_is_named_and_not_retried(tmp_path):
    with socket.socket() as intruder:
        intruder.bind(("127.0.0.1", 0))
        intruder.listen()
        port = intruder.getsockname()[1]
        with pytest.raises(process.StartFailed) as failed:
            process.start(http_server(port, tmp_path / "server.log", ports=(port,)), 30)
    assert failed.value.busy_ports == (port,)
    assert f"port {port} is taken by another process" in str(failed.value)


def test_a_child_not_ready_in_time_is_stopped_and_the_error_shows_the_end_of_its_log(tmp_path):
    child = process.Child("slow", ["sh", "-c", "echo 'still loading the weights'; exec sleep 60"], tmp_path / "s.log",
                          ready=lambda: False)
    began = time.monotonic()
    with pytest.raises(process.StartFailed) as failed:
        process.start(child, 1.0)
    assert time.monotonic() - began < 10
    assert failed.value.exit_code is None and "slow not ready after 1 s" in str(failed.value)
    assert "still loading the weights" in str(failed.value)
    assert group_members(child.pid) == []


def test_stop_ends_the_whole_group_even_processes_that_ignore_the_stop_signal(tmp_path):
    # sh and its background sleep both ignore SIGTERM: only the SIGKILL after the grace period ends them
    child = process.Child("stubborn", ["sh", "-c", "trap '' TERM; sleep 300 & echo started; wait"],
                          tmp_path / "stubborn.log", ready=lambda: "started" in process.tail(tmp_path / "stubborn.log"),
                          grace_s=0.5)
    process.start(child, 10)
    assert len(group_members(child.pid)) == 2
    child.stop()
    assert group_members(child.pid) == [] and child.returncode == -signal.SIGKILL


PARENT = """
import sys, time
from pathlib import Path
from core import process
child = process.Child("sleepers", ["sh", "-c", "sleep 300 & sleep 300 & echo started; wait"], Path(sys.argv[1]),
                      ready=lambda: "started" in process.tail(Path(sys.argv[1])))
process.start(child, 10)
print(child.pid, flush=True)
time.sleep(300)
"""


def default_signals() -> None:
    # as from a terminal: a suite started in the background (`cmd &`, nohup) inherits some of them ignored
    for signum in process.STOP_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)


@pytest.mark.parametrize("signum", process.STOP_SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_a_signal_to_the_parent_ends_its_childs_whole_group_and_then_the_parent_as_before(tmp_path, signum):
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path / "child.log")], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_signals)
    try:
        group = int(parent.stdout.readline() or 0)
        assert group and len(group_members(group)) == 3, parent.stderr.read() if parent.poll() is not None else ""
        parent.send_signal(signum)
        code = parent.wait(timeout=30)
    finally:
        if parent.poll() is None:
            parent.kill()
    assert code == -signum  # it still ends the way that signal ends it
    assert group_members(group) == []


def test_a_recorded_pid_counts_as_ours_only_while_its_command_line_still_says_so(tmp_path):
    # the guard against pid reuse that `serve stop` and `gateway stop` apply to the pid of their state file
    with process.start(http_server(process.free_ports(1)[0], tmp_path / "server.log"), 30) as child:
        assert process.running(child.pid) and process.running(child.pid, "http.server")
        assert process.running(child.pid, Path(sys.executable).name, "-m", "http.server")  # the program by name
        assert not process.running(child.pid, "serve", "run") and not process.running(child.pid, "http.serve")
    assert not process.running(child.pid, "http.server")


def test_a_foreground_child_writes_to_our_output_and_wait_returns_its_own_exit_code(capfd):
    # how `python -m loadtest` runs Locust: its report lines reach the terminal, its exit code is the program's
    child = process.Child("tool", [sys.executable, "-c", "import sys; print('report line'); sys.exit(3)"], None)
    with child.spawn():
        assert child.wait() == 3
    assert "report line" in capfd.readouterr().out and child.output() == ""
