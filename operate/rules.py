"""Alert and recording rules, from models.toml and a few budgets, as typed values rendered to Prometheus rule groups.

Each alert is a `Condition` (signal, comparison, threshold), optionally `and` a guard condition. The signal alone is
what a healthy server also returns, so tests/operate/test_live_monitoring.py evaluates every signal against a live
Prometheus scraping a live Triton and requires data; tests/operate/rules_test.yml (promtool) proves the thresholds.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

from core import promql
from core.repository import served_names
from core.spec import Spec

DURATION = re.compile(r"^\d+[smhd]$")
OPS = (">", "<", "==", ">=", "<=")
SEVERITIES = ("critical", "warning", "info")


@dataclasses.dataclass(frozen=True)
class Budgets:
    """What the rules call too slow, too many, too small. p99 defaults to `make loadtest`'s --slo-p99-ms."""

    p99_ms: float = 250.0
    p99_ms_per_model: tuple[tuple[str, float], ...] = ()  # (Triton model name, ms) overrides
    max_error_ratio: float = 0.01
    max_queue_share: float = 0.5
    pending_batches: int = 4  # alert when more than this many full batches (max_batch_size each) wait
    min_batch_size: float = 2.0
    load_rps: float = 50.0  # "under load", for the batch-size alert
    queue_us_target: int = 5000  # the autoscaler's target queue time per request, µs
    max_restarts: int = 3  # tritonserver restarts within change_window beyond which it is crash-looping
    window: str = "5m"
    change_window: str = "15m"
    live_accuracy_margin: float = 0.05  # alert when live accuracy is this far below the card's held-out accuracy
    live_accuracy_window: str = "1h"  # feedback comes slowly: a longer window than the server's
    min_judged: int = 50  # judged predictions within live_accuracy_window before live accuracy means anything

    def __post_init__(self) -> None:
        for name in ("p99_ms", "max_error_ratio", "max_queue_share", "min_batch_size", "load_rps"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"Budgets.{name} must be a number > 0, got {value!r}")
        for model, ms in self.p99_ms_per_model:
            if not isinstance(ms, (int, float)) or not ms > 0:
                raise ValueError(f"Budgets.p99_ms_per_model[{model!r}] must be milliseconds > 0, got {ms!r}")
        if not 0 < self.max_error_ratio < 1 or not 0 < self.max_queue_share < 1:
            raise ValueError("Budgets.max_error_ratio and max_queue_share are fractions strictly between 0 and 1, got "
                             f"{self.max_error_ratio} and {self.max_queue_share}")
        if not isinstance(self.pending_batches, int) or self.pending_batches < 1 or self.queue_us_target < 1:
            raise ValueError("Budgets.pending_batches and queue_us_target must be integers >= 1, got "
                             f"{self.pending_batches!r} and {self.queue_us_target!r}")
        if not isinstance(self.max_restarts, int) or isinstance(self.max_restarts, bool) or self.max_restarts < 1:
            raise ValueError(f"Budgets.max_restarts must be an integer >= 1, got {self.max_restarts!r}")
        if not 0 < self.live_accuracy_margin < 1 or not isinstance(self.min_judged, int) or self.min_judged < 1:
            raise ValueError("Budgets.live_accuracy_margin is a fraction strictly between 0 and 1 and min_judged an "
                             f"integer >= 1, got {self.live_accuracy_margin!r} and {self.min_judged!r}")
        for name in ("window", "change_window", "live_accuracy_window"):
            if not DURATION.match(getattr(self, name)):
                raise ValueError(f"Budgets.{name} must be a Prometheus duration such as 5m, got {getattr(self, name)!r}")

    def p99_budget(self, model: str) -> float:
        return dict(self.p99_ms_per_model).get(model, self.p99_ms)


@dataclasses.dataclass(frozen=True)
class Condition:
    signal: str
    op: str
    threshold: float

    def __post_init__(self) -> None:
        if self.op not in OPS or not math.isfinite(self.threshold):
            raise ValueError(f"a condition compares with one of {OPS} to a finite number, got {self.op!r} {self.threshold!r}")

    @property
    def expr(self) -> str:
        return f"({self.signal}) {self.op} {self.threshold:g}"


