"""The PromQL the alert rules, the dashboard, the autoscaler and the load-test report share: each question once.

Triton exports per (model, version) counters of successful requests, inferences (samples: a batch of 8 counts 8),
executions (one per batch the scheduler formed) and cumulative microseconds (request, queue, compute input / infer /
output), a pending-request gauge, failures by `reason`, and, with `--metrics-config summary_latencies=true`, latency
summaries with the quantiles `core.triton.METRICS_FLAGS` asks for.
https://github.com/triton-inference-server/server/blob/r24.10/docs/user_guide/metrics.md

Ratios are weighted: the counters are summed over every series first (versions, servers, pods), and divided after.
Averaging per-series ratios instead weighs an idle model like a busy one (server issue #8979, `OFFICIAL_QUEUE_QUERY`).
"""
from __future__ import annotations

TRITON_JOB = "modelport-triton"  # the local scrape job; in Kubernetes the ServiceMonitor's job is the Service's name
SUPERVISOR_JOB = "modelport-supervisor"
QUANTILES = ("0.5", "0.9", "0.99")  # what core.triton.METRICS_FLAGS asks Triton to summarise
# What a pod-level series keeps: job/instance locally, namespace/pod under the Prometheus operator.
SERVER_LABELS = "job, instance, namespace, pod"
QUEUE_RECORD = "modelport:queue_us_per_request:rate1m"
COMPUTE_METRICS = tuple(f"nv_inference_compute_{step}_duration_us" for step in ("input", "infer", "output"))

# The on-prem chart's prometheus-adapter query for its HPA metric avg_time_queue_us (deploy/k8s-onprem/values.yaml),
# kept verbatim to show in tests/operate/rules_test.yml what it reports: an unweighted mean of per-model ratios, each
# divided by one request too many. https://github.com/triton-inference-server/server/issues/8979
OFFICIAL_QUEUE_QUERY = (
    "avg(delta(nv_inference_queue_duration_us{<<.LabelMatchers>>}[30s])"
    "/(1+delta(nv_inference_request_success{<<.LabelMatchers>>}[30s]))) by (<<.GroupBy>>)"
)


def sel(metric: str, *matchers: str) -> str:
    """`metric{a, b}` from label matchers such as 'model=~"$model"'; empty matchers are left out."""
    inner = ", ".join(m for m in matchers if m)
    return f"{metric}{{{inner}}}" if inner else metric


def rate(metric: str, match: str, window: str) -> str:
    return f"rate({sel(metric, match)}[{window}])"


def per_model(expression: str) -> str:
    return f"sum by (model) ({expression})"


def requests_per_second(match: str, window: str) -> str:
    return per_model(rate("nv_inference_request_success", match, window))


def failures_per_second(match: str, window: str) -> str:
    """By model and Triton's failure reason (REJECTED, CANCELED, BACKEND, OTHER)."""
    return f"sum by (model, reason) ({rate('nv_inference_request_failure', match, window)})"


def error_ratio(match: str, window: str) -> str:
    failures = per_model(rate("nv_inference_request_failure", match, window))
    return f"{failures} / ({requests_per_second(match, window)} + {failures})"


def latency_quantile_ms(quantile: str, match: str) -> str:
    """A summary quantile is computed inside each server and cannot be merged: the worst server's is shown."""
    if quantile not in QUANTILES:
        raise ValueError(f"quantile must be one Triton summarises ({', '.join(QUANTILES)}), got {quantile!r}; "
                         "add it to summary_quantiles in core.triton.METRICS_FLAGS first")
    summary = sel("nv_inference_request_summary_us", match, f'quantile="{quantile}"')
    return f"max by (model) ({summary}) / 1000"


def queue_us_per_request(match: str, window: str) -> str:
    return f"{per_model(rate('nv_inference_queue_duration_us', match, window))} / {requests_per_second(match, window)}"


def compute_us_per_request(match: str, window: str) -> str:
    # Three rates summed per model: one rate() over a name regex would drop the names and collide.
    compute = " + ".join(per_model(rate(metric, match, window)) for metric in COMPUTE_METRICS)
    return f"({compute}) / {requests_per_second(match, window)}"


def queue_share(match: str, window: str) -> str:
    """Queue time as a fraction of the time requests spent in Triton."""
    queue = per_model(rate("nv_inference_queue_duration_us", match, window))
    return f"{queue} / {per_model(rate('nv_inference_request_duration_us', match, window))}"


def batch_size_formed(match: str, window: str) -> str:
    """Inferences per execution: the batch the dynamic batcher formed on average."""
    inferences = per_model(rate("nv_inference_count", match, window))
    return f"{inferences} / {per_model(rate('nv_inference_exec_count', match, window))}"


def pending_requests(match: str) -> str:
    return per_model(sel("nv_inference_pending_request_count", match))


