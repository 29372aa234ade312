"""The supervisor's own counters as Prometheus metrics: models healed after a backend process died, and tritonserver
restarts after a crash. Triton cannot count these (they happen around it), so the supervisor serves them on a port of
its own (`--supervisor-metrics-port`), next to Triton's /metrics. core/promql.py and the alert rules read them.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

OUTCOMES = ("ok", "failed")


class SupervisorMetrics:
    """One registry per supervisor (not the process-global one), so tests can hold several."""

    def __init__(self, models: list[str]) -> None:
        self.registry = CollectorRegistry()
        self.heals = Counter(
            "modelport_supervisor_heals", "Model reloads after one of its backend processes died, by outcome",
            ["model", "outcome"], registry=self.registry,
        )
        self.restarts = Counter(
            "modelport_supervisor_restarts", "tritonserver restarts after it exited unexpectedly, by outcome",
            ["outcome"], registry=self.registry,
        )
        self.triton_up = Gauge(
            "modelport_supervisor_triton_up", "1 while the supervised tritonserver process is running",
            registry=self.registry,
        )
        # Every series exists from the start at 0: increase() over a series born at its first event misses that event.
        for outcome in OUTCOMES:
            self.restarts.labels(outcome=outcome)
            for model in models:
                self.heals.labels(model=model, outcome=outcome)
        self._server = None

    def heal(self, model: str, ok: bool) -> None:
        self.heals.labels(model=model, outcome="ok" if ok else "failed").inc()

    def restart(self, ok: bool) -> None:
        self.restarts.labels(outcome="ok" if ok else "failed").inc()

    def serve(self, address: str, port: int) -> None:
        self._server, _thread = start_http_server(port, addr=address, registry=self.registry)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