@dataclasses.dataclass(frozen=True)
class Alert:
    name: str
    condition: Condition
    for_: str
    severity: str
    summary: str
    description: str
    guard: Condition | None = None  # joined with `and on(<guard_on>)`: "only under load"
    guard_on: str = "model"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Z][A-Za-z0-9]+", self.name) or self.severity not in SEVERITIES:
            raise ValueError(f"alert {self.name!r}: a CamelCase name and a severity of {SEVERITIES}, got {self.severity!r}")
        if not DURATION.match(self.for_) and self.for_ != "0s":
            raise ValueError(f"alert {self.name}: `for` must be a Prometheus duration, got {self.for_!r}")

    @property
    def expr(self) -> str:
        if self.guard is None:
            return self.condition.expr
        return f"({self.condition.expr}) and on({self.guard_on}) ({self.guard.expr})"

    @property
    def signals(self) -> tuple[str, ...]:
        return (self.condition.signal,) + ((self.guard.signal,) if self.guard else ())

    def rule(self) -> dict:
        return {
            "alert": self.name, "expr": self.expr, "for": self.for_, "labels": {"severity": self.severity},
            "annotations": {"summary": self.summary, "description": self.description},
        }


@dataclasses.dataclass(frozen=True)
class Record:
    name: str
    expr: str

    def rule(self) -> dict:
        return {"record": self.name, "expr": self.expr}


@dataclasses.dataclass(frozen=True)
class Group:
    name: str
    rules: tuple[Alert | Record, ...]

    def render(self) -> dict:
        # No interval of its own: the group runs at Prometheus's evaluation_interval (operate/prometheus.py).
        return {"name": self.name, "rules": [r.rule() for r in self.rules]}


def model_names(spec: Spec) -> tuple[str, ...]:
    """Every Triton model the repository serves for this spec (variants included), in spec order."""
    repository = spec.root / "model_repository"
    return tuple(name for model in spec.models for name in served_names(model, repository))


def _models_regex(names) -> str:
    return f'model=~"{"|".join(names)}"'


def _by_value(pairs: list[tuple[str, float]]) -> dict[float, list[str]]:
    """Models grouped by threshold: one rule per distinct value keeps each rule a plain comparison."""
    groups: dict[float, list[str]] = {}
    for model, value in pairs:
        groups.setdefault(value, []).append(model)
    return groups


def recording_rules() -> Group:
    # The autoscaler's metric: prometheus-adapter serves this series per pod (operate/k8s.py).
    return Group("modelport-recording", (Record(promql.QUEUE_RECORD, promql.server_queue_us_per_request("", "1m")),))


def triton_alerts(spec: Spec, budgets: Budgets) -> Group:
    names = model_names(spec)
    w = budgets.window
    alerts: list[Alert] = [
        Alert("TritonDown", Condition(promql.triton_up(), "==", 0), "1m", "critical",
              "Triton at {{ $labels.instance }} is down",
              "Prometheus cannot scrape Triton's metrics endpoint: the server is not running or not reachable."),
        Alert("ModelNotLoaded", Condition(promql.models_loaded(names), "<", 1), "2m", "critical",
              "Model {{ $labels.model }} is loaded on no server",
              "Triton exports a model's series only while it is loaded: this model of models.toml has none."),
        Alert("ModelErrorRatioHigh", Condition(promql.error_ratio("", w), ">", budgets.max_error_ratio), "5m",
              "warning", "Model {{ $labels.model }} fails {{ $value | humanizePercentage }} of its requests",
              f"More than {budgets.max_error_ratio:.0%} of the model's requests failed over {w}, as Triton counts "
              "failures: not requests it refuses before any model runs (docs/deploy.md, Monitoring)."),
        Alert("ModelQueueTimeShareHigh", Condition(promql.queue_share("", w), ">", budgets.max_queue_share), "5m",
              "warning", "Model {{ $labels.model }} spends {{ $value | humanizePercentage }} of request time queued",
              "Requests wait in the scheduler longer than they compute: add instances or replicas."),
    ]
    for value, models in sorted(_by_value([(m, budgets.p99_budget(m)) for m in names]).items()):
        alerts.append(Alert(
            "ModelLatencyP99OverBudget", Condition(promql.latency_quantile_ms("0.99", _models_regex(models)), ">", value),
            "5m", "warning", "Model {{ $labels.model }} p99 latency is {{ $value | humanize }} ms",
            f"Triton's p99 request latency summary is over the {value:g} ms budget."))
    pending = [(name, budgets.pending_batches * model.batching.max_batch_size)
               for model in spec.models for name in served_names(model, spec.root / "model_repository")]
    for value, models in sorted(_by_value(pending).items()):
        alerts.append(Alert(
            "ModelPendingRequestsHigh", Condition(promql.pending_requests(_models_regex(models)), ">", value), "2m",
            "warning", "Model {{ $labels.model }} has {{ $value }} requests waiting",
            f"More than {budgets.pending_batches} full batches wait for an instance."))
    batching = [name for model in spec.models if model.batching.preferred_batch_size
                for name in served_names(model, spec.root / "model_repository")]
    if batching:
        match = _models_regex(batching)
        alerts.append(Alert(
            "ModelBatchSizeLowUnderLoad", Condition(promql.batch_size_formed(match, w), "<", budgets.min_batch_size),
            "10m", "info", "Model {{ $labels.model }} forms batches of {{ $value | humanize }} under load",
            f"Over {budgets.load_rps:g} req/s yet the dynamic batcher forms batches below {budgets.min_batch_size:g}: "
            "a small max_queue_delay_microseconds would trade a little latency for throughput.",
            guard=Condition(promql.requests_per_second(match, w), ">", budgets.load_rps)))
    return Group("modelport-triton", tuple(alerts))


