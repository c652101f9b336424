"""Parameter-efficient item tables for training (``--set item_table=KIND:C``): the item embedding table of a
trainable embedding model (BPR, LightGCN, SimGCL, XSimGCL, DirectAU) replaced by a smaller module with about
``1 / C`` of its parameters, trained end to end. One interface: every table is an ``nn.Module`` with ``weight``
(the materialised ``(I, D)`` table, differentiable) and ``forward(idx)`` (rows), so the models read it as they
read an ``nn.Embedding``.

Kinds (``I`` items, width ``D``, factor ``C >= 2``):

* ``full`` -- the plain ``(I, D)`` table (the default; nothing replaced).
* ``hash:C`` -- the hashing trick (Weinberger, Dasgupta, Langford, Smola and Attenberg, "Feature Hashing for
  Large Scale Multitask Learning", ICML 2009): item ``i`` reads row ``h(i)`` of a ``(ceil(I / C), D)`` table
  (the universal hash of :mod:`recembed.models.ranking._tables`); colliding items share a vector.
* ``qr:C`` -- the quotient-remainder trick (Shi, Mudigere, Naumov and Yang, "Compositional Embeddings Using
  Complementary Partitions for Memory-Efficient Recommendation Systems", KDD 2020): ``e_i = Q[i // C] * R[i % C]``
  (element-wise product, the paper's best operation) with ``Q (ceil(I / C), D)`` and ``R (C, D)``; no two items
  share both rows, so every item has its own vector. ``R`` starts at 1 + N(0, 0.3^2) (near ``Q``'s rows).
* ``tt:C`` -- TT-Rec (Yin, Acun, Wu and Liu, "TT-Rec: Tensor Train Decomposition for Embedding Tables", MLSys
  2021): the table as a tensor train of three cores over ``I <= n^3`` and ``D = d1 d2 d3``, ``G1 (n, d1, r)``,
  ``G2 (r, n, d2, r)``, ``G3 (r, n, d3)``, the rank ``r`` the largest whose cores fit ``I D / C`` parameters.
  Initialised so the materialised entries have the full table's standard deviation (the paper's sampled
  Gaussian initialisation, in spirit).

Deviations / limits: the tables replace the **item** table only (users keep theirs); the fitted model exports
the materialised ``(I, D)`` item factors, so a bundle is full-size (compress it for serving with ``recembed
compress``): the saving is in the trained parameters and the optimizer state. DHE (deep hash embeddings) is
not offered: materialising all items through its MLP every step (LightGCN's propagation needs them) costs
~100 GFLOP a step on gowalla at 1/4 of the parameters, out of reach on CPU. TT-Rec's cache of frequent rows is
not built. Sequential models keep their item tables (their inputs and outputs share one table with padding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError

KINDS = ("full", "hash", "qr", "tt")
REMAINDER_NOISE = 0.3  # qr: R starts at 1 + N(0, 0.3^2), so items sharing a quotient row start apart


@dataclass(frozen=True)
class TableFields:
    """Config field of the models whose item table can be replaced (listed among the config's bases)."""

    item_table: str = "full"
    """The item embedding table (docs/compact.md): ``full``, or ``hash:C`` / ``qr:C`` / ``tt:C`` with about
    1/C of the full table's parameters (the hashing trick, quotient-remainder, TT-Rec)."""

    def __post_init__(self) -> None:
        super().__post_init__()  # type: ignore[misc]
        parse_table(self.item_table)


def parse_table(spec: str, field: str = "item_table") -> tuple[str, int]:
    """``(kind, C)`` of ``spec`` (``full`` -> ``("full", 1)``); ConfigError naming ``field`` otherwise."""
    kind, _, factor = str(spec).partition(":")
    if kind == "full" and not factor:
        return "full", 1
    if kind not in KINDS[1:]:
        raise ConfigError(f"{field}: unknown table {spec!r}; expected full, hash:C, qr:C or tt:C (C >= 2, about "
                          "1/C of the full table's parameters)")
    if not factor.isdigit() or int(factor) < 2:
        raise ConfigError(f"{field}: {kind} needs an integer factor C >= 2 ({kind}:4 = a quarter of the "
                          f"parameters), got {spec!r}")
    return kind, int(factor)


class HashTable(nn.Module):
    """``hash:C``: ``weight[i] = T[h(i)]``."""

    def __init__(self, num: int, dim: int, factor: int, std: float) -> None:
        super().__init__()
        from ..models.ranking._tables import hash_coefficients, universal_hash

        rows = max(1, math.ceil(num / factor))
        self.table = nn.Parameter(torch.randn(rows, dim) * std)
        a, b = (int(v) for v in hash_coefficients("item_table", 1)[0])
        self.register_buffer("rows", universal_hash(torch.arange(num), torch.tensor(a), torch.tensor(b), rows),
                             persistent=False)

    @property
    def weight(self) -> torch.Tensor:
        return self.table[self.rows]

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.table[self.rows[idx]]


class QRTable(nn.Module):
    """``qr:C``: ``weight[i] = Q[i // C] * R[i % C]``."""

    def __init__(self, num: int, dim: int, factor: int, std: float) -> None:
        super().__init__()
        self.factor = factor
        self.quotient = nn.Parameter(torch.randn(math.ceil(num / factor), dim) * std)
        self.remainder = nn.Parameter(1.0 + REMAINDER_NOISE * torch.randn(factor, dim))
        idx = torch.arange(num)
        self.register_buffer("q", idx // factor, persistent=False)
        self.register_buffer("r", idx % factor, persistent=False)

    @property
    def weight(self) -> torch.Tensor:
        return self.quotient[self.q] * self.remainder[self.r]

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.quotient[self.q[idx]] * self.remainder[self.r[idx]]


def _three_factors(d: int) -> tuple[int, int, int]:
    """``d = d1 * d2 * d3`` with the factors as even as the divisors allow."""
    best = (1, 1, d)
    for a in range(1, int(round(d ** (1 / 3))) + 2):
        if d % a:
            continue
        for b in range(a, int(math.isqrt(d // a)) + 1):
            if (d // a) % b == 0 and max(a, b, d // a // b) < max(best):
                best = (a, b, d // a // b)
    return best


def tt_rank(num: int, dim: int, factor: int) -> tuple[int, int, tuple[int, int, int]]:
    """``(rank, n, (d1, d2, d3))`` of ``tt:factor`` for an ``(num, dim)`` table."""
    n = math.ceil(num ** (1 / 3))
    while n ** 3 < num:
        n += 1
    d = _three_factors(dim)
    budget = num * dim / factor

    def params(r: int) -> int:
        return n * d[0] * r + r * n * d[1] * r + r * n * d[2]

    r = 1
    while params(r + 1) <= budget:
        r += 1
    return r, n, d


class TTTable(nn.Module):
    """``tt:C``: the table as a tensor train of three cores (TT-Rec)."""

    def __init__(self, num: int, dim: int, factor: int, std: float) -> None:
        super().__init__()
        r, n, (d1, d2, d3) = tt_rank(num, dim, factor)
        self.num, self.dim, self.n = num, dim, n
        s = (std ** 2 / r ** 2) ** (1 / 6)  # var of a sum of r^2 products of three N(0, s^2) entries = r^2 s^6
        self.g1 = nn.Parameter(torch.randn(n, d1, r) * s)
        self.g2 = nn.Parameter(torch.randn(r, n, d2, r) * s)
        self.g3 = nn.Parameter(torch.randn(r, n, d3) * s)

    @property
    def weight(self) -> torch.Tensor:
        t = torch.einsum("adr,rbes->abdes", self.g1, self.g2)  # (n, n, d1, d2, r)
        full = torch.einsum("abdes,scf->abcdef", t, self.g3)  # (n, n, n, d1, d2, d3)
        return full.reshape(self.n ** 3, self.dim)[: self.num]

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        a, rest = idx // (self.n * self.n), idx % (self.n * self.n)
        b, c = rest // self.n, rest % self.n
        t = torch.einsum("kdr,kres->kdes", self.g1[a], self.g2.permute(1, 0, 2, 3)[b])  # (k, d1, d2, r)
        out = torch.einsum("kdes,ksf->kdef", t, self.g3.permute(1, 0, 2)[c])  # (k, d1, d2, d3)
        return out.reshape(len(idx), self.dim)


TABLES = {"hash": HashTable, "qr": QRTable, "tt": TTTable}


def make_table(spec: str, num: int, dim: int, std: float) -> nn.Module | None:
    """The module of ``spec`` for an ``(num, dim)`` table whose full version starts with entries of ``std``;
    None for ``full``."""
    kind, factor = parse_table(spec)
    return None if kind == "full" else TABLES[kind](num, dim, factor, float(std))


def table_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def replace_item_table(module: nn.Module, spec: str) -> nn.Module:
    """``module`` with its item table replaced by ``spec``'s (``module.item`` of an MF module, the item block of a
    graph module's layer-0 embeddings); ``module`` itself for ``full``. ConfigError for a module without one."""
    if parse_table(spec)[0] == "full":
        return module
    if hasattr(module, "compress_items"):  # graph modules: one (U+I, D) layer 0
        module.compress_items(spec)
        return module
    item = getattr(module, "item", None)
    if not isinstance(item, nn.Embedding):
        raise ConfigError(f"item_table: {type(module).__name__} has no item embedding table to replace; "
                          "use item_table=full")
    module.item = make_table(spec, item.num_embeddings, item.embedding_dim, float(item.weight.detach().std()))
    return module
