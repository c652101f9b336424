"""Full-ranking evaluation: metrics, the batched protocol, slices and significance tests."""

from .metrics import METRICS, compute_metrics, hits_from_topk
from .ranking import EvalResult, evaluate, rank_topk
from .significance import paired_test

__all__ = ["METRICS", "EvalResult", "compute_metrics", "evaluate", "hits_from_topk", "paired_test", "rank_topk"]