def heldout_accuracy(spec: Spec, name: str) -> float | None:
    """The card's held-out accuracy of a served model (model_repository/<name>/card.json `source_accuracy`); an
    ensemble takes its first step's that has one."""
    card = spec.root / "model_repository" / name / "card.json"
    accuracy = json.loads(card.read_text()).get("source_accuracy") if card.is_file() else None
    if accuracy is not None:
        return float(accuracy)
    model = spec.model(name)
    for step in model.source.steps if model is not None else ():
        accuracy = heldout_accuracy(spec, step.model)
        if accuracy is not None:
            return accuracy
    return None


def gateway_alerts(spec: Spec, budgets: Budgets) -> Group:
    """From the gateway's metrics: live accuracy from feedback (gateway/feedback.py), and each model's canary against
    stable (gateway/rollout.py). Only where a gateway serves; a rollout's alerts only while one runs."""
    w = budgets.live_accuracy_window
    floors = [(name, round(accuracy - budgets.live_accuracy_margin, 6)) for name in model_names(spec)
              if (accuracy := heldout_accuracy(spec, name)) is not None]
    alerts = []
    for floor, models in sorted(_by_value(floors).items()):
        match = _models_regex(models)
        alerts.append(Alert(
            "ModelLiveAccuracyLow", Condition(promql.live_accuracy(match, w), "<", floor), "10m", "warning",
            "Model {{ $labels.model }} version {{ $labels.version }} is right on {{ $value | humanizePercentage }} "
            "of judged predictions",
            f"Over {w}, live accuracy from feedback (POST /v1/feedback) is below {floor:g}: more than "
            f"{budgets.live_accuracy_margin:g} under the card's held-out accuracy. Check the inputs for drift "
            "(modelport_gateway_prediction_drift_psi) and the payload log (docs/gateway.md, Feedback).",
            guard=Condition(promql.judged(match, w), ">=", budgets.min_judged), guard_on="model, version"))
    return Group("modelport-gateway", tuple(alerts) + rollout_alerts(spec, budgets))


def _rollout_limits(spec: Spec, *fields: str) -> dict[tuple, list[str]]:
    """Served models grouped by the values of these [model.lifecycle] fields (variants move with their model)."""
    pairs = [(name, tuple(getattr(model.rollout, f) for f in fields)) for model in spec.models if model.rollout
             for name in served_names(model, spec.root / "model_repository")]
    return _by_value(pairs)


