"""The HTTP recommendation service (FastAPI): a thin layer over :class:`~.service.RecService`.

Endpoints (OpenAPI schema at ``/openapi.json``, docs at ``/docs`` and ``/redoc``, served from local files: no
CDN, they work offline)::

    GET  /                                         the explorer page
    GET  /health                                   model, serving kind, index, sizes
    GET  /v1/users?q=&limit=                       user ids containing q
    GET  /v1/users/{user_id}/history?limit=        the user's known items, newest first
    GET  /v1/users/{user_id}/recommendations?k=&exclude_seen=&candidates=
                                                   with a ranker: the retriever's candidates re-ranked
    POST /v1/users/{user_id}/recommendations  {"query": "...", "k": 10}  query-aware bundles (:mod:`.query`)
    POST /v1/recommendations  {"history": [...], "k": 10}     an anonymous user / a session
    GET  /v1/items?q=&limit=                       items whose id or title contains q
    GET  /v1/items/{item_id}/similar?k=
    GET  /v1/items/{item_id}/complements?k=        dual-embedding models (sgns), else 409 (:mod:`.complements`)
    POST /v1/items  {"item_id", "title", "fields", "vectors"}  add an item from its content (API key)
    DELETE /v1/items/{item_id}                     delete an added item (API key; bundle items: 409)
    POST /admin/reload  {"bundle": DIR}            swap in a new verified bundle, no failed requests (API key)
    GET  /metrics                                  Prometheus text format

Ids in paths may contain ``/`` (``/v1/items/a/b/similar`` is item ``a/b``; ``%2F`` works too). Answers with
items carry ``count``, the number returned: below ``k`` when fewer items are admissible (never padded).

Errors: unknown ids -> 404 naming the id; invalid parameters and unknown body fields -> 422 naming the field;
a body that is not valid JSON -> 400 naming its line and column; a body sent as another content type than
JSON -> 415; bodies over ``max_body_bytes`` -> 413; a mutating call without the API key (``X-API-Key``, compared
with the environment variable ``api_key_env``, default ``RECEMBED_API_KEY``) -> 401, with a wrong key -> 403
(and 403 when the server has no key set: mutations are then off); a model that cannot do something -> 501.

The bundle is loaded (and verified; its signature too with ``require_signature``) in ``lifespan``; a reload
(``POST /admin/reload`` or ``SIGHUP``, :mod:`.reload`) builds the next service off to the side and swaps it in.
With a store (``ServiceOptions.store``, :mod:`.store`) the item index and the added items live in Milvus. Handlers are
``async`` and compute inline: each request is well under a millisecond of NumPy / FAISS, so a worker runs them
one at a time on its event loop (no thread hand-offs, no locks); parallelism comes from ``--workers``.

The hot path, ``GET /v1/users/{user_id}/recommendations``, is answered by
:class:`~.middleware.ServingMiddleware` before FastAPI's routing and parameter validation when the request is
well-formed (a known user, ``k`` and ``exclude_seen`` plain and in range): same JSON, same headers, same
metrics. Anything else falls through to the FastAPI route, which gives the documented errors. JSON is written
by orjson when installed (the ``serve`` extra), else by ``json``.
"""

from __future__ import annotations

import gc
import hmac
import json
import os
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastapi import Body, Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from ..errors import DataError, RecembedError
from .middleware import MAX_K, Metrics, ServingMiddleware, dumps, error_response, user_recommendations_body
from .query import QueryRequest, query_recommendations
from .ranker import MAX_CANDIDATES
from .reload import Reloader
from .service import Conflict, NotFound, NotSupported, RecService, ServiceOptions

try:  # Swagger UI and ReDoc from the package's own files (the serve extra), not from a CDN
    from fastapi_offline import FastAPIOffline as _FastAPI
except ImportError:  # pragma: no cover - without it /docs needs the network
    _FastAPI = FastAPI

MAX_HISTORY = 1000
CUTOFF_HELP = ("Bundles with a relevance cut-off (`recembed cutoff RUN`, then bundle): only the items with "
               "P(relevant) >= this, up to k, so the count varies per user")
