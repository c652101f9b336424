"""Paired significance tests between two evaluations of the same users."""

from __future__ import annotations

import numpy as np


def paired_test(
    users_a: np.ndarray, values_a: np.ndarray, users_b: np.ndarray, values_b: np.ndarray
) -> dict[str, float]:
    """Paired t-test and Wilcoxon signed-rank test on per-user metric values.

    Only users present in both runs are compared. Returns the means, their difference (b - a), the
    number of users, the t statistic and both two-sided p-values.
    """
    from scipy import stats

    common, ia, ib = np.intersect1d(users_a, users_b, return_indices=True)
    a, b = np.asarray(values_a, dtype=np.float64)[ia], np.asarray(values_b, dtype=np.float64)[ib]
    out = {"users": int(len(common)), "mean_a": float(a.mean()) if len(a) else float("nan"),
           "mean_b": float(b.mean()) if len(b) else float("nan")}
    out["diff"] = out["mean_b"] - out["mean_a"]
    diff = b - a
    if len(common) < 2 or np.allclose(diff, 0):
        out.update(t=0.0, p_ttest=1.0, p_wilcoxon=1.0)
        return out
    t = stats.ttest_rel(b, a)
    w = stats.wilcoxon(b, a, zero_method="wilcox")
    out.update(t=float(t.statistic), p_ttest=float(t.pvalue), p_wilcoxon=float(w.pvalue))
    return out
