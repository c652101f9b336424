"""The HTTP recommendation service (FastAPI): a thin layer over :class:`~.service.RecService`.

Endpoints (OpenAPI schema at ``/openapi.json``, docs at ``/docs``)::

    GET  /                                         the explorer page
    GET  /health                                   model, serving kind, index, sizes
    GET  /v1/users?q=&limit=                       user ids containing q
    GET  /v1/users/{user_id}/history?limit=        the user's known items, newest first
    GET  /v1/users/{user_id}/recommendations?k=&exclude_seen=
    POST /v1/recommendations  {"history": [...], "k": 10}     an anonymous user / a session
    GET  /v1/items?q=&limit=                       items whose id or title contains q
    GET  /v1/items/{item_id}/similar?k=
    POST /v1/items  {"item_id", "title", "fields", "vectors"}  add an item from its content (API key)
    GET  /metrics                                  Prometheus text format

Errors: unknown ids -> 404 naming the id; invalid parameters -> 422 naming the field; bodies over
``max_body_bytes`` -> 413; a mutating call without the API key (``X-API-Key``, compared with the environment
variable ``api_key_env``, default ``RECEMBED_API_KEY``) -> 401, with a wrong key -> 403 (and 403 when the
server has no key set: mutations are then off); a model that cannot do something -> 501.

The bundle is loaded (and verified) in ``lifespan``. Handlers are ``async`` and compute inline: each request
is well under a millisecond of NumPy / FAISS, so a worker runs them one at a time on its event loop (no thread
hand-offs, no locks); parallelism comes from ``--workers``.

The hot path, ``GET /v1/users/{user_id}/recommendations``, is answered by :class:`ServingMiddleware` before
FastAPI's routing and parameter validation when the request is well-formed (a known user, ``k`` and
``exclude_seen`` plain and in range): same JSON, same headers, same metrics. Anything else (an unknown user, a
parameter to reject, percent-encoded query strings) falls through to the FastAPI route, which gives the
documented errors. JSON is written by orjson when installed (the ``serve`` extra), else by ``json``.
"""

from __future__ import annotations

import gc
import hmac
import json
import os
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastapi import Body, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from ..errors import DataError, RecembedError
from .bundle import load_bundle
from .service import Conflict, NotFound, NotSupported, RecService, ServiceOptions

try:
    import orjson
except ImportError:  # pragma: no cover - orjson comes with the serve extra
    orjson = None