BODY_ERRORS: dict[int | str, dict[str, Any]] = {  # documented in the OpenAPI schema of the routes with a body
    400: {"description": "Malformed JSON: `malformed JSON at line L, column C: ...` (with `line`, `column`)"},
    415: {"description": "A body sent with another content type than application/json"},
}


# --------------------------------------------------------------------------------------------
# request / response schemas (documented in the OpenAPI schema)
# --------------------------------------------------------------------------------------------
class ItemOut(BaseModel):
    item_id: str
    title: str | None = None
    score: float | None = Field(None, description="The retriever's score.")
    probability: float | None = Field(None, description="With a ranker: its click probability (the order).")


class RecommendationsOut(BaseModel):
    items: list[ItemOut]
    k: int
    count: int = Field(..., description="Items returned: k, or fewer when fewer items are admissible.")
    index: str | None = None
    stages: list[str] | None = Field(None, description="The stages that ran: retrieve, and rank with a ranker.")
    ranker: str | None = None
    candidates: int | None = Field(None, description="With a ranker: how many retrieved items it re-ranked.")
    user_id: str | None = None
    item_id: str | None = None
    query: str | None = None


class HistoryOut(BaseModel):
    user_id: str
    items: list[ItemOut]


class HistoryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field ("hisotry") is a 422, not silently ignored

    history: list[str | int] = Field(..., min_length=1, max_length=MAX_HISTORY,
                                     description="Item ids, oldest first.")
    k: int = Field(10, ge=1, le=MAX_K)


class NewItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_id: str = Field(..., min_length=1, max_length=512)
    title: str | None = Field(None, max_length=10_000)
    fields: dict[str, str | list[str]] = Field(default_factory=dict,
                                               description="Text fields by column name (the run's text columns).")
    vectors: dict[str, list[float]] = Field(default_factory=dict,
                                            description="Other content modalities by name, as numbers.")


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bundle: str | None = Field(None, min_length=1, max_length=4096,
                               description="Bundle directory to serve next (default: the current path, re-read).")


class UnsupportedMediaType(RecembedError):
    """A body sent with a content type other than JSON (HTTP 415)."""


async def json_content_type(request: Request) -> None:
    """Dependency of the routes with a JSON body: refuse other content types (a missing header reads as JSON,
    as FastAPI does)."""
    value = request.headers.get("content-type")
    if value is None:
        return
    mime = value.split(";", 1)[0].strip().lower()
    if mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json")):
        return
    raise UnsupportedMediaType(f"unsupported content type {mime!r}: send the body as application/json")


def json_error_position(doc: Any, pos: int) -> tuple[int, int]:
    """1-based ``(line, column)`` of character offset ``pos`` in ``doc`` (what ``json.JSONDecodeError`` gives)."""
    text = doc.decode("utf-8", "replace") if isinstance(doc, (bytes, bytearray)) else str(doc or "")
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


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
    require_signature: bool = False
    """Refuse a bundle without a valid HMAC signature (key in ``RECEMBED_BUNDLE_KEY``; see :mod:`.signing`)."""


def _page() -> str:
    return resources.files("recembed.serve").joinpath("page/index.html").read_text(encoding="utf-8")


def _json(obj: Any, status: int = 200) -> Response:
    return Response(dumps(obj), status_code=status, media_type="application/json")


