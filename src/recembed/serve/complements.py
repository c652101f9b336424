"""``GET /v1/items/{item_id}/complements?k=``: items bought with (after) an item, from a dual-embedding model.

The bundle's model keeps both item tables of skip-gram with negative sampling (``sgns``: its input and output
vectors are in ``model/model.safetensors``, so the bundle needs nothing more); the complementary score of a
candidate is ``in[item] . out[candidate]`` (:meth:`recembed.models.sequential.sgns.SGNS.complement_rows`), while
``/similar`` stays the cosine of input vectors. Bundles of models without an output table answer 409 naming the
model. Added items (``POST /v1/items``) have no output vector: they are neither queries nor answers here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .service import Conflict, RecService


def has_complements(svc: RecService) -> bool:
    return hasattr(svc.model, "complement_rows")


def complements(svc: RecService, item_id: str, k: int = 10) -> list[dict[str, Any]]:
    """The ``k`` best complements of ``item_id`` (404 for an unknown id, 409 for a model without them)."""
    i = int(svc.item_indices([item_id])[0])
    if not has_complements(svc):
        raise Conflict(f"the bundle's model {svc.model.name!r} has no complementary (output) item vectors; bundle "
                       "a dual-embedding model (`recembed fit sgns`) to serve complements")
    if i >= svc.num_model_items:
        raise Conflict(f"item {item_id!r} was added from its content and has no learnt complementary vectors")
    items, scores = svc.model.complements(i, k=max(1, min(k, svc.num_model_items - 1)))
    return svc._items(np.asarray(items), np.asarray(scores))