MAX_K = 1000
MAX_HISTORY = 1000
USER_RECS_ROUTE = "/v1/users/{user_id}/recommendations"
_TRUE = frozenset((b"1", b"on", b"t", b"true", b"y", b"yes"))  # what pydantic reads as a bool (any case)
_FALSE = frozenset((b"0", b"off", b"f", b"false", b"n", b"no"))


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes (orjson when installed: several times faster than ``json`` on the hot path)."""
    if orjson is not None:
        return orjson.dumps(obj)
    return json.dumps(obj, separators=(",", ":")).encode()


# --------------------------------------------------------------------------------------------
# request / response schemas (documented in the OpenAPI schema)
# --------------------------------------------------------------------------------------------
class ItemOut(BaseModel):
    item_id: str
    title: str | None = None
    score: float | None = None


class RecommendationsOut(BaseModel):
    items: list[ItemOut]
    k: int
    index: str
    user_id: str | None = None


class HistoryOut(BaseModel):
    user_id: str
    items: list[ItemOut]


class HistoryRequest(BaseModel):
    history: list[str | int] = Field(..., min_length=1, max_length=MAX_HISTORY,
                                     description="Item ids, oldest first.")
    k: int = Field(10, ge=1, le=MAX_K)


class NewItem(BaseModel):
    item_id: str = Field(..., min_length=1, max_length=512)
    title: str | None = Field(None, max_length=10_000)
    fields: dict[str, str | list[str]] = Field(default_factory=dict,
                                               description="Text fields by column name (the run's text columns).")
    vectors: dict[str, list[float]] = Field(default_factory=dict,
                                            description="Other content modalities by name, as numbers.")


# --------------------------------------------------------------------------------------------
# metrics (Prometheus text format), kept by a small ASGI middleware
# --------------------------------------------------------------------------------------------
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], int] = {}
        self.hist: dict[tuple[str, str], list[int]] = {}
        self.sums: dict[tuple[str, str], float] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, str(status))
        self.requests[key] = self.requests.get(key, 0) + 1
        hk = (method, route)
        counts = self.hist.setdefault(hk, [0] * (len(BUCKETS) + 1))
        for i, b in enumerate(BUCKETS):
            if seconds <= b:
                counts[i] += 1
                break
        else:
            counts[-1] += 1
        self.sums[hk] = self.sums.get(hk, 0.0) + seconds

    def render(self, service: RecService | None) -> str:
        lines = ["# HELP recembed_requests_total HTTP requests by method, route and status.",
                 "# TYPE recembed_requests_total counter"]
        for (method, route, status), n in sorted(self.requests.items()):
            lines.append(f'recembed_requests_total{{method="{method}",route="{route}",status="{status}"}} {n}')
        lines += ["# HELP recembed_request_duration_seconds Request latency by method and route.",
                  "# TYPE recembed_request_duration_seconds histogram"]
        for (method, route), counts in sorted(self.hist.items()):
            label = f'method="{method}",route="{route}"'
            total = 0
            for b, c in zip((*BUCKETS, float("inf")), counts):
                total += c
                le = "+Inf" if b == float("inf") else repr(b)
                lines.append(f'recembed_request_duration_seconds_bucket{{{label},le="{le}"}} {total}')
            lines.append(f"recembed_request_duration_seconds_sum{{{label}}} {self.sums[(method, route)]:.6f}")
            lines.append(f"recembed_request_duration_seconds_count{{{label}}} {total}")
        if service is not None:
            info = service.info()
            lines += ["# HELP recembed_items Items the service can recommend (added ones included).",
                      "# TYPE recembed_items gauge", f"recembed_items {info['items']}",
                      "# HELP recembed_added_items Items added from content since start-up.",
                      "# TYPE recembed_added_items gauge", f"recembed_added_items {info['added_items']}",
                      "# HELP recembed_users Known users.", "# TYPE recembed_users gauge",
                      f"recembed_users {info['users']}",
                      "# HELP recembed_bundle_info The served bundle.", "# TYPE recembed_bundle_info gauge",
                      f'recembed_bundle_info{{model="{info["model"]}",serving="{info["serving"]}",'
                      f'index="{info["index"]}"}} 1']
        return "\n".join(lines) + "\n"


class _BodyTooLarge(BaseException):  # noqa: N818 - not an Exception: FastAPI's body parsing would turn it into 400
    """Raised from ``receive`` when a body passes the limit; the middleware answers 413."""


def _error_response(status: int, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status)


class ServingMiddleware:
    """Pure ASGI: refuses bodies over ``max_body_bytes`` with 413 (by Content-Length, or while reading a chunked
    body) and records every request in :class:`Metrics` under its route template."""

    def __init__(self, app: Any, metrics: Metrics, max_body_bytes: int) -> None:
        self.app, self.metrics, self.max_body_bytes = app, metrics, max_body_bytes

    def _too_large(self) -> JSONResponse:
        return _error_response(413, f"request body larger than {self.max_body_bytes} bytes")

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        length = None
        for name, value in scope.get("headers") or ():
            if name == b"content-length":
                length = value
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await self._too_large()(scope, receive, send)
            self.metrics.observe(scope["method"], "(body too large)", 413, time.perf_counter() - start)
            return
        if scope["method"] == "GET" and scope["path"].endswith("/recommendations"):
            body = _fast_user_recommendations(scope)
            if body is not None:
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-length", str(len(body)).encode()),
                                        (b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": body})
                self.metrics.observe("GET", USER_RECS_ROUTE, 200, time.perf_counter() - start)
                return
        status = {"code": 500, "started": False}
        received = 0

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if status["started"]:
                raise
            status["code"] = 413
            await self._too_large()(scope, receive, send)
        route = scope.get("route")
        path = getattr(route, "path", None) or ("(unmatched)" if status["code"] == 404 else scope["path"])
        self.metrics.observe(scope["method"], path, status["code"], time.perf_counter() - start)


def _fast_user_recommendations(scope: dict) -> bytes | None:
    """The JSON body of ``GET /v1/users/{user_id}/recommendations`` for a well-formed request, computed without
    FastAPI's routing and validation; None for anything else (the route then answers, errors included)."""
    path = scope["path"]
    if scope.get("root_path") or not path.startswith("/v1/users/"):
        return None
    user_id = path[len("/v1/users/"): -len("/recommendations")]
    if not user_id or "/" in user_id:
        return None
    k, exclude_seen = 10, True
    qs = scope.get("query_string") or b""
    if qs:
        if b"%" in qs or b"+" in qs:  # encoded characters: leave the parsing to Starlette
            return None
        seen_k = seen_excl = False
        for part in qs.split(b"&"):
            name, eq, value = part.partition(b"=")
            if name == b"k":
                if seen_k or not eq or not value.isdigit() or len(value) > 7:
                    return None
                k, seen_k = int(value), True
                if not 1 <= k <= MAX_K:
                    return None
            elif name == b"exclude_seen":
                low = value.lower()
                if seen_excl or not eq or (low not in _TRUE and low not in _FALSE):
                    return None
                exclude_seen, seen_excl = low in _TRUE, True
    app = scope.get("app")
    svc = getattr(getattr(app, "state", None), "service", None)
    if svc is None or user_id not in svc.user_pos:
        return None
    try:
        items = svc.recommend_user(user_id, k, exclude_seen)
    except RecembedError:
        return None
    return dumps({"user_id": user_id, "k": k, "index": svc.index_kind, "items": items})


