"""A prefix tree over unique semantic IDs and trie-constrained beam search.

Generative retrieval decodes an item one code at a time; constraining every step to the children of the
current prefix guarantees that each finished beam is a real item (TIGER decodes freely and drops invalid
tuples; a constrained beam never wastes a slot on one).

Each level ``l`` is stored as padded child tables: ``child_code[l] (n_l, c_l)`` the codes of each level-``l``
node's children (-1 = none) and ``child_node[l]`` their node numbers at level ``l + 1``; level-``L`` nodes are
items (``leaf_item``). Building and searching are vectorised (no Python loop over items or beams).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..errors import DataError

#: ``step(prefix (N, B, l) codes, level, parent) -> (N, B, sizes[level])`` log-probabilities of the next code;
#: ``parent (N, B)``: which beam of the previous step each beam extends (None at level 0), for decoder caches
StepFn = Callable[[torch.Tensor, int, "torch.Tensor | None"], torch.Tensor]


class CodeTrie:
    """Trie over the rows of ``codes (I, L)``, which must be unique."""

    def __init__(self, codes: np.ndarray) -> None:
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[0] == 0:
            raise DataError(f"a code trie needs a non-empty (items, levels) array, got shape {codes.shape}")
        n, levels = codes.shape
        order = np.lexsort(codes.T[::-1])
        c = codes[order]
        # node number of each (sorted) item's prefix of length l, l = 0..L
        nodes = [np.zeros(n, np.int64)]
        for lv in range(1, levels + 1):
            new = np.r_[True, (c[1:, :lv] != c[:-1, :lv]).any(axis=1)]
            nodes.append(np.cumsum(new) - 1)
        if nodes[levels][-1] + 1 != n:
            raise DataError(f"semantic IDs are not unique ({n - nodes[levels][-1] - 1} collisions); "
                            "add the disambiguation level (SemanticIds.deduplicated())")
        self.levels = levels
        self.num_items = n
        self.child_code: list[torch.Tensor] = []
        self.child_node: list[torch.Tensor] = []
        for lv in range(levels):
            first = np.r_[True, nodes[lv + 1][1:] != nodes[lv + 1][:-1]]
            parent, code, child = nodes[lv][first], c[first, lv], nodes[lv + 1][first]
            n_parent = int(nodes[lv][-1]) + 1
            counts = np.bincount(parent, minlength=n_parent)
            rank = np.arange(len(parent)) - np.repeat(np.r_[0, np.cumsum(counts)[:-1]], counts)
            cc = np.full((n_parent, int(counts.max())), -1, np.int64)
            cn = np.zeros_like(cc)
            cc[parent, rank], cn[parent, rank] = code, child
            self.child_code.append(torch.from_numpy(cc))
            self.child_node.append(torch.from_numpy(cn))
        leaf = np.empty(n, np.int64)
        leaf[nodes[levels]] = order
        self.leaf_item = torch.from_numpy(leaf)

    def beam_search(self, step: StepFn, num: int, beam: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode ``num`` queries: ``(items (N, beam), scores (N, beam))``, best first; a query with fewer than
        ``beam`` reachable items pads with item -1 and score ``-inf``. Scores are summed log-probabilities."""
        if beam < 1:
            raise ValueError(f"beam must be >= 1, got {beam}")
        nodes = torch.zeros(num, 1, dtype=torch.long)  # (N, b) trie nodes at the current level
        scores = torch.zeros(num, 1)
        prefix = torch.zeros(num, 1, 0, dtype=torch.long)  # (N, b, l)
        src: torch.Tensor | None = None
        for lv in range(self.levels):
            logp = step(prefix, lv, src)  # (N, b, K_l)
            codes = self.child_code[lv][nodes]  # (N, b, c)
            width = codes.shape[2]
            cand = torch.gather(logp, 2, codes.clamp(min=0)) + scores[..., None]
            cand = cand.masked_fill(codes < 0, float("-inf")).reshape(num, -1)
            k = min(beam, cand.shape[1])
            scores, flat = cand.topk(k, dim=1)
            src, slot = flat // width, flat % width
            parent = torch.gather(nodes, 1, src)
            nodes = self.child_node[lv][parent, slot]
            code = self.child_code[lv][parent, slot].clamp(min=0)
            prefix = torch.cat([torch.gather(prefix, 1, src[..., None].expand(-1, -1, lv)), code[..., None]], dim=2)
        items = torch.where(torch.isfinite(scores), self.leaf_item[nodes], torch.full_like(nodes, -1))
        if items.shape[1] < beam:
            pad = beam - items.shape[1]
            items = torch.cat([items, torch.full((num, pad), -1, dtype=torch.long)], dim=1)
            scores = torch.cat([scores, torch.full((num, pad), float("-inf"))], dim=1)
        return items, scores
