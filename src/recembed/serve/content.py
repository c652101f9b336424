"""New items from their content: the bundle's content encoder and the per-model rule ("head") that turns a
content vector into an item vector, so the service can add an item without retraining.

A bundle is content-capable when its model has a head here (an explicit table, :data:`CONTENT_HEADS`) and
the run's content can be reproduced at bundle time: the run's data spec (text columns, encoder, feature
files) is replayed, and the content matrix it gives must equal the model's own (``content_``); otherwise the
bundle is written without a content encoder and ``POST /v1/items`` answers 501.

* :class:`ContentEncoder` -- the layout of the model's content vector (its modalities, in order: a text
  modality from the text encoder, other vector modalities given as numbers), the text encoder's state
  (TF-IDF vocabulary / idf / projection; MiniLM needs none), and the per-modality normalisation.
* :class:`VBPRItemHead` -- VBPR's cold-item rule: ``[0, E f, <beta', f>]``.
* :class:`AlphaRecItemHead` -- AlphaRec's rule for an item unseen in training: its MLP output plus the
  propagated graph layers of its ``cold_neighbours`` most similar warm items by content cosine
  (``cold_items="neighbours"``; ``"layer0"``: the MLP output only), L2-normalised. The graph part of every
  warm item is computed once at bundle time (:func:`alpharec_graph_part`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError

ENCODER_FILE = "content/encoder.safetensors"
VOCAB_FILE = "content/text_vocabulary.parquet"
HEAD_FILE = "content/head.safetensors"


@dataclass(frozen=True)
class ContentModality:
    name: str
    """Vector column of the run's item table."""
    dim: int
    """Width of the modality's vectors."""
    source: str
    """``"text"`` (encoded from the item's text fields) or ``"vector"`` (given as numbers)."""


class ContentEncoder:
    """Turns a new item's fields / vectors into a row of the model's content matrix ``(F,)``."""

    def __init__(self, *, encoder: str, text_columns: Sequence[str], modalities: Sequence[ContentModality],
                 feature_norm: str, text_encoder: Any = None) -> None:
        self.encoder, self.text_columns = encoder, list(text_columns)
        self.modalities, self.feature_norm = list(modalities), feature_norm
        self.text_encoder = text_encoder

    @property
    def dim(self) -> int:
        return sum(m.dim for m in self.modalities)

    def spec(self) -> dict[str, Any]:
        return {"encoder": self.encoder, "text_columns": self.text_columns, "feature_norm": self.feature_norm,
                "modalities": [{"name": m.name, "dim": m.dim, "source": m.source} for m in self.modalities]}

    def text_of(self, fields: Mapping[str, Any]) -> str:
        """The text the run's encoder saw for an item: ``"col: value. col: value"`` over the text columns
        (list values joined with commas), as :func:`recembed.encoders.features.join_text_columns`."""
        parts = []
        for c in self.text_columns:
            v = fields.get(c)
            v = ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else ("" if v is None else str(v))
            if v.strip():
                parts.append(f"{c}: {v.strip()}")
        return ". ".join(parts)

    def _encode_text(self, text: str) -> np.ndarray:
        if not text.strip():
            raise DataError("the item has no text in the text columns " + ", ".join(self.text_columns),
                            field="fields")
        if self.text_encoder is None:
            if self.encoder != "minilm":
                raise ConfigError(f"no state for text encoder {self.encoder!r}")
            from ..encoders import SentenceEncoder

            self.text_encoder = SentenceEncoder(show_progress=False)
        if hasattr(self.text_encoder, "transform"):
            return self.text_encoder.transform([text])[0]
        return self.text_encoder.encode([text])[0]

    def encode(self, fields: Mapping[str, Any], vectors: Mapping[str, Sequence[float]] | None = None) -> np.ndarray:
        """``(F,) float32`` content row; a vector modality not given is missing (zeros, as in training)."""
        vectors = dict(vectors or {})
        known = {m.name for m in self.modalities if m.source == "vector"}
        for name in vectors:
            if name not in known:
                raise DataError(f"unknown vector modality {name!r}; this model reads {sorted(known)}",
                                field="vectors")
        blocks = []
        for m in self.modalities:
            if m.source == "text":
                v = self._encode_text(self.text_of(fields)).astype(np.float32)
            elif m.name in vectors:
                v = np.asarray(vectors[m.name], dtype=np.float32)
                if v.shape != (m.dim,) or not np.isfinite(v).all():
                    raise DataError(f"expected {m.dim} finite numbers", field=f"vectors.{m.name}")
            else:
                v = np.zeros(m.dim, dtype=np.float32)
            if self.feature_norm == "l2":
                n = float(np.linalg.norm(v))
                v = v / n if n > 0 else v
            blocks.append(v)
        return np.concatenate(blocks).astype(np.float32)

    # -- persistence (inside a bundle) -------------------------------------------------------------
    def arrays(self) -> tuple[dict[str, np.ndarray], list[str] | None]:
        """``(tensors, vocabulary terms)`` holding the text encoder's state (TF-IDF; empty for MiniLM)."""
        enc = self.text_encoder
        if self.encoder != "tfidf":
            return {}, None
        terms = sorted(enc.vocabulary_, key=enc.vocabulary_.__getitem__)
        return {"idf": np.asarray(enc.idf_, dtype=np.float64),
                "components": np.ascontiguousarray(enc.components_, dtype=np.float64)}, terms

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], tensors: Mapping[str, np.ndarray] | None,
                  terms: Sequence[str] | None) -> ContentEncoder:
        modalities = [ContentModality(m["name"], int(m["dim"]), m["source"]) for m in spec["modalities"]]
        text_encoder = None
        if spec["encoder"] == "tfidf":
            from ..encoders import TfidfEncoder

            if tensors is None or terms is None:
                raise DataError("a TF-IDF content encoder without its state")
            text = next(m for m in modalities if m.source == "text")
            text_encoder = TfidfEncoder(dim=text.dim)
            text_encoder.vocabulary_ = {t: i for i, t in enumerate(terms)}
            text_encoder.idf_ = np.asarray(tensors["idf"])
            text_encoder.components_ = np.asarray(tensors["components"])
        return cls(encoder=spec["encoder"], text_columns=spec["text_columns"], modalities=modalities,
                   feature_norm=spec["feature_norm"], text_encoder=text_encoder)


