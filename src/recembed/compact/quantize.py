"""Quantised embedding tables: fp16, int8 with a per-row scale, binary sign codes, FAISS PQ / OPQ / IVF-PQ.

Methods (the ``--method`` of ``recembed compress``; :func:`parse_method`):

* ``fp32``: no compression (the reference row of the benchmarks);
* ``fp16``: IEEE half precision, 2 bytes a dimension;
* ``int8``: symmetric per-row scale ``s = max|x| / 127``, codes ``round(x / s)`` in [-127, 127]; each element is
  off by at most ``s / 2``; ``d`` bytes of codes + a 2-byte (fp16) scale a row;
* ``binary``: the sign bits of each item vector minus the mean item vector (``d / 8`` bytes) and an fp16 scale
  (the row's mean absolute centred value: the least-squares scale of a sign code), decoded as
  ``mean + scale * (+-1)`` and scored asymmetrically (fp32 query . decoded code); the top ``rerank`` items of each
  query re-scored exactly on a re-rank store (``int8`` codes or the ``fp32`` vectors), the rest kept below them
  in sign-code order;
* ``pq:M[xB]`` / ``opq:M[xB]`` / ``ivfpq:M[xB]``: FAISS product quantisation of the item vectors with ``M``
  sub-quantisers of ``B`` bits (default 8), OPQ with a learnt rotation first, IVF-PQ with a coarse quantiser
  (residual PQ codes); the user vectors stay fp32 (asymmetric distance computation, as FAISS searches).

Byte accounting (:func:`byte_report`): ``bytes_per_item`` is what each item costs in the compressed table or
index (codes, per-row scales; IVF adds FAISS's 8-byte id per list entry); ``bytes_per_item_amortised``
adds the shared codebooks / rotation / coarse centroids spread over the items (large on a small catalog such
as ml-100k); binary with re-rank counts its re-rank store too (``index_bytes_per_item``: the sign codes
alone, what a first-stage scan reads).

References: Jegou, Douze, Schmid, "Product Quantization for Nearest Neighbor Search", TPAMI 2011; Ge et al.,
"Optimized Product Quantization", CVPR 2013 (OPQ); FAISS (Johnson, Douze, Jegou 2019). Deviation: the int8
scale is stored as fp16 (its relative error 2^-11 is far below the code step).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError

KINDS = ("fp32", "fp16", "int8", "binary", "pq", "opq", "ivfpq")
FAISS_KINDS = ("pq", "opq", "ivfpq")
RERANK_STORES = ("int8", "fp32")


@dataclass(frozen=True)
class Method:
    kind: str
    m: int = 0
    """PQ sub-quantisers (``pq`` / ``opq`` / ``ivfpq``)."""
    nbits: int = 8
    """Bits per PQ sub-code."""
    rerank: int = 100
    """``binary``: items per query re-scored exactly."""
    rerank_on: str = "int8"
    """``binary``: the re-rank store (``int8`` or ``fp32``)."""
    nlist: int = 0
    """``ivfpq``: coarse cells (0: about 4 sqrt(N), at least 39 items a cell)."""
    nprobe: int = 16
    """``ivfpq``: cells visited per query by the stored FAISS index (the evaluation scores every item)."""

    @property
    def label(self) -> str:
        if self.kind in FAISS_KINDS:
            return f"{self.kind}:{self.m}" + ("" if self.nbits == 8 else f"x{self.nbits}")
        if self.kind == "binary":
            return f"binary+rerank{self.rerank}({self.rerank_on})" if self.rerank else "binary"
        return self.kind


def parse_method(spec: str, *, rerank: int | None = None, rerank_on: str | None = None,
                 nlist: int | None = None, nprobe: int | None = None) -> Method:
    """``"int8"``, ``"pq:16"``, ``"opq:8x8"``, ``"binary"``, ... -> :class:`Method`; errors name the flag."""
    text = str(spec).strip().lower()
    match = re.fullmatch(r"(pq|opq|ivfpq):(\d+)(?:x(\d+))?", text)
    if match:
        kind, m, nbits = match.group(1), int(match.group(2)), int(match.group(3) or 8)
        if m < 1:
            raise ConfigError(f"--method {spec}: M (sub-quantisers) must be >= 1")
        if not 1 <= nbits <= 16:
            raise ConfigError(f"--method {spec}: bits per sub-code must be from 1 to 16")
    elif text in ("fp32", "fp16", "int8", "binary"):
        kind, m, nbits = text, 0, 8
    else:
        raise ConfigError(f"--method: unknown method {spec!r}; expected fp32, fp16, int8, binary, pq:M, opq:M or "
                          "ivfpq:M (optionally pq:MxBITS)")
    if kind != "binary" and (rerank is not None or rerank_on is not None):
        raise ConfigError(f"--rerank / --rerank-on: only with --method binary (got --method {spec})")
    if kind != "ivfpq" and (nlist is not None or nprobe is not None):
        raise ConfigError(f"--nlist / --nprobe: only with --method ivfpq:M (got --method {spec})")
    if rerank is not None and rerank < 0:
        raise ConfigError(f"--rerank: expected an integer >= 0, got {rerank}")
    if rerank_on is not None and rerank_on not in RERANK_STORES:
        raise ConfigError(f"--rerank-on: expected one of {RERANK_STORES}, got {rerank_on!r}")
    for flag, value in (("--nlist", nlist), ("--nprobe", nprobe)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag}: expected an integer >= 1, got {value}")
    return Method(kind, m, nbits, 100 if rerank is None else int(rerank), rerank_on or "int8",
                  int(nlist or 0), int(nprobe or 16))


# --------------------------------------------------------------------------------------------
# fp16 / int8 / binary
# --------------------------------------------------------------------------------------------
def fp16_encode(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).astype(np.float16)


def fp16_decode(codes: np.ndarray) -> np.ndarray:
    return np.asarray(codes).astype(np.float32)


def int8_encode(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(codes (N, d) int8, scales (N,) fp16)``: symmetric per-row scale ``max|x| / 127`` (rows of zeros: 1)."""
    x = np.asarray(x, dtype=np.float32)
    peak = np.abs(x).max(axis=1) if x.size else np.zeros(len(x), dtype=np.float32)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float16)
    s = scale.astype(np.float32)[:, None]  # the stored (fp16) scale: codes are rounded against it
    codes = np.clip(np.rint(x / s), -127, 127).astype(np.int8)
    return codes, scale


