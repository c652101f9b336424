"""TIGER-style generative retrieval: generate the next item's semantic ID, one code at a time.

Rajput, Mehta, Singh, Keshavan, Vu, Heldt, Hong, Tay, Tran, Samost, Kula, Chi & Sathiamoorthy,
"Recommender Systems with Generative Retrieval", NeurIPS 2023.

Every item is a tuple of ``L`` codes (its semantic ID: :mod:`recembed.semantic` makes them from item vectors
or reads them from a file; with the collision level appended every tuple is unique). A transformer encoder
reads the history; a decoder generates the next item's codes level by level; trie-constrained beam search
(:class:`recembed.semantic.trie.CodeTrie`) keeps only prefixes of real items, and the final beam, ranked by
summed log-probability, is the recommendation list.

Where this differs from the paper's T5 encoder-decoder, and why (a 2-core CPU, not a TPU):

* **Encoder tokens are items, not codes** (default ``encoder_tokens="item"``). A history item enters as the
  *sum* of its code embeddings (one table per level, shared with the decoder's inputs), at one position; the
  paper spends ``L`` positions per item, which ``encoder_tokens="code"`` does (code embedding + item position +
  level embedding; attention block-causal by item: a token sees every code of its own and earlier items).
  The encoder is **bidirectional**, as the paper's: every history item attends to the whole history, and
  each (prefix, next item) pair is its own example, one encoder pass each. ``encoder="causal"`` instead trains
  the next item after every position of a window in one pass (as SASRec does): ``mean history length`` fewer
  encoder tokens per epoch, but on Beauty 10-14% lower Recall / NDCG after more epochs (benchmarks/RESULTS.md);
  it was the default until 2026-11-27, and saves that do not name ``encoder`` load as causal.
* **Decoder:** per target, inputs ``[BOS, c_1 .. c_{L-1}]`` plus level embeddings; causal self-attention
  over the levels; cross-attention to the encoder states up to the target's position. One linear head per
  level predicts that level's code (cross-entropy, averaged over levels).
* No user-id token (the paper hashes user ids into 2,000 extra tokens).
* **Full ranking:** items outside the final beam get ``-1e4 + log p(first code)``, so every item has a rank
  and the top of the ranking is exactly the beam; metrics at K above ``beam_size`` rank the rest coarsely.
* Decoding is incremental (each step runs the decoder on the newest code only, its blocks' earlier inputs
  cached and reordered with the beams) and every beam of a user shares one copy of the encoder states.
* Set ``valid_sample`` (a shared training option): early stopping then watches a fixed random sample of
  validation users (beam search costs much more than SASRec's dot product); reported metrics use every user.

``semantic_ids`` selects the codes: ``"random"`` (random tuples of ``levels`` x ``codebook``, the paper's
ablation), a folder written by ``SemanticIds.save`` / ``recembed tokenize``, or a LETTER / LC-Rec
``*.index.json`` file (keys are external item ids plus ``id_offset``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...config import check
from ...data.interactions import Interactions
from ...options import FitOptions
from ...semantic.ids import SemanticIds
from ...semantic.resolve import DERIVED, semantic_ids_for_fit, sid_from_state, sid_state
from ...semantic.trie import CodeTrie
from ...training.sequences import NextItemTask, PrefixTask, SeqBatch, Sequences
from ..sequential._seqnets import Attention, TransformerEncoder
from ..sequential.core import SequentialConfig, SequentialRecommender


@dataclass(frozen=True)
class TIGERConfig(SequentialConfig):
    MATRYOSHKA_UNSUPPORTED: ClassVar[str] = "not for tiger: its scores are decoded semantic IDs, not an inner product"
    semantic_ids: str = "auto"
    """``auto`` (codes made at fit time: RQ-VAE over the item table's vector columns when it has some, else over
    the item embeddings of a BPR model fitted first), ``content``, ``cf``, ``random`` (the paper's ablation), a
    folder from ``recembed tokenize`` / ``SemanticIds.save``, or a ``*.index.json`` file."""
    id_offset: int = 0
    """For ``*.index.json``: the file's key of an item is its external id plus this (LETTER Beauty: -1)."""
    levels: int = 3
    """Code levels of made (``auto`` / ``content`` / ``cf`` / ``random``) semantic IDs, before the collision level."""
    codebook: int = 256
    """Codebook size of each level of made semantic IDs."""
    max_len: int = 20
    """History items read (the paper keeps the last 20)."""
    embedding_dim: int = 128
    """Width of code embeddings and hidden states (the paper: 128)."""
    num_layers: int = 4
    """Encoder blocks (the paper: 4)."""
    decoder_layers: int = 4
    """Decoder blocks (the paper: 4)."""
    num_heads: int = 4
    """Attention heads."""
    dropout: float = 0.1
    """Dropout (the paper: 0.1)."""
    encoder_tokens: Literal["item", "code"] = "item"
    """Encoder input: one token per history item (its code embeddings summed), or one token per code, as the
    paper (``max_len x levels`` tokens; a token sees every code of its own and earlier items)."""
    encoder: Literal["causal", "bidirectional"] = "bidirectional"
    """``bidirectional``: as the paper, every history item attends to the whole history, and each (history
    prefix, next item) pair is its own training example; ``causal``: one encoder pass trains the next item
    after every position of a window (faster per epoch, less accurate; see the header)."""
    beam_size: int = 20
    """Beams kept while decoding; the final beam is the top of the ranking."""
    eval_batch_size: int = 256
    """Users decoded at once (each expands to ``beam_size`` decoder rows)."""

    epochs: int = 30
    """Epochs of the cosine learning-rate schedule (every one is run: ``patience`` 0)."""
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    """Cosine decay over ``epochs`` (the best recorded TIGER rows; constant: as the other sequential models)."""
    patience: int = 0
    """0: no early stop (the cosine schedule sets the length); the best validation epoch is kept."""
    valid_sample: int = 4096
    """Validation (beam search, costly) watches this many sampled users; reported metrics use every user."""

    #: saves written before ``encoder`` existed trained (and decode) with the causal encoder; before
    #: ``min_steps`` (SequentialConfig) with ``batch_size`` as set; before 2026-12-03 with random codes, 2 + 2
    #: blocks and a constant rate for up to 200 epochs, patience 10
    FORMER_DEFAULTS: ClassVar[dict[str, Any]] = {
        **SequentialConfig.FORMER_DEFAULTS, "encoder": "causal", "semantic_ids": "random", "num_layers": 2,
        "decoder_layers": 2, "epochs": 200, "lr_schedule": "constant", "patience": 10, "valid_sample": 0}

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.levels >= 1, "levels", f"must be >= 1, got {self.levels}")
        check(self.codebook >= 2, "codebook", f"must be >= 2, got {self.codebook}")
        check(self.num_layers >= 1, "num_layers", f"must be >= 1, got {self.num_layers}")
        check(self.decoder_layers >= 1, "decoder_layers", f"must be >= 1, got {self.decoder_layers}")
        check(self.beam_size >= 1, "beam_size", f"must be >= 1, got {self.beam_size}")
        check(self.encoder_tokens in ("item", "code"), "encoder_tokens",
              f"must be 'item' or 'code', got {self.encoder_tokens!r}")
        check(self.encoder in ("causal", "bidirectional"), "encoder",
              f"must be 'causal' or 'bidirectional', got {self.encoder!r}")
        check(self.embedding_dim % self.num_heads == 0, "num_heads",
              f"embedding_dim {self.embedding_dim} is not divisible by {self.num_heads}")


