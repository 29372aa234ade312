"""`make monitor` without a live server: what it says when Prometheus is missing, the config it writes, and that
its Prometheus goes when it is stopped."""
from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import yaml

from core.process import free_ports
from operate import monitor, prometheus

ROOT = Path(__file__).resolve().parents[2]


def test_a_missing_prometheus_is_one_message_with_the_install_command(monkeypatch):
    monkeypatch.setenv("PROMETHEUS", "/nonexistent/prometheus")
    with pytest.raises(monitor.MonitorError, match="apt-get install prometheus"):
        monitor.binary()


def test_the_config_scrapes_the_given_targets_and_loads_the_generated_rules(tmp_path):
    options = monitor.MonitorOptions(prometheus.Targets("127.0.0.1:9102", None, "127.0.0.1:9200"), workdir=tmp_path)

    config = yaml.safe_load(monitor.write_config(options).read_text())

    jobs = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert jobs == {"modelport-triton": ["127.0.0.1:9102"], "modelport-gateway": ["127.0.0.1:9200"]}
    assert config["rule_files"] == [str(monitor.RULES.resolve())]


def test_a_target_that_is_not_host_port_is_refused():
    with pytest.raises(ValueError, match="host:port"):
        prometheus.Targets(triton="http://127.0.0.1:8002/metrics")


def test_a_sigterm_to_make_monitor_stops_its_prometheus_and_frees_the_port(tmp_path):
    port, nothing_there = free_ports(2)
    monitor_process = subprocess.Popen([
        sys.executable, "-m", "operate", "monitor", "--listen", f"127.0.0.1:{port}", "--triton",
        f"127.0.0.1:{nothing_there}", "--supervisor", "none", "--workdir", str(tmp_path),
    ], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # as from a terminal or a service manager: a suite started with `cmd &` or nohup inherits signals ignored
        preexec_fn=lambda: [signal.signal(s, signal.SIG_DFL) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)])
    lines = []
    try:
        for line in monitor_process.stdout:
            lines.append(line)
            if "Ctrl-C stops it" in line:
                break
        listen = f"--web.listen-address=127.0.0.1:{port}"
        prometheus = [p for p in psutil.process_iter(["cmdline"]) if listen in (p.info["cmdline"] or [])]
        assert len(prometheus) == 1, "".join(lines)
        monitor_process.send_signal(signal.SIGTERM)
        code = monitor_process.wait(timeout=30)  # Prometheus gets 15 s to stop on SIGTERM, then is killed
    finally:
        if monitor_process.poll() is None:
            monitor_process.kill()
    assert code == -signal.SIGTERM
    with contextlib.suppress(psutil.NoSuchProcess):  # gone, or a zombie its new parent has not reaped yet
        assert prometheus[0].status() == psutil.STATUS_ZOMBIE, f"Prometheus (pid {prometheus[0].pid}) still runs"
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, f"something still listens on Prometheus's port {port}"