def rollout_alerts(spec: Spec, budgets: Budgets) -> tuple[Alert, ...]:
    """A canary over its model's [model.lifecycle] limits, the same the gateway rolls back on, here over the rules'
    window; and every automatic rollback, which a person should look into."""
    w = budgets.window
    # alert, its [model.lifecycle] limit and minimum, condition, guard (what must have been seen), summary, description
    checks = (
        ("CanaryErrorRatioHigh", "max_error_rate", "min_requests",
         lambda m, _: promql.canary(promql.version_error_ratio(m, w), m), lambda m: promql.version_calls(m, w),
         "Canary {{ $labels.model }} version {{ $labels.version }} fails {{ $value | humanizePercentage }} of its "
         "calls",
         "Over {w}, more than {limit:g} of the gateway's calls to the canary failed (lifecycle.max_error_rate); "
         "stable answered those requests."),
        ("CanaryLatencyP99High", "max_p99_ratio", "min_requests",
         lambda m, _: promql.canary_p99_ratio(m, w), lambda m: promql.version_requests(m, w),
         "Canary {{ $labels.model }} version {{ $labels.version }} has {{ $value | humanize }} times stable's p99",
         "Over {w}, the canary's p99 latency through the gateway is more than {limit:g} times stable's "
         "(lifecycle.max_p99_ratio)."),
        ("CanaryDisagreementHigh", "max_disagreement", "min_requests",
         lambda m, _: promql.disagreement(m, w), lambda m: promql.compared(m, w),
         "Candidate {{ $labels.model }} version {{ $labels.version }} disagrees with stable on "
         "{{ $value | humanizePercentage }} of compared requests",
         "Over {w}, the candidate's top-1 differs from stable's on more than {limit:g} of the requests both "
         "answered (shadow, or canary; lifecycle.max_disagreement)."),
        ("CanaryAccuracyBelowStable", "max_accuracy_drop", "min_feedback",
         lambda m, least: promql.canary_accuracy_drop(m, w, least), lambda m: promql.canary(promql.judged(m, w), m),
         "Canary {{ $labels.model }} version {{ $labels.version }}'s live accuracy is "
         "{{ $value | humanizePercentage }} below stable's",
         "Over {w}, live accuracy from feedback is more than {limit:g} lower on the canary than on stable, with "
         "{least} judged on each (lifecycle.max_accuracy_drop)."),
    )
    alerts = []
    for name, limit_field, least_field, condition, guard, summary, description in checks:
        for (limit, least), models in sorted(_rollout_limits(spec, limit_field, least_field).items()):
            match = _models_regex(models)
            least = max(least, 1)  # nothing seen is no evidence (only min_feedback may be 0)
            alerts.append(Alert(
                name, Condition(condition(match, least), ">", limit), "0s", "warning", summary,
                description.format(w=w, limit=limit, least=least) + " The gateway rolls a canary back on this.",
                guard=Condition(guard(match), ">=", least), guard_on="model, version"))
    # an action of its own, whatever the limit: the rollback's reason is in the lifecycle history
    alerts.append(Alert(
        "CanaryRolledBack", Condition(promql.rollout_actions('action="rollback", by="auto"', budgets.change_window),
                                      ">", 0), "0s", "warning",
        "The gateway rolled back the canary of {{ $labels.model }}",
        f"Within the last {budgets.change_window}, the canary crossed one of its model's [model.lifecycle] limits and "
        "the gateway rolled it back; stable answers every request. `python -m operate rollout status MODEL` shows "
        "the reason and the figures (docs/lifecycle.md)."))
    return tuple(alerts)


def supervisor_alerts(budgets: Budgets) -> Group:
    """Only where `python -m serve` supervises Triton; in Kubernetes the kubelet restarts it (kubernetes_alerts)."""
    w = budgets.change_window
    return Group("modelport-supervisor", (
        Alert("BackendHealed", Condition(promql.heals(w), ">", 0), "0s", "warning",
              "Model {{ $labels.model }} was reloaded after its backend process died ({{ $labels.outcome }})",
              f"The supervisor reloaded the model within the last {w}: look for the cause in the Triton log."),
        Alert("TritonRestarted", Condition(promql.restarts(w), ">", 0), "0s", "warning",
              "tritonserver at {{ $labels.instance }} was restarted after a crash ({{ $labels.outcome }})",
              f"tritonserver exited unexpectedly within the last {w} and the supervisor restarted it."),
        # The supervisor never gives up (serve/supervisor.py): whether a server that keeps crashing is beyond repair
        # is for a person to decide, so a crash loop pages.
        Alert("TritonCrashLooping", Condition(promql.restarts_per_server(w), ">", budgets.max_restarts), "0s",
              "critical", "tritonserver at {{ $labels.instance }} restarted {{ $value | humanize }} times in " + w,
              f"More than {budgets.max_restarts} restarts within {w}: something keeps crashing Triton (a request it "
              "cannot survive reaching it? see docs/serving-security.md and the Triton log). The supervisor keeps "
              "restarting it with a capped backoff; stopping it is an operator's decision."),
    ))


def kubernetes_alerts(budgets: Budgets) -> Group:
    """kube-state-metrics' restart counter stands in for the supervisor's; evaluated by promtool only, not live."""
    w = budgets.change_window
    restarts = (f'sum by (namespace, pod) (increase(kube_pod_container_status_restarts_total{{container="triton"}}[{w}]))')
    return Group("modelport-kubernetes", (
        Alert("TritonPodRestarted", Condition(restarts, ">", 0), "0s", "warning",
              "Triton container in {{ $labels.namespace }}/{{ $labels.pod }} restarted",
              f"The kubelet restarted the triton container within the last {w}."),
    ))


def local_groups(spec: Spec, budgets: Budgets) -> tuple[Group, ...]:
    return recording_rules(), triton_alerts(spec, budgets), supervisor_alerts(budgets), gateway_alerts(spec, budgets)


def kubernetes_groups(spec: Spec, budgets: Budgets) -> tuple[Group, ...]:
    return recording_rules(), triton_alerts(spec, budgets), kubernetes_alerts(budgets), gateway_alerts(spec, budgets)


def rule_file(groups: tuple[Group, ...]) -> dict:
    return {"groups": [group.render() for group in groups]}
