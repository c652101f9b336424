"""Query-aware recommendations for a known user: ``POST /v1/users/{user_id}/recommendations``.

Body ``{"query": "science fiction", "k": 10, "exclude_seen": true}`` (unknown fields: 422). Bundles of a
query-aware model (``queryue``: its bundle's model state carries the attention network, the user histories, the
item vectors and the training queries' vectors) rank every model item (items added at serve time are not
ranked here) by the user's vector under the query; a
training query (a category name) reads its stored vector, any other text is encoded by the local
all-MiniLM-L6-v2 (``recembed[content]``; without it such a query is a 501). An empty or missing query is the
unconditioned ranking. Bundles of other models answer 422 naming ``query`` (use the GET route).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..errors import ConfigError, DataError
from .middleware import MAX_K
from .service import NotSupported, RecService

MAX_QUERY_CHARS = 1000


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field ("qurey") is a 422, not silently ignored

    query: str = Field("", max_length=MAX_QUERY_CHARS,
                       description="What the recommendations are for (a genre, a category, a scenario); "
                                   "empty: the unconditioned list.")
    k: int = Field(10, ge=1, le=MAX_K)
    exclude_seen: bool = Field(True, description="Leave out the user's known items.")


def is_query_aware(svc: RecService) -> bool:
    return hasattr(svc.model, "score_query")


def query_recommendations(svc: RecService, user_id: str, body: QueryRequest) -> dict[str, Any]:
    """The JSON answer: the user's top ``k`` under ``body.query``."""
    if not is_query_aware(svc):
        raise DataError(f"this bundle's model ({svc.model.name}) is not query-aware: a query needs a queryue "
                        "bundle; for unconditioned recommendations use GET /v1/users/{user_id}/recommendations",
                        field="query")
    svc._fresh()
    u = svc.user_index(user_id)
    try:
        scores = svc.model.score_query(np.array([u]), [body.query])[0]
    except ConfigError as exc:  # a new query text needs the local MiniLM, which is not installed
        raise NotSupported(f"cannot encode the query: {exc}") from None
    exclude = svc._excl(svc._seen(u)) if body.exclude_seen else svc._excl(np.zeros(0, dtype=np.int64))
    items, top = svc._topk_scores(scores, body.k, exclude[exclude < len(scores)])  # added items: not scored
    out = svc._items(items, top)
    return {"user_id": user_id, "query": body.query, "k": body.k, "count": len(out), "index": "model",
            "stages": ["retrieve"], "items": out}
