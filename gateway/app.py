"""The gateway's ASGI app: a label-aware JSON API generated from models.toml in front of Triton, and the web page.

A predict request goes through, in order: the client's failed authentications (429), the API key or bearer token
(401/403), its token bucket (429), the body's size and deadline (413/408), a bound on its JSON values, then UTF-8,
nesting depth and JSON syntax in one pass (400), the model's inputs (422), the pixels its images decode to, charged
to the same bucket (429/413), the model's load bound (503), and only then Triton; its answer goes to the payload log
and the feedback index when they are on (gateway/payload_log.py, gateway/feedback.py). Which version of the model
answers is the lifecycle's choice (gateway/routing.py: stable, a canary's share, or stable with a shadow copy); the
answer says it in `Model-Version`. What comes before (connections, request line, headers) is gateway/protocol.py's.
Every failure is problem details (gateway/problems.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Optional

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

import modelport
from core.spec import Spec
from gateway import bodies, docs, explaining, images, inputs, problems, status
from gateway.accesslog import RequestContext, access_logger
from gateway.backend import TritonBackend
from gateway.catalogue import Endpoint, endpoints
from gateway.feedback import FeedbackIndex
from gateway.keys import ApiKey, KeyStore
from gateway.metrics import GatewayMetrics
from gateway.options import GatewayOptions, RateLimit
from gateway.payload_log import PayloadLog, PayloadRecord
from gateway.quality import reference_predictions
from gateway.ratelimit import RateLimiter
from gateway.routing import Routing
from gateway.shedding import ModelGate
from gateway.tokens import TokenGrant, TokenVerifier, looks_like_jwt

STATIC = Path(__file__).parent / "static"
FEEDBACK_MAX_VALUES = 64  # a feedback document holds four scalars (a label may hold commas)
# The page loads nothing from anywhere else: no CDN, no inline script.
PAGE_CSP = "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"
_log = logging.getLogger("modelport.gateway")
VERSION_HEADER = "Model-Version"


@dataclass(frozen=True)
class Principal:
    id: str  # the key's id, the token's subject, or the client's address without auth
    limit: RateLimit
    key: Optional[ApiKey] = None  # None without auth, or for a token
    grant: Optional[TokenGrant] = None  # a verified bearer token's models and scopes

    def allows(self, model: str) -> bool:
        if self.grant is not None:
            return self.grant.allows(model)
        return self.key is None or self.key.allows(model)

    @property
    def reads_metrics(self) -> bool:
        """/metrics on the API port: a key for every model, or a token with the `metrics` scope."""
        if self.grant is not None:
            return "metrics" in self.grant.scopes
        return self.key is None or "*" in self.key.models

    @property
    def gives_feedback(self) -> bool:
        """POST /v1/feedback: a key or token with the `feedback` scope (and the model, checked per request)."""
        if self.grant is not None:
            return "feedback" in self.grant.scopes
        return self.key is None or "feedback" in self.key.scopes

    @property
    def administers(self) -> bool:
        """GET /v1/rollouts/{model}: a key or token with the `admin` scope."""
        if self.grant is not None:
            return "admin" in self.grant.scopes
        return self.key is None or "admin" in self.key.scopes


@dataclass
class Gateway:
    options: GatewayOptions
    endpoints: dict[str, Endpoint]
    keys: Optional[KeyStore]
    backend: TritonBackend
    limiter: RateLimiter
    gates: dict[str, ModelGate]
    metrics: GatewayMetrics
    routing: Routing
    tokens: Optional[TokenVerifier] = None
    payload_log: Optional[PayloadLog] = None
    feedback: Optional[FeedbackIndex] = None

    def record(self, request: Request, endpoint: Endpoint, parsed: inputs.Request, outputs: list, rendered: dict,
               started: float, version: str) -> None:
        """The answer, to the payload log and the feedback index (when on): references only, nothing copied."""
        request_id = getattr(request.state, "request_id", "")
        if self.feedback is not None and request_id:
            self.feedback.remember(request_id, endpoint, version, outputs)
        if self.payload_log is not None:
            self.payload_log.offer(PayloadRecord(request_id, endpoint.name, version,
                                                 time.perf_counter() - started, parsed.arrays,
                                                 rendered["predictions"], time.time()))

    def authorize(self, request: Request, model: Optional[str]) -> Principal:
        client = request.client.host if request.client else "unknown"
        if not self.options.auth:
            return self.take_token(Principal(f"client:{client}", self.options.rate_limit))
        failures = f"failed-auth:{client}"
        wait = self.limiter.take(failures, self.options.failed_auth, cost=0)
        if wait:  # this client sent too many bad keys or tokens: it is not let to try more for now
            raise problems.RateLimited(f"{client}: too many failed authentications (more than "
                                       f"{self.options.failed_auth.burst}, then "
                                       f"{self.options.failed_auth.rate_per_s:g}/s)", wait,
                                       fix="fix the key or token; retry after Retry-After seconds")
        try:
            principal = self._authenticate(request)
        except problems.Unauthorized:
            self.limiter.take(failures, self.options.failed_auth)
            raise
        request.state.key = principal.id
        if model is not None and model in self.endpoints and not principal.allows(model):
            if principal.grant is not None:
                raise problems.Forbidden(f"the token of {principal.grant.subject} may call "
                                         f"{', '.join(principal.grant.models) or 'no model'}, not {model}",
                                         fix=f"ask the issuer for a token whose {self.tokens.options.models_claim} "
                                             f"claim names {model}")
            raise problems.Forbidden(f"API key {principal.key.id} may call {', '.join(principal.key.models)}, not "
                                     f"{model}", fix=f"use a key scoped for {model} (`python -m gateway keys add "
                                                     f"--models {model}`)")
        return self.take_token(principal)

    def _authenticate(self, request: Request) -> Principal:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise problems.Unauthorized("no API key: this gateway needs `Authorization: Bearer <key>`",
                                        error="invalid_request")
        default = self.options.rate_limit
        if self.tokens is not None and looks_like_jwt(token):
            grant = self.tokens.verify(token)
            return Principal(f"jwt:{grant.subject}", default, grant=grant)
        key = self.keys.authenticate(token)
        if key is None:
            raise problems.Unauthorized("the API key is not one this gateway knows")
        return Principal(key.id, RateLimit(key.rate_per_s or default.rate_per_s, key.burst or default.burst), key)

    def take_token(self, principal: Principal, cost: float = 1.0) -> Principal:
        wait = self.limiter.take(principal.id, principal.limit, cost)
        if wait:
            raise problems.RateLimited(f"{principal.id}: more than {principal.limit.rate_per_s:g} requests/s "
                                       f"(bursts of {principal.limit.burst})", wait,
                                       fix="retry after Retry-After seconds, or ask for a key with a higher rate")
        return principal

    def charge_decoding(self, principal: Principal, parsed: inputs.Request) -> None:
        """Images cost the key's bucket by the pixels they decode to, beyond the request's one token."""
        items = [item for array in parsed.arrays.values() if array.dtype == object for item in array.ravel()]
        extra = images.tokens_for(items, self.options.limits.pixels_per_token) if items else 0
        if not extra:
            return
        if extra + 1 > principal.limit.burst:
            raise problems.BodyTooLarge(
                f"the images decode to {extra + 1} x {self.options.limits.pixels_per_token} pixels or more, "
                f"{extra + 1} requests of {principal.id}'s budget, more than its burst of {principal.limit.burst}",
                fix="send smaller images (the models resize them anyway), or fewer per request")
        self.take_token(principal, extra)

    def visible(self, principal: Principal) -> list[Endpoint]:
        return [e for e in self.endpoints.values() if principal.allows(e.name)]

    def render(self, endpoint: Endpoint, outputs: list[modelport.ModelOutput]) -> dict:
        predictions = []
        for item in outputs:
            values = {}
            for name, value in item.items():
                if isinstance(value, modelport.Prediction):
                    self.metrics.observe_prediction(endpoint.name, name, value.label, value.score)
                    values[name] = {"label": value.label, "score": value.score, "scores": dict(value.scores)}
                else:
                    values[name] = np.asarray(value).tolist()
            only = next(iter(values.values()))
            predictions.append(only if endpoint.flat and isinstance(only, dict) else {"outputs": values})
        return {"model": endpoint.name, "predictions": predictions}


# ---- reading a predict request ------------------------------------------------------------------------------------

async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


async def parse(endpoint: Endpoint, request: Request, body: bytes, gateway: Gateway) -> inputs.Request:
    content_type = request.headers.get("content-type", "")
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if media == "application/json":
        charset = next((p.split("=", 1)[1].strip().strip('"').lower() for p in params.split(";")
                        if p.strip().lower().startswith("charset=")), "utf-8")
        if charset != "utf-8":
            raise problems.UnsupportedMediaType(f"charset={charset}: JSON bodies are UTF-8 here",
                                                fix="encode the body as UTF-8 (and say charset=utf-8, or nothing)")
        limits, max_values = gateway.options.limits, endpoint.max_json_values
        if len(body) < bodies.PARSE_INLINE_BYTES:
            return inputs.from_json(endpoint, bodies.parse_json(body, limits, max_values))
        # a large body is parsed in a thread: the event loop keeps answering others (/healthz) meanwhile
        return await asyncio.to_thread(lambda: inputs.from_json(endpoint, bodies.parse_json(body, limits, max_values)))
    if media == "multipart/form-data" and endpoint.takes_files:
        return await _from_multipart(endpoint, request, body, gateway)
    accepted = "application/json" + (" or multipart/form-data (one file per item)" if endpoint.takes_files else "")
    raise problems.UnsupportedMediaType(f"{endpoint.name} takes {accepted}, not {content_type or 'no Content-Type'}",
                                        fix=f"send Content-Type: {accepted.split(' ')[0]}")


async def _from_multipart(endpoint: Endpoint, request: Request, body: bytes, gateway: Gateway) -> inputs.Request:
    parser = MultiPartParser(request.headers, _once(body), max_files=endpoint.max_items,
                             max_fields=endpoint.max_items + 1, max_part_size=gateway.options.limits.max_body_bytes)
    try:
        form = await parser.parse()
    except MultiPartException as error:
        raise problems.MalformedBody(f"the multipart body cannot be read: {error.message}",
                                     fix=f"send at most {endpoint.max_items} files, as multipart/form-data") from None
    items, top = [], None
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            items.append(await value.read())
        elif name == "inputs":
            items.append(value.encode("utf-8", "surrogateescape"))
        elif name == "top":
            if not value.strip().isdigit():
                raise problems.InvalidInput(f"top must be a positive integer, got {value!r}", field="/top")
            top = int(value)
        else:
            raise problems.InvalidInput(f"unknown form field {name!r}: send files (any field name), `inputs` "
                                        f"texts and optionally `top`", field=f"/{name}")
    return inputs.from_files(endpoint, items, top)


# ---- the app ------------------------------------------------------------------------------------------------------

def problem_response(request: Request, problem: problems.Problem) -> JSONResponse:
    request.state.problem = problem.slug
    body = problem.body(request.url.path, getattr(request.state, "request_id", ""))
    return JSONResponse(body, status_code=problem.status, headers=problem.headers, media_type=problems.PROBLEM_JSON)


class Edge:
    """The ASGI app uvicorn runs: the request context (IDs, access log, security headers), CORS when configured, and
    the predict fast path, around the FastAPI app that serves everything else (and the OpenAPI document)."""

    def __init__(self, api: FastAPI, asgi):
        self.api = api
        self.asgi = asgi

    @property
    def metrics_registry(self):
        return self.api.state.metrics_registry

    async def __call__(self, scope, receive, send):
        await self.asgi(scope, receive, send)


def create_app(options: GatewayOptions, spec: Spec, keys: Optional[KeyStore]) -> Edge:
    served = {e.name: e for e in endpoints(spec, options.repository)}
    gates = {name: ModelGate(name, options.shedding) for name in served}
    references = {name: reference_predictions(spec, options.repository, name) for name in served}
    metrics = GatewayMetrics(served, gates, {k: v for k, v in references.items() if v}, options.drift_window,
                             options.drift_min_samples)
    backend = TritonBackend(options.triton_url, options.triton_timeout_s)
    routing = Routing(served, options.repository, backend, metrics.registry, references, options.drift_window,
                      options.drift_min_samples, options.mirror_max_in_flight)
    gateway = Gateway(options, served, keys if options.auth else None, backend, RateLimiter(), gates, metrics,
                      routing, TokenVerifier(options.tokens) if options.auth and options.tokens else None,
                      PayloadLog(options.payload_log, metrics.registry) if options.payload_log else None,
                      FeedbackIndex(options.feedback_window, metrics.registry) if options.feedback_window else None)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        warm = asyncio.create_task(_warm(gateway))
        watch = asyncio.create_task(routing.watch())
        if gateway.payload_log is not None:
            gateway.payload_log.start()
        yield
        warm.cancel()
        watch.cancel()
        await routing.close()
        await gateway.backend.close()
        if gateway.payload_log is not None:
            await asyncio.to_thread(gateway.payload_log.close)

    app = FastAPI(title="modelport gateway", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None,
                  # no OpenTelemetry here (the gateway has its own metrics): spare the per-request provider lookups
                  telemetry={"tracing": False, "metrics": False, "logs": False},
                  description="Label-aware JSON API for the models of models.toml, in front of Triton. "
                              "Errors are problem details (RFC 9457).")
    add_problem_schema(app)
    app.state.metrics_registry = metrics.registry

    @app.exception_handler(problems.Problem)
    async def on_problem(request: Request, problem: problems.Problem):
        return problem_response(request, problem)

    @app.exception_handler(HTTPException)
    async def on_http(request: Request, error: HTTPException):
        if error.status_code == 405:
            return problem_response(request, problems.MethodNotAllowed(f"{request.method} is not allowed on "
                                                                       f"{request.url.path}"))
        return problem_response(request, problems.NotFound(f"no route {request.url.path}",
                                                           fix="GET /v1/models lists the models; /docs the API"))

    @app.exception_handler(Exception)
    async def on_bug(request: Request, error: Exception):
        _log.exception("request %s failed", getattr(request.state, "request_id", "?"))
        return problem_response(request, problems.Internal(f"the gateway failed: {type(error).__name__}"))

    limits = options.limits
    handlers = {endpoint.path: _add_predict_route(app, gateway, endpoint) for endpoint in served.values()}

    @app.post("/v1/models/{model}:predict", include_in_schema=False)
    async def unknown_model(model: str, request: Request):
        request.state.predict = True
        names = ", ".join(e.name for e in gateway.visible(gateway.authorize(request, None)))
        raise problems.NotFound(f"no model {model!r}; this gateway serves {names}", fix="GET /v1/models lists them")

    for endpoint in served.values():
        _add_explain_route(app, gateway, endpoint, explaining.decoding_of(endpoint, spec))

    @app.post("/v1/feedback", tags=["feedback"], summary="The true label (or value) of a recent prediction")
    async def feedback(request: Request):
        """`{"request_id": <a predict answer's X-Request-ID>, "label": ...}` (or `"value"`, and `"item"`); needs a
        key with the `feedback` scope for the prediction's model. Counts towards live accuracy in /metrics."""
        principal = gateway.authorize(request, None)
        if not principal.gives_feedback:
            raise problems.Forbidden("feedback needs a key or token with the `feedback` scope",
                                     fix="use a key made with `python -m gateway keys add --scopes feedback`")
        if gateway.feedback is None:
            raise problems.NotFound("feedback is off on this gateway", fix="start it with --feedback-window N")
        document = bodies.parse_json(await bodies.read(request, limits), limits, FEEDBACK_MAX_VALUES)
        request_id = document.get("request_id") if isinstance(document, dict) else None
        judged = gateway.feedback.model_of(request_id)
        if judged is not None and not principal.allows(judged):
            raise problems.Forbidden(f"this key may not call {judged}, so it may not judge its predictions",
                                     fix=f"use a key scoped for {judged} with the feedback scope")
        judgement = gateway.feedback.judge(document)
        routing.observe_feedback(judgement["model"], judgement["version"], judgement["correct"])
        return judgement

    @app.get("/v1/rollouts/{model}", tags=["rollouts"], summary="A model's versions, their figures and its rollout")
    async def rollout(model: str, request: Request):
        """Stable and canary, the mode and share, the limits, and per version over the judging window: calls,
        errors, p50/p99, PSI, comparisons with stable and live accuracy; the last actions. Needs the `admin` scope."""
        if not gateway.authorize(request, None).administers:
            raise problems.Forbidden("rollouts need a key or token with the `admin` scope",
                                     fix="use a key made with `python -m gateway keys add --scopes admin`")
        if model not in served:
            raise problems.NotFound(f"no model {model!r}; this gateway serves {', '.join(served)}",
                                    fix="GET /v1/models lists them")
        return Response(orjson.dumps(routing.report(model)), media_type="application/json")

    made_forms: dict[str, dict] = {}  # read once: the examples come from held-out files

    @app.get("/v1/forms", include_in_schema=False)
    async def forms(request: Request):
        """The page's forms: each model this key may call, with a widget and an example per input."""
        visible = gateway.visible(gateway.authorize(request, None))
        for e in visible:
            if e.name not in made_forms:
                made_forms[e.name] = await asyncio.to_thread(status.form, e, spec)
        return {"models": [made_forms[e.name] for e in visible]}

    @app.get("/v1/status", tags=["status"], summary="Counters per model this key may call, for the page's plots")
    async def model_status(request: Request):
        names = [e.name for e in gateway.visible(gateway.authorize(request, None))]
        return Response(orjson.dumps(status.snapshot(metrics, gates, names, routing.summary)),
                        media_type="application/json")

    @app.get("/v1/models", tags=["models"], summary="The models this key may call")
    async def list_models(request: Request):
        return {"models": [e.describe() for e in gateway.visible(gateway.authorize(request, None))]}

    @app.get("/v1/models/{model}", tags=["models"], summary="One model: its inputs, outputs and labels")
    async def model_metadata(model: str, request: Request):
        gateway.authorize(request, model)
        if model not in served:
            raise problems.NotFound(f"no model {model!r}", fix="GET /v1/models lists them")
        return served[model].describe()

    @app.get("/healthz", include_in_schema=False)
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz():
        if not await gateway.backend.is_ready():
            raise problems.UpstreamUnavailable(f"Triton at {options.triton_url} is not ready (or the gateway is "
                                               f"still reading its models)")
        return {"status": "ready", "models": list(served)}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request):
        if not gateway.authorize(request, None).reads_metrics:
            raise problems.Forbidden("/metrics needs a key for every model (models \"*\") or a token with the "
                                     "`metrics` scope", fix="scrape the open metrics bind (--metrics-port) instead")
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_document(request: Request):
        """The API as the caller's key sees it: the predict routes of the models it may call, and no others."""
        allowed = {e.path for e in gateway.visible(gateway.authorize(request, None))}
        document = app.openapi()
        paths = {path: item for path, item in document["paths"].items()
                 if not path.endswith((":predict", ":explain"))
                 or path.rsplit(":", 1)[0] + ":predict" in allowed}
        return JSONResponse({**document, "paths": paths})

    @app.get("/problems/{slug}", include_in_schema=False)
    async def problem_type(slug: str):
        known = problems.catalogue()
        if slug not in known:
            raise problems.NotFound(f"no problem type {slug!r}; known: {', '.join(sorted(known))}")
        return problems.describe(known[slug])

    @app.get("/docs", include_in_schema=False)
    async def api_docs(request: Request):
        # a browser opening /docs sends no key: it then lists no model, and says how to see yours
        shown = gateway.visible(gateway.authorize(request, None)) if "authorization" in request.headers or \
            not options.auth else []
        return HTMLResponse(docs.page(shown, options), headers={"Content-Security-Policy": PAGE_CSP})

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": PAGE_CSP,
                                                            "Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    asgi = PredictFastPath(app, handlers=handlers, on_bug=on_bug)
    if options.cors_origins:
        asgi = CORSMiddleware(asgi, allow_origins=list(options.cors_origins), allow_methods=["GET", "POST"],
                              allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
                              expose_headers=["X-Request-ID", "Retry-After", VERSION_HEADER], max_age=600)

    def on_done(state: dict, status: int, seconds: float) -> None:
        if state.get("predict"):
            metrics.observe_request(state.get("model"), status, seconds, state.get("problem"),
                                    state.get("version") or "")

    return Edge(app, RequestContext(asgi, logger=access_logger(options.access_log), on_done=on_done,
                                    hsts=options.tls_cert is not None))