# --------------------------------------------------------------------------------------------
# heads: content row -> item vector, per model
# --------------------------------------------------------------------------------------------
def alpharec_graph_part(model: Any) -> np.ndarray:
    """``(I, D)``: each item's propagated layers ``sum_{l=1..K} E_l / (K + 1)`` of the training graph (zero for
    items without training interactions): what AlphaRec adds to an item's layer-0 MLP output."""
    from ..models.cf.lightgcn import normalized_adjacency
    from ..models.content.alpharec import user_mean_content

    train = model.user_items_
    k = int(model.config.num_layers)
    e = np.concatenate([model._mlp(user_mean_content(train, model.content_)), model._mlp(model.content_)])
    adjacency = normalized_adjacency(train)
    total = np.zeros_like(e)
    for _ in range(k):
        e = adjacency @ e
        total += e
    return np.ascontiguousarray(total[train.shape[0]:] / (k + 1), dtype=np.float32)


class AlphaRecItemHead:
    """AlphaRec's embedding of an item unseen in training (see the module docstring)."""

    def __init__(self, model: Any, graph_part: np.ndarray) -> None:
        self.model = model
        cfg = model.config
        self.num_layers, self.borrow, self.k = int(cfg.num_layers), cfg.cold_items == "neighbours", cfg.cold_neighbours
        warm = np.asarray(model.user_items_.sum(axis=0)).ravel() > 0
        self.warm = np.flatnonzero(warm)
        content = model.content_[self.warm]
        norms = np.linalg.norm(content, axis=1, keepdims=True)
        self.warm_unit = (content / np.where(norms > 0, norms, 1.0)).astype(np.float32)  # (W, F)
        self.warm_graph = graph_part[self.warm]  # (W, D)

    @staticmethod
    def state(model: Any) -> dict[str, np.ndarray]:
        return {"graph_part": alpharec_graph_part(model)}

    @classmethod
    def from_state(cls, model: Any, state: Mapping[str, np.ndarray]) -> AlphaRecItemHead:
        return cls(model, state["graph_part"])

    def embed(self, content: np.ndarray) -> np.ndarray:
        """``(n, F)`` content rows -> ``(n, D)`` L2-normalised item vectors."""
        content = np.atleast_2d(np.asarray(content, dtype=np.float32))
        e = self.model._mlp(content) / (self.num_layers + 1)
        if self.borrow and self.num_layers and len(self.warm):
            norms = np.linalg.norm(content, axis=1, keepdims=True)
            sim = (content / np.where(norms > 0, norms, 1.0)) @ self.warm_unit.T  # (n, W)
            k = min(self.k, len(self.warm))
            top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
            w = np.maximum(np.take_along_axis(sim, top, axis=1), 0.0)
            total = w.sum(axis=1, keepdims=True)
            w = np.where(total > 0, w / np.where(total > 0, total, 1.0), 1.0 / k)
            e = e + np.einsum("nk,nkd->nd", w, self.warm_graph[top])
        return (e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)).astype(np.float32)


