"""What runs before FastAPI's routing: the body limit (413), Prometheus metrics, and the fast path of
``GET /v1/users/{user_id}/recommendations`` (see :mod:`.app`).

A pure ASGI middleware (:class:`ServingMiddleware`): it refuses bodies over ``max_body_bytes`` (by
Content-Length, or while reading a chunked body), records every request in :class:`Metrics` under its route
template, and answers well-formed user-recommendation requests itself with the same body the route gives
(:func:`user_recommendations_body`, shared by both). Stages of a user's recommendations (``retrieve``, and
``rank`` with a ranker) are timed separately: ``recembed_stage_duration_seconds{stage}`` in ``/metrics`` and a
``Server-Timing`` header on the answer.
"""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi.responses import JSONResponse

from ..errors import DataError, RecembedError
from .ranker import MAX_CANDIDATES
from .service import RecService

try:
    import orjson
except ImportError:  # pragma: no cover - orjson comes with the serve extra
    orjson = None

MAX_K = 1000
USER_RECS_ROUTE = "/v1/users/{user_id}/recommendations"
_TRUE = frozenset((b"1", b"on", b"t", b"true", b"y", b"yes"))  # what pydantic reads as a bool (any case)
_FALSE = frozenset((b"0", b"off", b"f", b"false", b"n", b"no"))


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes (orjson when installed: several times faster than ``json`` on the hot path)."""
    if orjson is not None:
        return orjson.dumps(obj)
    return json.dumps(obj, separators=(",", ":")).encode()


def user_recommendations_body(svc: RecService, user_id: str, k: int, exclude_seen: bool,
                              candidates: int | None = None, min_probability: float | None = None,
                              min_results: int | None = None) -> tuple[bytes, bytes]:
    """The JSON answer of ``GET /v1/users/{user_id}/recommendations`` (the route and the fast path) and its
    ``Server-Timing`` header value (each stage's milliseconds: ``retrieve;dur=0.210, rank;dur=0.874``).

    ``count`` is the number of items returned: below ``k`` when fewer items are admissible. ``stages`` lists the
    stages that ran; with a ranker the answer also has ``ranker`` and ``candidates`` (the retriever's list the
    ranker re-ordered), and each item its ``probability``. With ``min_probability`` (a bundle with a relevance
    cut-off, :mod:`.cutoff`): the items likely relevant, each with its ``probability``, and ``candidates``."""
    from .cutoff import check_cut, cut_user

    check_cut(svc, min_probability, min_results, k)
    if min_probability is not None:
        if candidates is not None:
            raise DataError("not with min_probability: the cut-off scores the bundle's own number of candidates",
                            field="candidates")
        items, info = cut_user(svc, user_id, k, min_probability, min_results, exclude_seen)
    else:
        items, info = svc.recommend_user_staged(user_id, k, exclude_seen, candidates)
    out: dict[str, Any] = {"user_id": user_id, "k": k, "count": len(items), "index": svc.index_kind,
                           "stages": info["stages"]}
    if svc.rank is not None:
        out.update(ranker=svc.rank.name, candidates=info["candidates"])
    elif min_probability is not None:
        out.update(min_probability=min_probability, candidates=info["candidates"])
    out["items"] = items
    timing = ", ".join(f"{stage};dur={1e3 * sec:.3f}" for stage, sec in info["seconds"].items())
    return dumps(out), timing.encode()


BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, *BUCKETS)  # stages take well under a millisecond: finer buckets


def _histogram_lines(name: str, label: str, buckets: tuple[float, ...], counts: list[int], total_s: float
                     ) -> list[str]:
    lines, total = [], 0
    for b, c in zip((*buckets, float("inf")), counts):
        total += c
        le = "+Inf" if b == float("inf") else repr(b)
        lines.append(f'{name}_bucket{{{label},le="{le}"}} {total}')
    lines.append(f"{name}_sum{{{label}}} {total_s:.6f}")
    lines.append(f"{name}_count{{{label}}} {total}")
    return lines


def _bucket(counts: list[int], buckets: tuple[float, ...], seconds: float) -> None:
    for i, b in enumerate(buckets):
        if seconds <= b:
            counts[i] += 1
            return
    counts[-1] += 1


class Metrics:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], int] = {}
        self.hist: dict[tuple[str, str], list[int]] = {}
        self.sums: dict[tuple[str, str], float] = {}
        self.stage_hist: dict[str, list[int]] = {}
        self.stage_sums: dict[str, float] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, str(status))
        self.requests[key] = self.requests.get(key, 0) + 1
        hk = (method, route)
        _bucket(self.hist.setdefault(hk, [0] * (len(BUCKETS) + 1)), BUCKETS, seconds)
        self.sums[hk] = self.sums.get(hk, 0.0) + seconds

    def observe_stage(self, stage: str, seconds: float) -> None:
        """One stage of a user's recommendations (``retrieve`` / ``rank``), inside the request's time."""
        _bucket(self.stage_hist.setdefault(stage, [0] * (len(STAGE_BUCKETS) + 1)), STAGE_BUCKETS, seconds)
        self.stage_sums[stage] = self.stage_sums.get(stage, 0.0) + seconds

    def render(self, service: RecService | None) -> str:
        lines = ["# HELP recembed_requests_total HTTP requests by method, route and status.",
                 "# TYPE recembed_requests_total counter"]
        for (method, route, status), n in sorted(self.requests.items()):
            lines.append(f'recembed_requests_total{{method="{method}",route="{route}",status="{status}"}} {n}')
        lines += ["# HELP recembed_request_duration_seconds Request latency by method and route.",
                  "# TYPE recembed_request_duration_seconds histogram"]
        for (method, route), counts in sorted(self.hist.items()):
            lines += _histogram_lines("recembed_request_duration_seconds", f'method="{method}",route="{route}"',
                                      BUCKETS, counts, self.sums[(method, route)])
        lines += ["# HELP recembed_stage_duration_seconds Time of each stage of GET "
                  "/v1/users/{user_id}/recommendations: retrieve (the retriever's candidates), rank (the ranker).",
                  "# TYPE recembed_stage_duration_seconds histogram"]
        for stage, counts in sorted(self.stage_hist.items(), key=lambda kv: ("retrieve", "rank").index(kv[0])
                                    if kv[0] in ("retrieve", "rank") else 9):
            lines += _histogram_lines("recembed_stage_duration_seconds", f'stage="{stage}"', STAGE_BUCKETS, counts,
                                      self.stage_sums[stage])
        if service is not None:
            info = service.info()
            lines += ["# HELP recembed_items Items the service can recommend (added ones included).",
                      "# TYPE recembed_items gauge", f"recembed_items {info['items']}",
                      "# HELP recembed_added_items Items added from content (with a store: all it holds).",
                      "# TYPE recembed_added_items gauge", f"recembed_added_items {info['added_items']}",
                      "# HELP recembed_users Known users.", "# TYPE recembed_users gauge",
                      f"recembed_users {info['users']}",
                      "# HELP recembed_bundle_info The served bundle.", "# TYPE recembed_bundle_info gauge",
                      (f'recembed_bundle_info{{model="{info["model"]}",serving="{info["serving"]}",'
                       f'index="{info["index"]}"}} 1')]
            if info["ranker"] is not None:
                lines += ["# HELP recembed_ranker_info The bundle's ranker and its default candidates per request.",
                          "# TYPE recembed_ranker_info gauge",
                          f'recembed_ranker_info{{ranker="{info["ranker"]}",candidates="{info["candidates"]}"}} 1']
        return "\n".join(lines) + "\n"


class _BodyTooLarge(BaseException):  # not an Exception: FastAPI's body parsing would turn it into 400
    """Raised from ``receive`` when a body passes the limit; the middleware answers 413."""


def error_response(status: int, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status)


class ServingMiddleware:
    """Pure ASGI: refuses bodies over ``max_body_bytes`` with 413 (by Content-Length, or while reading a chunked
    body) and records every request in :class:`Metrics` under its route template."""

    def __init__(self, app: Any, metrics: Metrics, max_body_bytes: int) -> None:
        self.app, self.metrics, self.max_body_bytes = app, metrics, max_body_bytes

    def _too_large(self) -> JSONResponse:
        return error_response(413, f"request body larger than {self.max_body_bytes} bytes")

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
            answer = _fast_user_recommendations(scope)
            if answer is not None:
                body, timing = answer
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-length", str(len(body)).encode()),
                                        (b"content-type", b"application/json"), (b"server-timing", timing)]})
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
        route = scope.get("route")  # path_format: the template without converters ({item_id}, not {item_id:path})
        path = (getattr(route, "path_format", None) or getattr(route, "path", None)
                or ("(unmatched)" if status["code"] == 404 else scope["path"]))
        self.metrics.observe(scope["method"], path, status["code"], time.perf_counter() - start)


def _fast_user_recommendations(scope: dict) -> tuple[bytes, bytes] | None:
    """The JSON body (and Server-Timing value) of ``GET /v1/users/{user_id}/recommendations`` for a well-formed request, computed without
    FastAPI's routing and validation; None for anything else (the route then answers, errors included)."""
    path = scope["path"]
    if scope.get("root_path") or not path.startswith("/v1/users/"):
        return None
    user_id = path[len("/v1/users/"): -len("/recommendations")]  # may contain "/" (the route's {user_id:path})
    if not user_id:
        return None
    k, exclude_seen, candidates = 10, True, None
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
            elif name == b"candidates":
                if candidates is not None or not eq or not value.isdigit() or len(value) > 7:
                    return None
                candidates = int(value)
                if not 1 <= candidates <= MAX_CANDIDATES:
                    return None
            else:  # min_probability, ...: the route parses and checks them
                return None
    app = scope.get("app")
    svc = getattr(getattr(app, "state", None), "service", None)
    if svc is None or user_id not in svc.user_pos:
        return None
    try:
        return user_recommendations_body(svc, user_id, k, exclude_seen, candidates)
    except RecembedError:  # e.g. candidates < k: the route answers 422
        return None