def servers_with_model(match: str) -> str:
    """How many scraped servers have the model loaded (Triton drops a model's series when it unloads)."""
    return f"count by (model) ({sel('nv_inference_request_success', match)})"


def models_loaded(expected: tuple[str, ...]) -> str:
    """Per expected model, how many servers have it loaded: 0 (not absent) for one that none has."""
    if not expected:
        raise ValueError("models_loaded needs at least one model name")
    names = "|".join(expected)
    zeros = " or ".join(f'label_replace(vector(0), "model", "{name}", "", "")' for name in expected)
    loaded = servers_with_model(f'model=~"{names}"')
    return f"{loaded} or on(model) ({zeros})"


def server_queue_us_per_request(match: str, window: str, by: str = SERVER_LABELS) -> str:
    """Queue µs per request of each server over all its models: the weighted figure #8979 asks for. At least one
    request per window in the denominator keeps an idle server at 0 instead of NaN."""
    queue = f"sum by ({by}) (increase({sel('nv_inference_queue_duration_us', match)}[{window}]))"
    requests = f"sum by ({by}) (increase({sel('nv_inference_request_success', match)}[{window}]))"
    return f"{queue} / clamp_min({requests}, 1)"


def triton_up() -> str:
    return f'up{{job="{TRITON_JOB}"}}'


def cpu_utilization(match: str = "") -> str:
    """Host CPU use as Triton reads it from /proc/stat (0..1)."""
    return sel("nv_cpu_utilization", match)


def memory_used_ratio(match: str = "") -> str:
    return f"{sel('nv_cpu_memory_used_bytes', match)} / {sel('nv_cpu_memory_total_bytes', match)}"


def heals(window: str) -> str:
    """Models the supervisor reloaded because a backend process died, by outcome."""
    return f"sum by (model, outcome) (increase(modelport_supervisor_heals_total[{window}]))"


def restarts(window: str) -> str:
    """tritonserver restarts after it exited unexpectedly, by outcome, per supervised server."""
    return f"sum by (instance, outcome) (increase(modelport_supervisor_restarts_total[{window}]))"


def restarts_per_server(window: str) -> str:
    """Every tritonserver restart after a crash, whatever its outcome, per supervised server."""
    return f"sum by (instance) (increase(modelport_supervisor_restarts_total[{window}]))"


def judged(match: str, window: str) -> str:
    """Predictions the gateway's feedback judged, per model and version (gateway/feedback.py)."""
    return f"sum by (model, version) (increase({sel('modelport_gateway_feedback_judged_total', match)}[{window}]))"


def live_accuracy(match: str, window: str) -> str:
    """The share of judged predictions that were right, per model and version, weighted over every gateway."""
    correct = f"sum by (model, version) ({rate('modelport_gateway_feedback_correct_total', match, window)})"
    return f"{correct} / sum by (model, version) ({rate('modelport_gateway_feedback_judged_total', match, window)})"


def run_window(seconds: float) -> str:
    """A range covering a run of this many seconds (at least 15 s, so a short run still spans a few scrapes)."""
    return f"{max(15, int(seconds + 0.999))}s"


def run_queries(seconds: float) -> tuple[tuple[str, str], ...]:
    """(question, PromQL) about a load test of this length, each meant to be evaluated at the run's end."""
    w = run_window(seconds)
    return (
        ("requests/s per model", requests_per_second("", w)),
        ("failures/s per model and reason", failures_per_second("", w)),
        ("p99 latency ms per model (Triton's summary at the end)", latency_quantile_ms("0.99", "")),
        ("queue µs per request per model", queue_us_per_request("", w)),
        ("compute µs per request per model", compute_us_per_request("", w)),
        ("batch size formed per model", batch_size_formed("", w)),
        ("queue µs per request per server (the autoscaling metric)", server_queue_us_per_request("", w)),
    )


# ---- versions and rollouts, from the gateway (gateway/metrics.py, gateway/rollout.py, docs/lifecycle.md) ----------
# The gateway labels each answer with the version that gave it. A version is the canary while the gateway exports
# modelport_gateway_rollout_canary_percent for it; every other version with traffic is stable (or was, within the
# window). A rollout moves every variant of a model in lockstep, so each Triton name has its own series.

GATEWAY_REQUESTS = "modelport_gateway_request_duration_seconds"
CANARY_GAUGE = "modelport_gateway_rollout_canary_percent"
JUDGED = "modelport_gateway_feedback_judged_total"
BY_VERSION = "model, version"


def per_version(expression: str) -> str:
    return f"sum by ({BY_VERSION}) ({expression})"


def canary(expression: str, match: str = "") -> str:
    """The series of `expression` (by model and version) that belong to the model's current canary."""
    return f"(({expression}) and on({BY_VERSION}) {sel(CANARY_GAUGE, match)})"