def create_app(config: AppConfig) -> FastAPI:
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        # verifies format and checksums (and the signature when required): a bad bundle stops start-up
        reloader = Reloader(app, config, metrics.observe_stage)
        app.state.reloader = reloader
        app.state.service = reloader.build(reloader.path)
        reloader.install()  # SIGHUP: reload
        gc.collect()
        gc.freeze()  # the bundle's objects leave the collector's generations: no long full collections later
        yield
        gc.unfreeze()
        app.state.service.close()
        app.state.service = None

    app = _FastAPI(title="recembed recommendation service", version="1", lifespan=lifespan,
                  description="Recommendations, similar items and new items from content, served from a "
                              "verified recembed bundle.")
    app.add_middleware(ServingMiddleware, metrics=metrics, max_body_bytes=config.max_body_bytes)

    def service(request: Request) -> RecService:
        return request.app.state.service

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return error_response(404, str(exc), entity=exc.entity, ids=exc.ids)

    @app.exception_handler(NotSupported)
    async def _not_supported(request: Request, exc: NotSupported) -> JSONResponse:
        return error_response(501, str(exc))

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict) -> JSONResponse:
        return error_response(409, str(exc))

    @app.exception_handler(DataError)
    async def _data_error(request: Request, exc: DataError) -> JSONResponse:
        return error_response(422, str(exc), field=exc.field)

    @app.exception_handler(UnsupportedMediaType)
    async def _media_type(request: Request, exc: UnsupportedMediaType) -> JSONResponse:
        return error_response(415, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        if first.get("type") == "json_invalid":  # loc is ("body", character offset): not a field
            line, column = json_error_position(exc.body, int(first["loc"][-1]))
            reason = (first.get("ctx") or {}).get("error", "invalid JSON")
            return error_response(400, f"malformed JSON at line {line}, column {column}: {reason}",
                                   line=line, column=column)
        loc = [str(x) for x in first.get("loc", ()) if x not in ("query", "body", "path", "header")]
        name = ".".join(loc) or "body"
        message = f"invalid {name!r}: {first.get('msg', 'invalid value')}"
        return error_response(422, message, field=name,
                               errors=[{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
                                       for e in errors])

    def require_key(x_api_key: str | None) -> JSONResponse | None:
        expected = os.environ.get(config.api_key_env)
        if not expected:
            return error_response(403, f"mutations are off: the server has no API key (set {config.api_key_env})")
        if x_api_key is None:
            return error_response(401, "missing API key: send it in the X-API-Key header")
        if not hmac.compare_digest(x_api_key.encode(), expected.encode()):
            return error_response(403, "wrong API key")
        return None

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(_page())

    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        return {"status": "ok", **service(request).info(), "pid": os.getpid(),
                "reloads": request.app.state.reloader.reloads}

    @app.get("/metrics", response_class=Response)
    async def prometheus(request: Request) -> Response:
        return Response(metrics.render(service(request)), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/users")
    async def users(request: Request, q: str = Query("", max_length=200),
                    limit: int = Query(20, ge=1, le=1000)) -> dict[str, Any]:
        return {"users": service(request).find_users(q, limit)}

    @app.get("/v1/users/{user_id:path}/history", responses={200: {"model": HistoryOut}})
    async def history(request: Request, user_id: str, limit: int = Query(50, ge=1, le=MAX_K)) -> Response:
        return _json({"user_id": user_id, "items": service(request).user_history(user_id, limit)})

    @app.get("/v1/users/{user_id:path}/recommendations", responses={200: {"model": RecommendationsOut}})
    async def user_recommendations(
            request: Request, user_id: str, k: int = Query(10, ge=1, le=MAX_K), exclude_seen: bool = Query(True),
            candidates: int | None = Query(None, ge=1, le=MAX_CANDIDATES,
                                           description="Bundles with a ranker: items the retriever proposes for it "
                                                       "to re-rank (>= k; default: the bundle's / --candidates)"),
            min_probability: float | None = Query(None, ge=0, le=1, description=CUTOFF_HELP),
            min_results: int | None = Query(None, ge=0, le=MAX_K, description="With min_probability: at least this "
                                                                               "many items (the most probable)")
    ) -> Response:
        body, timing = user_recommendations_body(service(request), user_id, k, exclude_seen, candidates,
                                                 min_probability, min_results)
        return Response(body, media_type="application/json", headers={"server-timing": timing.decode()})

    @app.post("/v1/users/{user_id:path}/recommendations",
              responses={200: {"model": RecommendationsOut}, **BODY_ERRORS}, dependencies=[Depends(json_content_type)])
    async def query_user_recommendations(request: Request, user_id: str, body: QueryRequest) -> Response:
        return _json(query_recommendations(service(request), user_id, body))

    @app.post("/v1/recommendations", responses={200: {"model": RecommendationsOut}, **BODY_ERRORS},
              dependencies=[Depends(json_content_type)])
    async def history_recommendations(request: Request, body: HistoryRequest) -> Response:
        svc = service(request)
        items = svc.recommend_history(body.history, body.k)
        return _json({"k": body.k, "count": len(items), "index": svc.index_kind, "stages": ["retrieve"],
                      "items": items})

    @app.get("/v1/items")
    async def items(request: Request, q: str = Query("", max_length=200),
                    limit: int = Query(20, ge=1, le=1000)) -> Response:
        return _json({"items": service(request).find_items(q, limit)})

    @app.get("/v1/items/{item_id:path}/similar", responses={200: {"model": RecommendationsOut}})
    async def similar(request: Request, item_id: str, k: int = Query(10, ge=1, le=MAX_K)) -> Response:
        items = service(request).similar(item_id, k)
        return _json({"item_id": item_id, "k": k, "count": len(items), "items": items})

    @app.get("/v1/items/{item_id:path}/complements", responses={200: {"model": RecommendationsOut}})
    async def complements(request: Request, item_id: str, k: int = Query(10, ge=1, le=MAX_K)) -> Response:
        from .complements import complements as complements_of

        items = complements_of(service(request), item_id, k)
        return _json({"item_id": item_id, "k": k, "count": len(items), "items": items})

    @app.post("/v1/items", status_code=201, responses=BODY_ERRORS, dependencies=[Depends(json_content_type)])
    async def add_item(request: Request, body: NewItem = Body(...),
                       x_api_key: str | None = Header(None)) -> Response:
        refused = require_key(x_api_key)
        if refused is not None:
            return refused
        out = service(request).add_item(body.item_id, title=body.title, fields=body.fields, vectors=body.vectors)
        return _json(out, status=201)

    @app.delete("/v1/items/{item_id:path}")
    async def delete_item(request: Request, item_id: str, x_api_key: str | None = Header(None)) -> Response:
        refused = require_key(x_api_key)
        if refused is not None:
            return refused
        return _json(service(request).delete_item(item_id))

    @app.post("/admin/reload", responses=BODY_ERRORS, dependencies=[Depends(json_content_type)])
    async def reload(request: Request, body: ReloadRequest | None = Body(None),
                     x_api_key: str | None = Header(None)) -> Response:
        refused = require_key(x_api_key)
        if refused is not None:
            return refused
        target = body.bundle if body is not None else None
        if target is not None and not os.path.isdir(target):
            return error_response(422, f"invalid 'bundle': not a directory: {target}", field="bundle")
        return _json(await request.app.state.reloader.reload(target, broadcast=True))

    return app


def app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory`` / several workers: configuration from ``RECEMBED_SERVE_*``."""
    env = os.environ
    bundle = env.get("RECEMBED_SERVE_BUNDLE")
    if not bundle:
        raise RuntimeError("RECEMBED_SERVE_BUNDLE is not set (the bundle directory to serve)")
    params = json.loads(env.get("RECEMBED_SERVE_INDEX_PARAMS", "{}"))
    workers = int(env.get("RECEMBED_SERVE_WORKERS", "1"))
    candidates = env.get("RECEMBED_SERVE_CANDIDATES")
    store = env.get("RECEMBED_SERVE_STORE") or None
    if store and store.startswith("milvus:"):  # a spec, not yet a URI (the app factory used without the CLI)
        from .store import open_store

        store = open_store(store)
    max_added = env.get("RECEMBED_SERVE_MAX_ADDED_ITEMS")
    options = ServiceOptions(index=env.get("RECEMBED_SERVE_INDEX") or None, index_params=params,
                             threads=int(env.get("RECEMBED_SERVE_THREADS", "1")), allow_add_items=workers == 1,
                             candidates=int(candidates) if candidates else None, store=store,
                             store_search=env.get("RECEMBED_SERVE_STORE_SEARCH") or "store",
                             max_added_items=int(max_added) if max_added else ServiceOptions.max_added_items)
    return create_app(AppConfig(bundle=bundle, options=options,
                                api_key_env=env.get("RECEMBED_SERVE_API_KEY_ENV", "RECEMBED_API_KEY"),
                                max_body_bytes=int(env.get("RECEMBED_SERVE_MAX_BODY", str(1 << 20))),
                                require_signature=env.get("RECEMBED_SERVE_REQUIRE_SIGNATURE", "") == "1"))
