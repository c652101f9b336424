"""What runs before FastAPI's routing: the body limit (413), Prometheus metrics, and the fast path of
``GET /v1/users/{user_id}/recommendations`` (see :mod:`.app`).

A pure ASGI middleware (:class:`ServingMiddleware`): it refuses bodies over ``max_body_bytes`` (by
Content-Length, or while reading a chunked body), records every request in :class:`Metrics` under its route
template, and answers well-formed user-recommendation requests itself with the same body the route gives
(:func:`user_recommendations_body`, shared by both).
"""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi.responses import JSONResponse

from ..errors import RecembedError
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


def user_recommendations_body(svc: RecService, user_id: str, k: int, exclude_seen: bool) -> bytes:
    """The JSON answer of ``GET /v1/users/{user_id}/recommendations`` (the route and the fast path).

    ``count`` is the number of items returned: below ``k`` when fewer items are admissible."""
    items = svc.recommend_user(user_id, k, exclude_seen)
    return dumps({"user_id": user_id, "k": k, "count": len(items), "index": svc.index_kind, "items": items})


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
                      (f'recembed_bundle_info{{model="{info["model"]}",serving="{info["serving"]}",'
                       f'index="{info["index"]}"}} 1')]
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
        route = scope.get("route")  # path_format: the template without converters ({item_id}, not {item_id:path})
        path = (getattr(route, "path_format", None) or getattr(route, "path", None)
                or ("(unmatched)" if status["code"] == 404 else scope["path"]))
        self.metrics.observe(scope["method"], path, status["code"], time.perf_counter() - start)


def _fast_user_recommendations(scope: dict) -> bytes | None:
    """The JSON body of ``GET /v1/users/{user_id}/recommendations`` for a well-formed request, computed without
    FastAPI's routing and validation; None for anything else (the route then answers, errors included)."""
    path = scope["path"]
    if scope.get("root_path") or not path.startswith("/v1/users/"):
        return None
    user_id = path[len("/v1/users/"): -len("/recommendations")]  # may contain "/" (the route's {user_id:path})
    if not user_id:
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
        return user_recommendations_body(svc, user_id, k, exclude_seen)
    except RecembedError:
        return None