def not_canary(expression: str, match: str = "") -> str:
    """The series of `expression` (by model and version) of every version that is not the current canary."""
    return f"(({expression}) unless on({BY_VERSION}) {sel(CANARY_GAUGE, match)})"


def version_requests_per_second(match: str, window: str) -> str:
    """Answers per second through the gateway, per model and the version that answered."""
    return per_version(rate(f"{GATEWAY_REQUESTS}_count", match, window))


def version_requests(match: str, window: str) -> str:
    return per_version(f"increase({sel(f'{GATEWAY_REQUESTS}_count', match)}[{window}])")


def version_calls(match: str, window: str) -> str:
    """The gateway's calls to each version within the window, answered or mirrored, that the version ran (ok or
    failed; not those Triton did not serve it for)."""
    calls = sel("modelport_gateway_version_calls_total", match, 'result=~"ok|error"')
    return per_version(f"increase({calls}[{window}])")


def version_error_ratio(match: str, window: str) -> str:
    """The share of the gateway's calls to a version that failed; 0, not absent, for a version with none. A canary's
    failed request is answered by stable, so its failures show here, never as a 5xx of the request histogram."""
    calls = per_version(rate("modelport_gateway_version_calls_total", ", ".join(filter(None, (match,
                                                                                           'result=~"ok|error"'))),
                             window))
    failed = per_version(rate("modelport_gateway_version_calls_total", ", ".join(filter(None, (match,
                                                                                            'result="error"'))),
                              window))
    return f"({failed} or 0 * {calls}) / {calls}"


def _latency_buckets(match: str, window: str) -> str:
    """Successful answers' latency buckets by model, version and le (a refusal's few microseconds are no latency)."""
    ok = ", ".join(filter(None, (match, 'status=~"2.."')))
    return f"sum by ({BY_VERSION}, le) ({rate(f'{GATEWAY_REQUESTS}_bucket', ok, window)})"


def version_latency_quantile_ms(quantile: float, match: str, window: str) -> str:
    """A latency quantile per model and version from the gateway's histograms (they merge across replicas)."""
    return f"histogram_quantile({quantile:g}, {_latency_buckets(match, window)}) * 1000"


def canary_p99_ratio(match: str, window: str) -> str:
    """The canary's p99 over stable's (every other version's answers, merged), per model; labelled with the canary's
    version."""
    buckets = _latency_buckets(match, window)
    canary_p99 = f"histogram_quantile(0.99, {canary(buckets, match)})"
    stable_p99 = f"histogram_quantile(0.99, sum by (model, le) ({not_canary(buckets, match)}))"
    return f"{canary_p99} / on(model) group_left() {stable_p99}"


def compared(match: str, window: str) -> str:
    """Requests the gateway sent to both stable and the candidate (shadow, or a canary answer) and compared."""
    return per_version(f"increase({sel('modelport_gateway_shadow_compared_total', match)}[{window}])")


def disagreement(match: str, window: str) -> str:
    """The share of compared requests where the candidate's top-1 differed from stable's, per model and version."""
    disagreed = per_version(rate("modelport_gateway_shadow_disagreed_total", match, window))
    return f"{disagreed} / {per_version(rate('modelport_gateway_shadow_compared_total', match, window))}"


def canary_accuracy_drop(match: str, window: str, min_stable_judged: int = 1) -> str:
    """Stable's live accuracy minus the canary's, per model, labelled with the canary's version; the judged
    predictions of every version but the canary count as stable's, once there are `min_stable_judged` of them."""
    correct, judged = (per_version(rate(f"modelport_gateway_feedback_{c}_total", match, window))
                       for c in ("correct", "judged"))
    counted = f"sum by (model) ({not_canary(per_version(f'increase({sel(JUDGED, match)}[{window}])'), match)})"
    stable = (f"((sum by (model) ({not_canary(correct, match)}) / sum by (model) ({not_canary(judged, match)})) "
              f"and on(model) ({counted} >= {min_stable_judged}))")
    return f"{stable} - on(model) group_right() ({canary(correct, match)} / {canary(judged, match)})"


def rollout_actions(match: str, window: str) -> str:
    """Rollout actions (start, promote, rollback) per model, action and who took them (cli, auto) within the window.
    A counter that first appears at 1 has no increase() yet, so a series new within the window counts its value."""
    counter = sel("modelport_gateway_rollout_actions_total", match)
    return (f"sum by (model, action, by) (({counter} unless {counter} offset {window}) "
            f"or increase({counter}[{window}]))")


def stable_version(match: str) -> str:
    return f"max by (model) ({sel('modelport_gateway_rollout_stable_version', match)})"


def canary_percent(match: str) -> str:
    return f"max by ({BY_VERSION}) ({sel(CANARY_GAUGE, match)})"
