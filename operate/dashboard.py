"""The Grafana dashboard, built with grafana-foundation-sdk (types generated from Grafana's own schema), so its JSON
has the structure Grafana defines. Models come from models.toml: the `model` variable lists them, and two rows per
model repeat over it: Triton's view of the model, and the gateway's per version (answers, errors, latency, the
rollout, disagreement with stable, live accuracy). Every query is a function of core/promql.py."""
from __future__ import annotations

import dataclasses
import json

from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.builders import prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as gm

from core import promql
from core.spec import Spec
from operate.rules import model_names

UID = "modelport-triton"
RATE = "$__rate_interval"
MODEL = 'model=~"$model"'
LIVE_WINDOW = "15m"
DATASOURCE = gm.DataSourceRef(type_val="prometheus", uid="${datasource}")


@dataclasses.dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclasses.dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    queries: tuple[Query, ...]
    description: str = ""
    width: int = 8


def server_panels() -> tuple[Panel, ...]:
    return (
        Panel("Triton up", "none", (Query(promql.triton_up(), "{{instance}}"),), "1 while Prometheus scrapes Triton"),
        Panel("CPU utilization (host)", "percentunit", (Query(promql.cpu_utilization(), "{{instance}}"),)),
        Panel("Memory used (host)", "percentunit", (Query(promql.memory_used_ratio(), "{{instance}}"),)),
        Panel("Queue µs per request, all models (the autoscaling metric)", "µs",
              (Query(promql.server_queue_us_per_request("", "1m"), "{{instance}}{{pod}}"),),
              "Weighted over every model a server holds (server issue #8979)"),
        Panel("Backend heals", "short", (Query(promql.heals(RATE), "{{model}} {{outcome}}"),),
              "Model reloads by the supervisor after a backend process died"),
        Panel("Server restarts", "short", (Query(promql.restarts(RATE), "{{instance}} {{outcome}}"),),
              "tritonserver restarts by the supervisor after a crash"),
    )


def model_panels() -> tuple[Panel, ...]:
    latency = tuple(Query(promql.latency_quantile_ms(q, MODEL), f"p{float(q) * 100:g}") for q in promql.QUANTILES)
    return (
        Panel("Requests/s", "reqps", (Query(promql.requests_per_second(MODEL, RATE), "{{model}}"),)),
        Panel("Request latency (Triton summary)", "ms", latency,
              "Quantiles over Triton's summary window, per server; the worst server is shown"),
        Panel("Errors/s by reason", "reqps", (Query(promql.failures_per_second(MODEL, RATE), "{{reason}}"),)),
        Panel("Queue vs compute µs per request", "µs", (
            Query(promql.queue_us_per_request(MODEL, RATE), "queue"),
            Query(promql.compute_us_per_request(MODEL, RATE), "compute (input + infer + output)"),
        )),
        Panel("Batch size formed", "short", (Query(promql.batch_size_formed(MODEL, RATE), "inferences / execution"),),
              "What the dynamic batcher formed on average"),
        Panel("Pending requests", "short", (Query(promql.pending_requests(MODEL), "pending"),)),
        Panel("Servers with the model loaded", "short", (Query(promql.servers_with_model(MODEL), "servers"),)),
    )


def version_panels() -> tuple[Panel, ...]:
    """The gateway's view per version: what each answered, how well, and the rollout that moves them."""
    latency = tuple(Query(promql.version_latency_quantile_ms(q, MODEL, RATE), f"v{{{{version}}}} p{q * 100:g}")
                    for q in (0.5, 0.99))
    return (
        Panel("Answers/s by version (gateway)", "reqps",
              (Query(promql.version_requests_per_second(MODEL, RATE), "v{{version}}"),),
              "Which version answered, as the gateway's Model-Version header says"),
        Panel("Error ratio by version (gateway calls)", "percentunit",
              (Query(promql.version_error_ratio(MODEL, RATE), "v{{version}}"),),
              "Failed calls to each version (a canary's failed request is answered by stable); a canary past its "
              "model's lifecycle.max_error_rate is rolled back"),
        Panel("Latency by version (gateway)", "ms", latency,
              "From the gateway's histograms of successful answers; a canary past lifecycle.max_p99_ratio times "
              "stable's p99 is rolled back"),
        Panel("Rollout: canary share % and stable version", "short", (
            Query(promql.canary_percent(MODEL), "canary v{{version}} %"),
            Query(promql.stable_version(MODEL), "stable version"),
        )),
        Panel("Disagreement with stable by version", "percentunit",
              (Query(promql.disagreement(MODEL, RATE), "v{{version}}"),),
              "Share of compared requests (shadow, or canary) whose top-1 differs from stable's"),
        Panel("Live accuracy by version (feedback)", "percentunit",
              (Query(promql.live_accuracy(MODEL, LIVE_WINDOW), "v{{version}}"),),
              f"Right share of the predictions POST /v1/feedback judged, over {LIVE_WINDOW} (feedback comes slowly)"),
        Panel("Rollout actions", "short",
              (Query(promql.rollout_actions(MODEL, RATE), "{{action}} by {{by}}"),),
              "start, promote, rollback; by cli (python -m operate rollout) or auto (the gateway's limits)"),
    )


def _panel(panel: Panel, panel_id: int) -> timeseries.Panel:
    built = (timeseries.Panel().id(panel_id).title(panel.title).unit(panel.unit).datasource(DATASOURCE).height(8)
             .span(panel.width))
    if panel.description:
        built = built.description(panel.description)
    for ref, query in zip("ABCDEFGH", panel.queries):
        built = built.with_target(prometheus.Dataquery().expr(query.expr).legend_format(query.legend).ref_id(ref)
                                  .datasource(DATASOURCE))
    return built


def build(spec: Spec) -> gm.Dashboard:
    names = model_names(spec)
    model_variable = (
        gd.CustomVariable("model").label("model").values(",".join(names)).multi(True).include_all(True)
        .all_value("|".join(names))
        .current(gm.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )
    board = (
        gd.Dashboard("modelport: Triton").uid(UID).tags(["modelport", "triton"]).refresh("10s").time("now-30m", "now")
        .description("Generated by `make deploy` from models.toml; edit the generator (operate/dashboard.py), not this file.")
        .with_variable(gd.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
        .with_variable(model_variable)
        .with_row(gd.Row("Server").id(1))
    )
    ids = iter(range(2, 1000))
    for panel in server_panels():
        board = board.with_panel(_panel(panel, next(ids)))
    board = board.with_row(gd.Row("Model $model").id(next(ids)).repeat("model"))
    for panel in model_panels():
        board = board.with_panel(_panel(panel, next(ids)))
    board = board.with_row(gd.Row("Versions of $model (gateway)").id(next(ids)).repeat("model"))
    for panel in version_panels():
        board = board.with_panel(_panel(panel, next(ids)))
    return board.build()


def render(spec: Spec) -> str:
    return json.dumps(build(spec), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def expressions(document: dict) -> list[str]:
    """Every PromQL expression in a dashboard JSON, rows and repeated rows included."""
    found = []
    for panel in document.get("panels", []):
        for inner in [panel, *panel.get("panels", [])]:
            found += [target["expr"] for target in inner.get("targets", []) if "expr" in target]
    return found
