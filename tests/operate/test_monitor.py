"""`make monitor` without a live server: what it says when Prometheus is missing, and the config it writes."""
from __future__ import annotations

import pytest
import yaml

from operate import monitor, prometheus


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