def int8_decode(codes: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return codes.astype(np.float32) * np.asarray(scale, dtype=np.float32)[:, None]


def binary_encode(x: np.ndarray) -> np.ndarray:
    """Sign bits, packed: ``(N, ceil(d / 8)) uint8`` (bit set: the element is > 0)."""
    return np.packbits(np.asarray(x) > 0, axis=1)


def binary_table(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(bits, scale (N,) fp16, mean (d,) fp32)``: sign codes of ``x - mean`` and their least-squares scales."""
    x = np.asarray(x, dtype=np.float32)
    mean = x.mean(axis=0)
    centred = x - mean
    return binary_encode(centred), np.abs(centred).mean(axis=1).astype(np.float16), mean


def binary_table_decode(bits: np.ndarray, scale: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """``mean + scale * (+-1)``: what a :func:`binary_table` code stands for."""
    signs = binary_decode(bits, len(mean))
    return (mean[None, :] + np.asarray(scale, dtype=np.float32)[:, None] * signs).astype(np.float32)


def binary_decode(bits: np.ndarray, dim: int) -> np.ndarray:
    """``+-1`` float32 ``(N, dim)`` from :func:`binary_encode`'s bits."""
    return np.unpackbits(bits, axis=1, count=dim).astype(np.float32) * 2.0 - 1.0


# --------------------------------------------------------------------------------------------
# FAISS product quantisation
# --------------------------------------------------------------------------------------------
def _faiss():  # noqa: ANN202
    try:
        import faiss
    except ImportError:
        raise ConfigError("--method pq / opq / ivfpq need faiss-cpu (pip install 'recembed[serve]')") from None
    return faiss


def default_nlist(n: int) -> int:
    return max(1, min(int(4 * np.sqrt(n)), n // 39))


def train_faiss(method: Method, x: np.ndarray, seed: int = 0) -> Any:
    """A trained FAISS index over ``x`` (the item vectors) holding their PQ codes (inner-product metric)."""
    faiss = _faiss()
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    if d % method.m:
        raise ConfigError(f"--method {method.label}: M={method.m} must divide the embedding dimension {d}")
    if n < 2 ** method.nbits:
        raise ConfigError(f"--method {method.label}: {n} items are fewer than the {2 ** method.nbits} centroids a "
                          f"sub-quantiser of {method.nbits} bits needs (use pq:MxBITS with fewer bits)")
    if method.kind == "pq":
        factory = f"PQ{method.m}x{method.nbits}np"  # np: no polysemous training (slow, unused here)
    elif method.kind == "opq":
        factory = f"OPQ{method.m},PQ{method.m}x{method.nbits}np"
    else:
        nlist = method.nlist or default_nlist(n)
        factory = f"IVF{nlist},PQ{method.m}x{method.nbits}np"
    index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    _seed_clustering(index, seed)
    rotation_pq = None
    if method.kind == "opq":  # OPQ learns its rotation with a PQ of the final code width (FAISS's default: 8 bits)
        rotation_pq = faiss.ProductQuantizer(d, method.m, method.nbits)
        faiss.downcast_VectorTransform(index.chain.at(0)).pq = rotation_pq
    index.train(x)
    if rotation_pq is not None:
        faiss.downcast_VectorTransform(index.chain.at(0)).pq = None  # only for training; not kept past it
    index.add(x)
    if method.kind == "ivfpq":
        ivf = faiss.extract_index_ivf(index)
        ivf.nprobe = method.nprobe
        ivf.make_direct_map()
    return index


def _seed_clustering(index: Any, seed: int) -> None:
    """FAISS k-means seeds (PQ sub-quantisers, the IVF coarse quantiser) set from ``seed`` (OPQ's rotation
    training keeps FAISS's own fixed seed)."""
    faiss = _faiss()
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexPreTransform) else index
    if hasattr(inner, "pq"):
        inner.pq.cp.seed = seed
    if hasattr(inner, "cp"):
        inner.cp.seed = seed


def faiss_decode(index: Any) -> np.ndarray:
    """The decoded (reconstructed) vectors of every item the index holds, ``(N, d) float32``."""
    return np.ascontiguousarray(index.reconstruct_n(0, index.ntotal), dtype=np.float32)


def faiss_to_array(index: Any) -> np.ndarray:
    return np.asarray(_faiss().serialize_index(index), dtype=np.uint8)


def faiss_from_array(blob: np.ndarray) -> Any:
    faiss = _faiss()
    index = faiss.deserialize_index(np.ascontiguousarray(blob, dtype=np.uint8))
    if isinstance(index, faiss.IndexPreTransform):
        return index
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.make_direct_map()
    return index


def faiss_overhead_bytes(index: Any, method: Method, d: int) -> int:
    """Bytes shared by all items: PQ codebooks, the OPQ rotation, the IVF coarse centroids."""
    book = method.m * (2 ** method.nbits) * (d // method.m) * 4
    if method.kind == "opq":
        book += d * d * 4
    if method.kind == "ivfpq":
        book += _faiss().extract_index_ivf(index).nlist * d * 4
    return book


def byte_report(method: Method, num_items: int, dim: int, index: Any = None) -> dict[str, Any]:
    """Bytes a compressed item costs (see the module docstring) and the ratio to fp32."""
    fp32 = 4 * dim
    overhead = 0
    if method.kind == "fp32":
        per = fp32
    elif method.kind == "fp16":
        per = 2 * dim
    elif method.kind == "int8":
        per = dim + 2
    elif method.kind == "binary":
        per, overhead = (dim + 7) // 8 + 2, 4 * dim  # sign bits + fp16 scale; the shared mean vector
    else:
        per = (method.m * method.nbits + 7) // 8 + (8 if method.kind == "ivfpq" else 0)
        overhead = faiss_overhead_bytes(index, method, dim) if index is not None else 0
    out: dict[str, Any] = {"method": method.label, "dim": dim, "items": num_items, "bytes_per_item_fp32": fp32}
    if method.kind == "binary":
        store = {"int8": dim + 2, "fp32": fp32}[method.rerank_on] if method.rerank else 0
        out.update(index_bytes_per_item=per, rerank_store_bytes_per_item=store)
        per += store
    out["bytes_per_item"] = per
    out["bytes_per_item_amortised"] = round(per + overhead / max(1, num_items), 2)
    out["shared_bytes"] = overhead
    out["compression_ratio"] = round(fp32 / per, 2)
    out["compression_ratio_amortised"] = round(fp32 / out["bytes_per_item_amortised"], 2)
    return out