class VBPRItemHead:
    """VBPR's embedding of an item unseen in training: ``[0, E f, <beta', f>]`` (no ID factors and no ID bias,
    as the model ranks its own cold items), so its score is ``<theta_u, E f> + <beta', f>``."""

    def __init__(self, proj: np.ndarray, content_bias: np.ndarray, id_dim: int) -> None:
        self.proj, self.bias, self.id_dim = np.asarray(proj, np.float32), np.asarray(content_bias, np.float32), id_dim

    @staticmethod
    def state(model: Any) -> dict[str, np.ndarray]:
        return {"content_proj": model.content_proj_, "content_bias": model.content_bias_,
                "id_dim": np.array([model.config.embedding_dim], dtype=np.int64)}

    @classmethod
    def from_state(cls, model: Any, state: Mapping[str, np.ndarray]) -> VBPRItemHead:
        return cls(state["content_proj"], state["content_bias"], int(state["id_dim"][0]))

    def embed(self, content: np.ndarray) -> np.ndarray:
        """``(n, F)`` content rows -> ``(n, D + C + 1)`` item vectors (the layout of the bundle's)."""
        content = np.atleast_2d(np.asarray(content, dtype=np.float32))
        ids = np.zeros((len(content), self.id_dim), dtype=np.float32)
        return np.concatenate([ids, content @ self.proj.T, content @ self.bias.T], axis=1).astype(np.float32)


#: model name -> head class: the models whose new items the service can embed from content. The others cannot:
#: BM3, FREEDOM and MGCN embed an item through graphs over all items (a new item would change its neighbours'
#: embeddings too), CEASE and MMultVAE are served by their own scoring (no item vectors to index).
CONTENT_HEADS: dict[str, type] = {"alpharec": AlphaRecItemHead, "vbpr": VBPRItemHead}


# --------------------------------------------------------------------------------------------
# reproducing a run's content at bundle time
# --------------------------------------------------------------------------------------------
def encoder_for_run(run: Any, data_root: str | Path | None = None) -> tuple[ContentEncoder | None, str]:
    """Rebuild the content encoder of a run's content model by replaying its data spec.

    Returns ``(encoder, note)``; ``encoder`` is None (and ``note`` says why) when the model has no content
    head, the run used no text, the data cannot be loaded, or the replayed content differs from the model's.
    """
    model = run.model
    if model.name not in CONTENT_HEADS:
        return None, f"{model.name} has no rule for embedding new items from content"
    if getattr(model, "content_", None) is None or (model.name == "vbpr" and model.content_proj_ is None):
        return None, f"the {model.name} run was saved without its content weights (refit it with this recembed)"
    spec = run.config.get("data") or {}
    columns = [c for c in (spec.get("text_columns") or "").split(",") if c]
    if not columns:
        return None, "the run used no text columns (fit --text-columns), so there is no text encoder to keep"
    from ..data import catalog
    from ..encoders import TfidfEncoder, attach_features
    from ..models.content._content import content_matrix

    try:
        dataset, _ = catalog.load_any(str(spec.get("data")), root=data_root or spec.get("data_root"),
                                      **{k: spec.get(k) for k in ("items", "users", "columns", "duplicates")})
    except Exception as exc:  # noqa: BLE001 - any failure to reload means: no content encoder, say why
        return None, f"could not reload the run's data {spec.get('data')!r} ({exc})"
    if dataset.items.to_list() != run.items.to_list():
        return None, "the reloaded data's items differ from the run's item vocabulary"
    kind = spec.get("encoder") or "minilm"
    if kind == "tfidf":
        text_encoder: Any = TfidfEncoder(dim=256)  # as `recembed fit --encoder tfidf`
    else:
        from ..encoders import SentenceEncoder

        text_encoder = SentenceEncoder(show_progress=False)
    added = attach_features(dataset, spec.get("features") or (), text_columns=columns, text_encoder=text_encoder)
    text_name = added[-1]
    cfg = model.config
    content, names = content_matrix(dataset.item_table, cfg.features, cfg.feature_norm, dataset.num_items)
    if content.shape != model.content_.shape or not np.allclose(content, model.content_, atol=1e-4):
        return None, "replaying the run's data spec does not reproduce the model's content vectors"
    table = dataset.item_table
    modalities = [ContentModality(n, int(np.asarray(table[n]).shape[1]), "text" if n == text_name else "vector")
                  for n in names]
    if not any(m.source == "text" for m in modalities):
        return None, "the model does not read the text column"
    return ContentEncoder(encoder=kind, text_columns=columns, modalities=modalities, feature_norm=cfg.feature_norm,
                          text_encoder=text_encoder if kind == "tfidf" else None), "ok"

