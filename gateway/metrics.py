"""The gateway's Prometheus metrics, on its own registry, served at /metrics.

Requests are histograms by model, status and the version that answered (they add up across gateway replicas;
Triton's summaries do not); gateway/routing.py adds the rollout's own (comparisons, actions, the canary's share).
Model quality:

- `modelport_gateway_top1_confidence{model,output}`: histogram of the top-1 score of every predicted item;
- `modelport_gateway_predictions_total{model,output,label}`: items predicted per top-1 label;
- `modelport_gateway_reference_share{model,output,label}`: the reference distribution from the model's export state;
- `modelport_gateway_prediction_drift_psi{model,output}`: PSI of the last `--drift-window` predictions against that
  reference (NaN until `--drift-min-samples` predictions), and `..._drift_window_predictions` how many it covers.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway.quality import DriftMonitor
from gateway.shedding import ModelGate

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
UNKNOWN_MODEL = "_unknown"  # requests for models the gateway does not serve: one series, not one per name sent


class GatewayMetrics:
    def __init__(self, models: Iterable[str], gates: Mapping[str, ModelGate],
                 references: Mapping[str, Mapping[str, Mapping[str, float]]], window: int, min_samples: int):
        self.registry = CollectorRegistry()
        self.models = frozenset(models)
        r = self.registry
        self.requests = Histogram("modelport_gateway_request_duration_seconds",
                                  "Predict requests through the gateway, by model, HTTP status and the version that "
                                  "answered (empty when none did)", ["model", "status", "version"],
                                  buckets=LATENCY_BUCKETS, registry=r)
        self.rejected = Counter("modelport_gateway_rejected_requests_total",
                                "Requests answered with a problem, by problem type", ["model", "problem"], registry=r)
        in_flight = Gauge("modelport_gateway_in_flight_requests", "Requests at Triton", ["model"], registry=r)
        pending = Gauge("modelport_gateway_pending_requests", "Requests waiting for a slot", ["model"], registry=r)
        for name, gate in gates.items():
            in_flight.labels(name).set_function(lambda g=gate: g.in_flight)
            pending.labels(name).set_function(lambda g=gate: g.pending)
        self.confidence = Histogram("modelport_gateway_top1_confidence", "Top-1 score of each predicted item",
                                    ["model", "output"], buckets=CONFIDENCE_BUCKETS, registry=r)
        self.predictions = Counter("modelport_gateway_predictions_total", "Predicted items by top-1 label",
                                   ["model", "output", "label"], registry=r)
        reference = Gauge("modelport_gateway_reference_share",
                          "Share of each label among the source model's held-out predictions (the export's state)",
                          ["model", "output", "label"], registry=r)
        drift = Gauge("modelport_gateway_prediction_drift_psi",
                      "Population stability index of the recent predictions against the reference",
                      ["model", "output"], registry=r)
        covered = Gauge("modelport_gateway_drift_window_predictions", "Predictions the drift gauge is computed over",
                        ["model", "output"], registry=r)
        self.monitors: dict[tuple[str, str], DriftMonitor] = {}
        for model, outputs in references.items():
            for output, shares in outputs.items():
                monitor = self.monitors[(model, output)] = DriftMonitor(shares, window, min_samples)
                for label, share in shares.items():
                    reference.labels(model, output, label).set(share)
                drift.labels(model, output).set_function(monitor.value)
                covered.labels(model, output).set_function(lambda m=monitor: m.samples)

    def model_label(self, model: str | None) -> str:
        return model if model in self.models else UNKNOWN_MODEL

    def observe_request(self, model: str | None, status: int, seconds: float, problem: str | None,
                        version: str = "") -> None:
        name = self.model_label(model)
        self.requests.labels(name, str(status), version if name != UNKNOWN_MODEL else "").observe(seconds)
        if problem:
            self.rejected.labels(name, problem).inc()

    def observe_prediction(self, model: str, output: str, label: str, score: float) -> None:
        self.confidence.labels(model, output).observe(score)
        self.predictions.labels(model, output, label).inc()
        monitor = self.monitors.get((model, output))
        if monitor is not None:
            monitor.observe(label)
