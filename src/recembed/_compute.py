"""Fast kernels with a NumPy/SciPy fallback: torch (multi-threaded) when it is installed."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

try:  # torch is an optional extra; everything works without it, only slower
    import torch

    HAVE_TORCH = True
except ImportError:  # pragma: no cover - exercised only where torch is absent
    torch = None  # type: ignore[assignment]
    HAVE_TORCH = False


DENSE_LIMIT_BYTES = 256 * 2**20


def torch_csr(matrix: sp.csr_matrix):  # noqa: ANN201 - a torch sparse CSR tensor (torch is optional)
    """A SciPy CSR matrix as a float32 torch sparse CSR tensor (its MKL kernels multiply dense blocks)."""
    import warnings

    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
    m = sp.csr_matrix(matrix, dtype=np.float32)
    return torch.sparse_csr_tensor(
        torch.from_numpy(m.indptr.astype(np.int64)), torch.from_numpy(m.indices.astype(np.int64)),
        torch.from_numpy(m.data), size=m.shape, check_invariants=False,
    )


def spmm(rows: sp.csr_matrix, dense: np.ndarray) -> np.ndarray:
    """``rows @ dense`` for a sparse ``(B, n)`` and a dense ``(n, d)`` float32 matrix."""
    rows = sp.csr_matrix(rows, dtype=np.float32)
    if not HAVE_TORCH:
        return np.asarray(rows @ dense, dtype=np.float32)
    return (torch_csr(rows) @ torch.from_numpy(np.ascontiguousarray(dense, dtype=np.float32))).numpy()


def masked_topk(scores: np.ndarray, mask_rows: np.ndarray, mask_cols: np.ndarray, k: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Set ``scores[mask_rows, mask_cols] = -inf`` (in place) and return the top ``k`` per row,
    best first: ``(items (B, k) int64, values (B, k) float32)``; ties go to the lower index."""
    scores[mask_rows, mask_cols] = -np.inf
    if HAVE_TORCH:
        values, items = torch.topk(torch.from_numpy(scores), k, dim=1, largest=True, sorted=True)
        values, items = values.numpy(), items.numpy()
    else:
        items = np.argpartition(-scores, kth=k - 1, axis=1)[:, :k]
        values = np.take_along_axis(scores, items, axis=1)
    # items tied with the k-th score may be more than the slots left for them: keep the lowest indices
    boundary = values[:, -1]
    n_above = (values > boundary[:, None]).sum(axis=1)
    ties = scores == boundary[:, None]
    n_tied = ties.sum(axis=1)
    fix = np.flatnonzero((n_tied > k - n_above) & np.isfinite(boundary))
    if len(fix):
        sub_ties = ties[fix]
        room = (k - n_above[fix])[:, None]  # tied slots left in each row
        keep = (scores[fix] > boundary[fix, None]) | (sub_ties & (np.cumsum(sub_ties, axis=1) <= room))
        _, cols = np.nonzero(keep)  # exactly k per row, row-major
        items[fix] = cols.reshape(len(fix), k)
        values[fix] = np.take_along_axis(scores[fix], items[fix], axis=1)
    order = np.lexsort((items, -values), axis=1)  # exact (-score, index) order among the k
    return np.take_along_axis(items, order, axis=1), np.take_along_axis(values, order, axis=1)

def rows_times(rows: sp.csr_matrix, matrix: sp.csr_matrix, owner: object, cache: str) -> np.ndarray:
    """``rows @ matrix`` as a dense float32 array, for a sparse item x item ``matrix``.

    Small matrices (dense form within ``DENSE_LIMIT_BYTES``) are multiplied in dense form, several
    times faster; the dense copy is kept on ``owner`` under the attribute ``cache``.
    """
    if matrix.shape[0] * matrix.shape[1] * 4 <= DENSE_LIMIT_BYTES:
        dense = getattr(owner, cache, None)
        if dense is None:
            dense = matrix.toarray().astype(np.float32, copy=False)
            setattr(owner, cache, dense)
        return spmm(rows, dense)
    return np.asarray((sp.csr_matrix(rows, dtype=np.float32) @ matrix).toarray(), dtype=np.float32)