class DecoderBlock(nn.Module):
    """Pre-LN: self-attention over the levels of each target, cross-attention to the history, feed-forward."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.self_attn, self.cross = Attention(dim, heads, dropout), Attention(dim, heads, dropout)
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, cross_mask: torch.Tensor,
                self_mask: torch.Tensor) -> torch.Tensor:
        b, tq, lq, d = x.shape  # (B, Tq, Lq, D): Lq decoder tokens for each of Tq targets
        h = self.ln1(x).reshape(b * tq, lq, d)
        x = x + self.drop(self.self_attn(h, h, self_mask)).view(b, tq, lq, d)
        h = self.ln2(x).reshape(b, tq * lq, d)
        x = x + self.drop(self.cross(h, memory, cross_mask)).view(b, tq, lq, d)
        return x + self.drop(self.ff(self.ln3(x)))

    def step(self, x: torch.Tensor, every: torch.Tensor, memory: torch.Tensor, cross_mask: torch.Tensor
             ) -> torch.Tensor:
        """The newest token only: x (B, Q, 1, D); every (B, Q, l, D) this block's inputs for all tokens so far
        (the new one last, so causal attention needs no mask)."""
        b, q, lq, d = every.shape
        h = self.ln1(every).reshape(b * q, lq, d)
        x = x + self.self_attn(h[:, -1:], h, None).view(b, q, 1, d)
        x = x + self.cross(self.ln2(x).reshape(b, q, d), memory, cross_mask).view(b, q, 1, d)
        return x + self.ff(self.ln3(x))


class TIGERModule(nn.Module):
    def __init__(self, codes: np.ndarray, sizes: tuple[int, ...], cfg: TIGERConfig) -> None:
        super().__init__()
        d = cfg.embedding_dim
        self.sizes = sizes
        self.levels = len(sizes)
        # token t (item index + 1; 0 = pad) -> its codes, offset into the shared code table
        offsets = np.r_[0, np.cumsum(sizes)[:-1]]
        table = np.zeros((codes.shape[0] + 1, self.levels), np.int64)
        table[1:] = codes + offsets
        self.register_buffer("token_codes", torch.from_numpy(table), persistent=False)
        self.register_buffer("offsets", torch.from_numpy(offsets.astype(np.int64)), persistent=False)
        self.code_emb = nn.Embedding(int(sum(sizes)), d)
        nn.init.normal_(self.code_emb.weight, std=0.02)
        self.group = self.levels if cfg.encoder_tokens == "code" else 1  # encoder states per history item
        self.causal = cfg.encoder == "causal"
        self.encoder = TransformerEncoder(d, cfg.max_len, cfg.num_layers, cfg.num_heads, cfg.dropout, "bert",
                                          causal=self.causal, group=self.group)
        if self.group > 1:
            self.enc_level = nn.Parameter(torch.randn(self.levels, d) * 0.02)
        self.bos = nn.Parameter(torch.randn(d) * 0.02)
        self.level_pos = nn.Parameter(torch.randn(self.levels, d) * 0.02)
        self.blocks = nn.ModuleList(DecoderBlock(d, cfg.num_heads, cfg.dropout) for _ in range(cfg.decoder_layers))
        self.ln_f = nn.LayerNorm(d)
        self.heads = nn.ModuleList(nn.Linear(d, k) for k in sizes)
        self.drop = nn.Dropout(cfg.dropout)

    # -- encoder ----------------------------------------------------------------------------------
    def item_vectors(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.code_emb(self.token_codes[tokens]).sum(-2)  # (..., D)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Encoder states ``(B, T * group, D)``: one per history item, or one per code of each item."""
        if self.group == 1:
            return self.encoder(self.item_vectors(tokens), tokens)  # (B, T, D)
        x = self.code_emb(self.token_codes[tokens]) + self.enc_level  # (B, T, L, D)
        return self.encoder(x.flatten(1, 2), tokens)  # (B, T * L, D)

    def item_table(self) -> torch.Tensor:
        return self.code_emb(self.token_codes[1:]).sum(-2)

    # -- decoder ----------------------------------------------------------------------------------
    def decode(self, memory: torch.Tensor, tokens: torch.Tensor, prefix: torch.Tensor,
               when: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder hidden states ``(B, Q, l + 1, D)`` for ``Q`` targets per history.

        memory (B, T, D) encoder states; tokens (B, T) the history (0 = pad); prefix (B, Q, l) the codes
        (level-local) generated so far for each target; when (Q,) the last history position each target may
        read (default: the last Q positions, i.e. the item after every position — training). At inference Q
        is the beam: every beam of a user reads the whole history, so the memory is never copied per beam."""
        b, tq, lp = prefix.shape
        t, d = tokens.shape[1], memory.shape[2]
        x = torch.cat([self.bos.expand(b, tq, 1, d), self.code_emb(prefix + self.offsets[:lp])], dim=2)
        x = self.drop(x + self.level_pos[: lp + 1])
        lq = lp + 1
        if when is None:
            when = torch.arange(t - tq, t)
        keys = torch.arange(t).repeat_interleave(self.group)  # the history position of each encoder state
        real = (tokens != 0).repeat_interleave(self.group, dim=1)
        cross = ((keys[None, :] <= when[:, None])[None] & real[:, None, :]) | (keys[None, :] == when[:, None])
        m = keys.shape[0]
        cross = cross[:, :, None, :].expand(b, tq, lq, m).reshape(b, 1, tq * lq, m)
        causal = torch.ones(lq, lq, dtype=torch.bool).tril()
        for block in self.blocks:
            x = block(x, memory, cross, causal)
        return self.ln_f(x)

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of every code of the item after every position (a bidirectional encoder: after the
        last position only, the only target its examples have), averaged over levels."""
        memory = self.encode(inputs)
        when = None
        if not self.causal:
            targets, when = targets[:, -1:], torch.tensor([inputs.shape[1] - 1])
        codes = self.token_codes[targets] - self.offsets  # (B, Q, L) level-local codes
        hidden = self.decode(memory, inputs, codes[..., :-1], when)  # (B, Q, L, D)
        sel = targets > 0
        h, c = hidden[sel], codes[sel]  # (M, L, D), (M, L)
        return sum(F.cross_entropy(head(h[:, lv]), c[:, lv]) for lv, head in enumerate(self.heads)) / self.levels

    def step_logprobs(self, memory: torch.Tensor, tokens: torch.Tensor, prefix: torch.Tensor, level: int
                      ) -> torch.Tensor:
        """``(N, B, K_level)`` log-probabilities of the next code after each of ``B`` prefixes per user (the
        whole prefix decoded again; :meth:`step_cached` gives the same numbers incrementally)."""
        beams = prefix.shape[1]
        when = torch.full((beams,), tokens.shape[1] - 1, dtype=torch.long)
        hidden = self.decode(memory, tokens, prefix, when)[:, :, level]  # (N, B, D)
        return F.log_softmax(self.heads[level](hidden), dim=-1)

    def step_cached(self, memory: torch.Tensor, tokens: torch.Tensor, prefix: torch.Tensor, level: int,
                    parent: torch.Tensor | None, cache: list[torch.Tensor]) -> torch.Tensor:
        """:meth:`step_logprobs` computing only the newest decoder token. ``cache`` holds each block's inputs
        for the earlier tokens ``(N, B, level, D)``; it is reordered by ``parent`` and extended in place."""
        n, beams, _ = prefix.shape
        d = memory.shape[2]
        if level == 0:
            x = self.bos.expand(n, beams, 1, d)
        else:
            x = self.code_emb(prefix[:, :, -1:] + self.offsets[level - 1])
        x = x + self.level_pos[level]
        if parent is not None:
            idx = parent[:, :, None, None]
            cache[:] = [torch.gather(c, 1, idx.expand(-1, -1, c.shape[2], c.shape[3])) for c in cache]
        last = torch.zeros_like(tokens, dtype=torch.bool)
        last[:, -1] = True
        cross = ((tokens != 0) | last).repeat_interleave(self.group, dim=1)[:, None, None, :]  # every beam reads all
        for i, block in enumerate(self.blocks):
            every = x if level == 0 else torch.cat([cache[i], x], dim=2)  # (N, B, level + 1, D)
            if level == 0:
                cache.append(every)
            else:
                cache[i] = every
            x = block.step(x, every, memory, cross)
        return F.log_softmax(self.heads[level](self.ln_f(x)[:, :, 0]), dim=-1)


class TIGERTask(NextItemTask):
    def loss(self, module: nn.Module, batch: SeqBatch, epoch: int) -> torch.Tensor:
        return module.loss(batch.inputs, batch.targets)


class TIGERPrefixTask(PrefixTask):
    loss = TIGERTask.loss


class TIGER(SequentialRecommender):
    name = "tiger"
    Config = TIGERConfig
    inference_keys = SequentialRecommender.inference_keys | {"beam_size"}

    semantic_ids_: SemanticIds
    trie_: CodeTrie

    def _fit(self, train: Interactions, options: FitOptions, **context: Any) -> None:
        # codes derived from the data are kept beside the checkpoints, so a resumed fit reuses them exactly
        kept = Path(options.checkpoint_dir) / "semantic_ids" if options.checkpoint_dir else None
        if kept is not None and options.resume and self.config.semantic_ids in DERIVED and kept.is_dir():
            self.semantic_ids_ = SemanticIds.load(kept)
        else:
            self.semantic_ids_ = semantic_ids_for_fit(self.config, train.num_items, context, options.seed,
                                                      train=train, options=options)
            if kept is not None and self.config.semantic_ids in DERIVED:
                self.semantic_ids_.save(kept)
        self.trie_ = CodeTrie(self.semantic_ids_.codes)
        super()._fit(train, options, **context)

    def _make_module(self, weights: dict[str, np.ndarray] | None) -> nn.Module:
        return TIGERModule(self.semantic_ids_.codes, self.semantic_ids_.sizes, self.config)

    def _task(self, sequences: Sequences):  # noqa: ANN202
        c = self.config
        task = TIGERTask if c.encoder == "causal" else TIGERPrefixTask
        return self._sized(task(sequences, c.max_len, c.batch_size, self.num_items_))

    # -- decoding -----------------------------------------------------------------------------------
    def decode_top(self, module: TIGERModule, tokens: np.ndarray, beam: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Beam-decode histories ``tokens (N, T)``: ``items (N, beam)``, ``scores (N, beam)`` and the
        first-level log-probabilities ``(N, K_0)`` (for ranking the items outside the beam)."""
        tok = torch.from_numpy(tokens)
        memory = module.encode(tok)
        first: list[torch.Tensor] = []

        cache: list[torch.Tensor] = []

        def step(prefix: torch.Tensor, level: int, parent: torch.Tensor | None) -> torch.Tensor:
            logp = module.step_cached(memory, tok, prefix, level, parent, cache)
            if level == 0:
                first.append(logp[:, 0])
            return logp

        items, scores = self.trie_.beam_search(step, len(tokens), beam or self.config.beam_size)
        return items.numpy(), scores.numpy(), first[0].numpy()

    def _score_block(self, module: nn.Module, tokens: np.ndarray) -> np.ndarray:
        items, scores, first = self.decode_top(module, tokens)
        block = first[:, self.semantic_ids_.codes[:, 0]] - 1e4  # (n, I): coarse rank outside the beam
        rows, cols = np.nonzero(items >= 0)
        block[rows, items[rows, cols]] = scores[rows, cols]
        return block.astype(np.float32, copy=False)

    # -- persistence ------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {**sid_state(self.semantic_ids_), **super()._state()}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.semantic_ids_ = sid_from_state(state)
        self.trie_ = CodeTrie(self.semantic_ids_.codes)
        super()._set_state(state)
