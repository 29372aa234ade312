"""prometheus.yml for the local Prometheus: scrape Triton, the supervisor (and a gateway when there is one), load the
rules. `make monitor` and the tests render it with their own targets; deploy/prometheus/ holds the default one."""
from __future__ import annotations

import dataclasses

from core import promql

RULES_FILE = "rules.yml"


@dataclasses.dataclass(frozen=True)
class Targets:
    """host:port of each metrics endpoint; None leaves that job out."""

    triton: str = "127.0.0.1:8002"
    supervisor: str | None = "127.0.0.1:8003"
    gateway: str | None = None

    def __post_init__(self) -> None:
        for name in ("triton", "supervisor", "gateway"):
            value = getattr(self, name)
            if value is not None and (value.count(":") != 1 or not value.rsplit(":", 1)[1].isdigit()):
                raise ValueError(f"Targets.{name} must be host:port, got {value!r}")


def config(targets: Targets, rule_files: tuple[str, ...] = (RULES_FILE,), scrape_interval: str = "5s") -> dict:
    """A short interval: Triton's counters are cheap to scrape, and a local dashboard should follow a load test.
    Rule groups run at the same pace (they set no interval of their own)."""
    jobs = [(promql.TRITON_JOB, targets.triton), (promql.SUPERVISOR_JOB, targets.supervisor),
            ("modelport-gateway", targets.gateway)]
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": list(rule_files),
        "scrape_configs": [
            {"job_name": job, "metrics_path": "/metrics", "static_configs": [{"targets": [target]}]}
            for job, target in jobs if target is not None
        ],
    }