class PredictFastPath:
    """POST to a served model's predict path goes straight to its handler. FastAPI's own middlewares, routing,
    dependency solving and exception layers cost about as much CPU per request as the handler itself (py-spy on the
    benchmark's load); the routes stay registered for /openapi.json, and every other request takes the full stack."""

    def __init__(self, app, handlers: dict, on_bug):
        self.app = app
        self.handlers = handlers
        self.on_bug = on_bug

    async def __call__(self, scope, receive, send):
        handler = self.handlers.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if handler is None:
            return await self.app(scope, receive, send)
        request = Request(scope, receive)
        try:
            response = await handler(request)
        except problems.Problem as problem:
            response = problem_response(request, problem)
        except Exception as error:  # noqa: BLE001 - a bug is a 500 problem, like on the full stack
            response = await self.on_bug(request, error)
        await response(scope, receive, send)


def _add_predict_route(app: FastAPI, gateway: Gateway, endpoint: Endpoint):
    """Register the endpoint's route (for OpenAPI and the full stack) and return its handler (for the fast path)."""
    limits = gateway.options.limits
    gate = gateway.gates[endpoint.name]

    async def predict(request: Request):
        started = time.perf_counter()
        request.state.predict = True
        request.state.model = endpoint.name
        principal = gateway.authorize(request, endpoint.name)
        body = await bodies.read(request, limits)
        parsed = await parse(endpoint, request, body, gateway)
        if endpoint.takes_files:
            gateway.charge_decoding(principal, parsed)
        route = gateway.routing.route(endpoint.name, request.headers)
        async with gate.admit():
            outputs, version = await gateway.routing.predict(endpoint, parsed.arrays, parsed.top, route)
        request.state.version = version
        rendered = gateway.render(endpoint, outputs)
        gateway.record(request, endpoint, parsed, outputs, rendered, started, version)
        return Response(orjson.dumps(rendered), media_type="application/json", headers={VERSION_HEADER: version})

    content = {"application/json": {"schema": endpoint.request_schema()}}
    if endpoint.takes_files:
        content["multipart/form-data"] = {"schema": endpoint.multipart_schema()}
    problem = {"content": {problems.PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    app.add_api_route(
        endpoint.path, predict, methods=["POST"], name=f"predict {endpoint.name}", tags=["models"],
        summary=f"Predict with {endpoint.name}", description=endpoint.spec.description,
        openapi_extra={"requestBody": {"required": True, "content": content}},
        responses={200: {"description": "One prediction per item, labels from the server",
                         "content": {"application/json": {"schema": endpoint.response_schema()}}},
                   **{code: {"description": text, **problem} for code, text in (
                       (400, "Malformed body (not UTF-8, not JSON, nested too deep)"), (401, "No or unknown key"),
                       (403, "Key not scoped for this model"), (408, "Body too slow"), (413, "Body too large"),
                       (415, "Unsupported Content-Type"), (422, "Inputs the model does not take"),
                       (429, "Rate limited (Retry-After)"), (503, "Overloaded or Triton unavailable (Retry-After)"))}})
    return predict


def _add_explain_route(app: FastAPI, gateway: Gateway, endpoint: Endpoint,
                       decoding: Optional[explaining.Decoding]) -> None:
    """POST /v1/models/<name>:explain (gateway/explaining.py): key-scoped like predict, and charged `budget`
    requests of the key's rate limit, since it sends up to that many to Triton."""
    limits = gateway.options.limits
    gate = gateway.gates[endpoint.name]
    mean = explaining.heldout_mean(endpoint)

    async def explain(request: Request):
        principal = gateway.authorize(request, endpoint.name)
        body = await bodies.read(request, limits)
        media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media != "application/json":
            raise problems.UnsupportedMediaType(f"{endpoint.name}:explain takes application/json, not "
                                                f"{media or 'no Content-Type'}",
                                                fix='send Content-Type: application/json; files as {"b64": "..."}')
        wanted = explaining.parse(endpoint, bodies.parse_json(body, limits, endpoint.max_json_values), decoding)
        if wanted.budget > 1:
            if wanted.budget > principal.limit.burst:
                raise problems.RateLimited(f"a budget of {wanted.budget} requests is more than {principal.id}'s "
                                           f"burst of {principal.limit.burst}", 1,
                                           fix=f"send \"budget\": {principal.limit.burst} or less")
            gateway.take_token(principal, wanted.budget - 1)
        async with gate.admit():
            explained = decoding.classifier if decoding is not None else endpoint.name
            found = await explaining.explain(gateway.backend.client, endpoint, decoding, mean, wanted,
                                             gateway.routing.stable(explained))
        return Response(orjson.dumps(found, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")

    app.add_api_route(
        f"/v1/models/{endpoint.name}:explain", explain, methods=["POST"], name=f"explain {endpoint.name}",
        tags=["explain"], summary=f"Explain a prediction of {endpoint.name}",
        description="One item as predict takes it, and optionally `method` (occlusion, leave-one-out, kernel-shap), "
                    "`output`, `budget` (requests, 1..32, each charged to the key's rate limit), `baseline`, "
                    "`patch`, `seed`. Returns per-class attributions (docs/gateway.md).",
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
            "schema": explaining.request_schema(endpoint)}}}})


async def _warm(gateway: Gateway) -> None:
    """Wait for Triton and read every model's metadata, retrying until it works; /readyz says when it has."""
    names = tuple(gateway.endpoints)
    while True:
        try:
            missing = await gateway.backend.wait_ready(names, timeout_s=5.0)
            if missing:
                _log.warning("Triton at %s does not serve %s: their endpoints answer 503", gateway.options.triton_url,
                             ", ".join(missing))
            _log.info("gateway ready in front of Triton at %s", gateway.options.triton_url)
            return
        except modelport.ModelportError as error:
            _log.warning("waiting for Triton at %s: %s", gateway.options.triton_url, error.message)
            await asyncio.sleep(1.0)


def add_problem_schema(app: FastAPI) -> None:
    """Problem details in the OpenAPI components, referenced by every predict route's error responses."""
    original = app.openapi

    def openapi():
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = {
            "type": "object", "required": ["type", "title", "status", "detail"],
            "properties": {"type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                           "detail": {"type": "string"}, "instance": {"type": "string"},
                           "request_id": {"type": "string"}, "field": {"type": "string"},
                           "fix": {"type": "string"}}}
        return schema

    app.openapi = openapi

