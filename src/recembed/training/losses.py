"""Losses: BPR, sampled softmax / InfoNCE, DirectAU alignment + uniformity, Mult-VAE ELBO.

Each is a pure function of score / embedding tensors; tasks decide what to feed them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """Bayesian personalised ranking (Rendle et al., UAI 2009): ``-mean log sigmoid(s+ - s-)``.

    ``pos_scores`` is ``(B,)``; ``neg_scores`` is ``(B,)`` or ``(B, n)`` (averaged over negatives).
    """
    if neg_scores.dim() == 2:
        pos_scores = pos_scores.unsqueeze(1)
    return -F.logsigmoid(pos_scores - neg_scores).mean()


def sampled_softmax_loss(
    user_emb: torch.Tensor,
    pos_item_emb: torch.Tensor,
    neg_item_emb: torch.Tensor | None = None,
    *,
    temperature: float = 1.0,
    in_batch: bool = True,
    pos_log_q: torch.Tensor | None = None,
    neg_log_q: torch.Tensor | None = None,
    pos_items: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax cross-entropy of each positive against negatives (InfoNCE when normalised inputs).

    Parameters
    ----------
    user_emb, pos_item_emb : (B, D)
    neg_item_emb : (N, D) or None
        Extra negatives shared by the batch (e.g. uniformly sampled).
    in_batch : bool
        Use the other rows' positives as negatives.
    pos_log_q, neg_log_q : (B,), (N,) or None
        Log sampling probabilities for the logQ correction (Yi et al., RecSys 2019): ``logit -= log q``.
    pos_items : (B,) or None
        Item ids of the positives: in-batch duplicates of a row's own positive are masked out.
    """
    # 1/temperature is applied to the (B, D) user side, and the logQ / duplicate masks in place on
    # the fresh (B, B) block: on a 4096-row batch the elementwise passes over (B, B) cost more than the matmul.
    user_emb = user_emb * (1.0 / temperature)
    logits = []
    if in_batch:
        lb = user_emb @ pos_item_emb.T  # (B, B), diagonal = positives
        if pos_log_q is not None:
            lb.sub_(pos_log_q.unsqueeze(0))
        if pos_items is not None:
            same = pos_items.unsqueeze(0) == pos_items.unsqueeze(1)
            same.fill_diagonal_(False)
            lb.masked_fill_(same, float("-inf"))
        logits.append(lb)
    else:
        lp = (user_emb * pos_item_emb).sum(-1, keepdim=True)
        if pos_log_q is not None:
            lp = lp - pos_log_q.unsqueeze(1)
        logits.append(lp)
    if neg_item_emb is not None:
        ln = user_emb @ neg_item_emb.T
        if neg_log_q is not None:
            ln.sub_(neg_log_q.unsqueeze(0))
        logits.append(ln)
    all_logits = torch.cat(logits, dim=1) if len(logits) > 1 else logits[0]
    target = torch.arange(len(user_emb)) if in_batch else torch.zeros(len(user_emb), dtype=torch.long)
    return F.cross_entropy(all_logits, target)


def alignment_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """DirectAU alignment (Wang et al., KDD 2022): mean ``||x - y||^2`` of normalised positive pairs."""
    x, y = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
    return (x - y).norm(p=2, dim=1).pow(2).mean()


def uniformity_loss(x: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """DirectAU uniformity: ``log mean exp(-t ||x_i - x_j||^2)`` over distinct pairs of normalised rows."""
    x = F.normalize(x, dim=-1)
    return torch.pdist(x, p=2).pow(2).mul(-t).exp().mean().log()


def multvae_loss(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                 beta: float) -> torch.Tensor:
    """Mult-VAE negative ELBO (Liang et al., WWW 2018): multinomial log-likelihood + beta * KL.

    ``x`` is the ``(B, I)`` batch of rows, dense or a sparse COO tensor (then only its non-zeros are read)."""
    log_softmax = F.log_softmax(logits, dim=1)
    if x.is_sparse:
        x = x.coalesce()
        rows, cols = x.indices()
        nll = -(log_softmax[rows, cols] * x.values()).sum() / logits.shape[0]
    else:
        nll = -(log_softmax * x).sum(dim=1).mean()
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1).mean()
    return nll + beta * kl


def info_nce(view1: torch.Tensor, view2: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE between two views of the same rows (SimGCL / XSimGCL): row i of ``view1`` should match
    row i of ``view2`` against every other row. Inputs ``(N, D)``, normalised here."""
    v1, v2 = F.normalize(view1, dim=1), F.normalize(view2, dim=1)
    logits = (v1 * (1.0 / temperature)) @ v2.T  # (N, N); scaling the (N, D) side: 1/5 of a step's time
    # went to dividing the (N, N) logits and its backward
    return F.cross_entropy(logits, torch.arange(len(v1)))