# --------------------------------------------------------------------------------------------
# the app
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AppConfig:
    bundle: str
    """Bundle directory (``recembed bundle`` output)."""
    options: ServiceOptions = ServiceOptions()
    """Index choice, threads, whether items may be added."""
    api_key_env: str = "RECEMBED_API_KEY"
    """Environment variable holding the API key of the mutating endpoints."""
    max_body_bytes: int = 1 << 20
    """Largest request body accepted (413 beyond)."""


def _page() -> str:
    return resources.files("recembed.serve").joinpath("page/index.html").read_text(encoding="utf-8")


def _json(obj: Any, status: int = 200) -> Response:
    return Response(dumps(obj), status_code=status, media_type="application/json")


def create_app(config: AppConfig) -> FastAPI:
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        bundle = load_bundle(config.bundle)  # verifies format and checksums: a bad bundle stops start-up
        app.state.service = RecService(bundle, config.options)
        gc.collect()
        gc.freeze()  # the bundle's objects leave the collector's generations: no long full collections later
        yield
        gc.unfreeze()
        app.state.service = None

    app = FastAPI(title="recembed recommendation service", version="1", lifespan=lifespan,
                  description="Recommendations, similar items and new items from content, served from a "
                              "verified recembed bundle.")
    app.add_middleware(ServingMiddleware, metrics=metrics, max_body_bytes=config.max_body_bytes)

    def service(request: Request) -> RecService:
        return request.app.state.service

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return _error_response(404, str(exc), entity=exc.entity, ids=exc.ids)

    @app.exception_handler(NotSupported)
    async def _not_supported(request: Request, exc: NotSupported) -> JSONResponse:
        return _error_response(501, str(exc))

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict) -> JSONResponse:
        return _error_response(409, str(exc))

    @app.exception_handler(DataError)
    async def _data_error(request: Request, exc: DataError) -> JSONResponse:
        return _error_response(422, str(exc), field=exc.field)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(x) for x in first.get("loc", ()) if x not in ("query", "body", "path", "header")]
        name = ".".join(loc) or "body"
        message = f"invalid {name!r}: {first.get('msg', 'invalid value')}"
        return _error_response(422, message, field=name,
                               errors=[{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
                                       for e in errors])

    def require_key(x_api_key: str | None) -> JSONResponse | None:
        expected = os.environ.get(config.api_key_env)
        if not expected:
            return _error_response(403, f"mutations are off: the server has no API key (set {config.api_key_env})")
        if x_api_key is None:
            return _error_response(401, "missing API key: send it in the X-API-Key header")
        if not hmac.compare_digest(x_api_key.encode(), expected.encode()):
            return _error_response(403, "wrong API key")
        return None

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(_page())

    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        return {"status": "ok", **service(request).info()}

    @app.get("/metrics", response_class=Response)
    async def prometheus(request: Request) -> Response:
        return Response(metrics.render(service(request)), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/users")
    async def users(request: Request, q: str = Query("", max_length=200),
                    limit: int = Query(20, ge=1, le=1000)) -> dict[str, Any]:
        return {"users": service(request).find_users(q, limit)}

    @app.get("/v1/users/{user_id}/history", responses={200: {"model": HistoryOut}})
    async def history(request: Request, user_id: str, limit: int = Query(50, ge=1, le=MAX_K)) -> Response:
        return _json({"user_id": user_id, "items": service(request).user_history(user_id, limit)})

    @app.get("/v1/users/{user_id}/recommendations", responses={200: {"model": RecommendationsOut}})
    async def user_recommendations(request: Request, user_id: str, k: int = Query(10, ge=1, le=MAX_K),
                                   exclude_seen: bool = Query(True)) -> Response:
        svc = service(request)
        items = svc.recommend_user(user_id, k, exclude_seen)
        return _json({"user_id": user_id, "k": k, "index": svc.index_kind, "items": items})

    @app.post("/v1/recommendations", responses={200: {"model": RecommendationsOut}})
    async def history_recommendations(request: Request, body: HistoryRequest) -> Response:
        svc = service(request)
        items = svc.recommend_history(body.history, body.k)
        return _json({"k": body.k, "index": svc.index_kind, "items": items})

    @app.get("/v1/items")
    async def items(request: Request, q: str = Query("", max_length=200),
                    limit: int = Query(20, ge=1, le=1000)) -> Response:
        return _json({"items": service(request).find_items(q, limit)})

    @app.get("/v1/items/{item_id}/similar", responses={200: {"model": RecommendationsOut}})
    async def similar(request: Request, item_id: str, k: int = Query(10, ge=1, le=MAX_K)) -> Response:
        svc = service(request)
        return _json({"item_id": item_id, "k": k, "items": svc.similar(item_id, k)})

    @app.post("/v1/items", status_code=201)
    async def add_item(request: Request, body: NewItem = Body(...),
                       x_api_key: str | None = Header(None)) -> Response:
        refused = require_key(x_api_key)
        if refused is not None:
            return refused
        out = service(request).add_item(body.item_id, title=body.title, fields=body.fields, vectors=body.vectors)
        return _json(out, status=201)

    return app


def app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory`` / several workers: configuration from ``RECEMBED_SERVE_*``."""
    env = os.environ
    bundle = env.get("RECEMBED_SERVE_BUNDLE")
    if not bundle:
        raise RuntimeError("RECEMBED_SERVE_BUNDLE is not set (the bundle directory to serve)")
    params = json.loads(env.get("RECEMBED_SERVE_INDEX_PARAMS", "{}"))
    workers = int(env.get("RECEMBED_SERVE_WORKERS", "1"))
    options = ServiceOptions(index=env.get("RECEMBED_SERVE_INDEX") or None, index_params=params,
                             threads=int(env.get("RECEMBED_SERVE_THREADS", "1")), allow_add_items=workers == 1)
    return create_app(AppConfig(bundle=bundle, options=options,
                                api_key_env=env.get("RECEMBED_SERVE_API_KEY_ENV", "RECEMBED_API_KEY"),
                                max_body_bytes=int(env.get("RECEMBED_SERVE_MAX_BODY", str(1 << 20)))))
