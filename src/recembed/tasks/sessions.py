"""[Tasks] Session-based recommendation: anonymous sessions, no user ids (issue #25, item 1).

A :class:`SessionTask` holds the training sessions (item indices in click order) and the test samples
(prefix, next item). For ``diginetica-session`` (SR-GNN / GCE-GNN preprocessing) the test prefixes are the
released ones (``test_prefix_target.tsv``, in the dataset's extras); training sessions are used whole -- a model
that trains on "all prefixes" (SR-GNN's augmentation: ``(s[:k], s[k])`` for ``k = 1 .. len(s) - 1``) gets the
same samples from next-item targets at every position of a session.

Validation never touches the test prefixes: :meth:`SessionTask.validation` cuts the last ``share`` of the
training sessions (file order; the SR-GNN preprocessing writes training sessions sorted by date, so these are
the most recent) and augments them into all their prefixes, the remaining sessions being the training part.

Metrics: :mod:`recembed.evaluation.sessions` (P@20 = HR@20 and MRR@20 over all items, nothing excluded).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data.dataset import Dataset
from ..data.interactions import Interactions
from ..data.vocab import Vocabulary
from ..errors import ConfigError, DataError
from ..training.sequences import Sequences

TEST_KEY = "test_prefix_target"


def all_prefixes(sessions: Sequences, min_prefix: int = 1) -> tuple[list[np.ndarray], np.ndarray]:
    """SR-GNN's augmentation: every ``(s[:k], s[k])`` for ``k = min_prefix .. len(s) - 1`` of every session."""
    prefixes: list[np.ndarray] = []
    targets: list[int] = []
    for u in range(sessions.num_users):  # data preparation only (not a scoring hot path)
        s = sessions.items[sessions.indptr[u] : sessions.indptr[u + 1]]
        for k in range(min_prefix, len(s)):
            prefixes.append(s[:k])
            targets.append(int(s[k]))
    return prefixes, np.asarray(targets, dtype=np.int64)


def session_interactions(sessions: Sequences, num_items: int) -> Interactions:
    """Sessions as :class:`Interactions` (one "user" per session, timestamp = position in the session)."""
    lengths = sessions.lengths()
    users = np.repeat(np.arange(sessions.num_users), lengths)
    pos = np.arange(len(sessions.items)) - np.repeat(sessions.indptr[:-1], lengths)
    return Interactions(users, sessions.items, sessions.num_users, num_items, timestamp=pos.astype(np.float64))


@dataclass
class SessionTask:
    """Training sessions and test samples over one item vocabulary."""

    name: str
    items: Vocabulary
    train: Sequences
    test_prefixes: list[np.ndarray]
    test_targets: np.ndarray
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def num_items(self) -> int:
        return len(self.items)

    @classmethod
    def from_dataset(cls, dataset: Dataset) -> SessionTask:
        """Training sessions = the dataset's "users" (their histories in order); test samples from its extras."""
        if TEST_KEY not in dataset.extras:
            raise DataError(f"{dataset.name} has no session test prefixes (extras[{TEST_KEY!r}]); the session task "
                            "needs a session dataset such as diginetica-session")
        train = Sequences.from_interactions(dataset.interactions)
        cols = dataset.extras[TEST_KEY]
        prefixes_raw = [str(p).split() for p in cols["prefix"]]
        lengths = np.fromiter((len(p) for p in prefixes_raw), dtype=np.int64, count=len(prefixes_raw))
        if len(lengths) and lengths.min() == 0:
            raise DataError(f"test prefix {int(np.argmin(lengths)) + 1} is empty", field="prefix")
        flat = dataset.items.index(np.array([i for p in prefixes_raw for i in p], dtype=object), unknown="ignore")
        targets = dataset.items.index(np.asarray(cols["target"], dtype=object), unknown="ignore")
        ends = np.cumsum(lengths)
        prefixes = [flat[e - n : e] for e, n in zip(ends, lengths)]
        unknown_prefix_items = int((flat < 0).sum())
        prefixes = [p[p >= 0] for p in prefixes] if unknown_prefix_items else prefixes
        notes = {"unknown_prefix_items_dropped": unknown_prefix_items,
                 "unknown_targets_counted_as_misses": int((targets < 0).sum())}
        return cls(dataset.name, dataset.items, train, prefixes, targets, notes)

    def validation(self, share: float = 0.1) -> SessionTask:
        """Train on the first ``1 - share`` of the training sessions; test on all prefixes of the rest."""
        if not 0 < share < 1:
            raise ConfigError(f"valid_share: must be in (0, 1), got {share}")
        n = self.train.num_users
        cut = n - max(1, int(round(share * n)))
        head = Sequences(self.train.indptr[: cut + 1].copy(), self.train.items[: self.train.indptr[cut]].copy())
        tail = Sequences(self.train.indptr[cut:] - self.train.indptr[cut], self.train.items[self.train.indptr[cut]:])
        prefixes, targets = all_prefixes(tail)
        return SessionTask(f"{self.name} (validation: last {share:.0%} of training sessions)", self.items, head,
                           prefixes, targets, {"train_sessions": cut, "valid_sessions": n - cut})

    def held_out_last(self, share: float = 0.1) -> tuple[Interactions, Interactions]:
        """For models that select epochs on validation (SASRec, GRU4Rec): ``(train, valid)`` interactions where the
        last ``share`` of the training sessions lose their last click to ``valid`` (prefix -> next item)."""
        n = self.train.num_users
        cut = n - max(1, int(round(share * n)))
        lengths = self.train.lengths()
        users = np.repeat(np.arange(n), lengths)
        pos = np.arange(len(self.train.items)) - np.repeat(self.train.indptr[:-1], lengths)
        last = (pos == np.repeat(lengths - 1, lengths)) & (users >= cut) & (np.repeat(lengths, lengths) >= 2)
        ts = pos.astype(np.float64)
        build = lambda m: Interactions(users[m], self.train.items[m], n, self.num_items, timestamp=ts[m])  # noqa: E731
        return build(~last), build(last)

    def summary(self) -> dict[str, Any]:
        return {"train_sessions": self.train.num_users, "train_clicks": int(len(self.train.items)),
                "test_prefixes": len(self.test_targets), "items": self.num_items, **self.notes}


PROTOCOL = ("session next-item: each test prefix scores all items, nothing excluded (items already in the prefix "
            "compete, as in SR-GNN / GCE-GNN); p@K = hit@K = share of prefixes whose next item is in the top K; "
            "mrr@K = mean 1/rank inside the top K, else 0; ties to the lower item index")


def _can_score_histories(model: Any) -> bool:
    from ..models.base import Recommender

    return type(model).score_histories is not Recommender.score_histories


def fit_session_run(model_name: str, dataset: Dataset, *, params: dict[str, Any] | None = None,
                    options: Any = None, out_dir: str | None = None, ks: tuple[int, ...] = (10, 20),
                    valid_share: float = 0.1, data_spec: dict[str, Any] | None = None,
                    batch_size: int = 1024) -> dict[str, Any]:
    """Fit ``model_name`` on the session task of ``dataset``, evaluate on its test prefixes, write ``out_dir``.

    Session models (SKNN, V-SKNN, STAN) fit on every training session. Any other model that can score a history
    (SASRec, GRU4Rec, ...) fits on the training sessions with the last click of the last ``valid_share`` of them
    held out as validation (epoch selection, early stopping), then scores the test prefixes from their clicks
    alone (:meth:`score_histories`). Returns the metrics written to ``metrics.json``.
    """
    import time

    from ..config import config_to_dict
    from ..data.splits import Split
    from ..evaluation.sessions import evaluate_sessions
    from ..models.registry import is_session_model, model_class
    from ..options import FitOptions
    from ..runs import _training_summary, peak_rss_mb, write_run

    options = options or FitOptions()
    model = model_class(model_name)(**(params or {}))
    if not _can_score_histories(model):
        raise ConfigError(f"{model_name} cannot score an anonymous session (it keeps per-user parameters); session "
                          "models: sknn, vsknn, stan, or a sequential model (sasrec, gru4rec, bert4rec)")
    task = SessionTask.from_dataset(dataset)
    if is_session_model(model_name):
        train, valid = session_interactions(task.train, task.num_items), None
    else:
        train, valid = task.held_out_last(valid_share)
    t0 = time.perf_counter()
    model.fit(train, options=options, valid=valid, item_table=dataset.item_table, items=dataset.items)
    fit_seconds = time.perf_counter() - t0
    result = evaluate_sessions(model.score_histories, task.test_prefixes, task.test_targets, ks=ks,
                               batch_size=batch_size)
    metrics: dict[str, Any] = {
        "model": model_name, "dataset": dataset.name, "task": "session", "protocol": PROTOCOL,
        "split": "session:given-test-prefixes", "test": result.summary,
        "valid": {}, "fit_seconds": round(fit_seconds, 3), "eval_seconds": round(result.seconds, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1), "session_task": task.summary(),
        "training_data": ("every training session" if valid is None else
                          f"training sessions, the last click of the last {valid_share:.0%} held out for validation"),
    }
    training = _training_summary(model, "valid")
    if training is not None:
        metrics["training"] = training
    if out_dir is not None:
        empty = Interactions.empty(train.num_users, task.num_items)
        split = Split(train, valid if valid is not None else empty, empty, users=dataset.users, items=dataset.items,
                      spec="session")
        metrics["split_hash"] = split.content_hash()
        config = {"model": model_name, "params": config_to_dict(model.config), "seed": options.seed,
                  "data": data_spec or {"name": dataset.name}, "split": "session", "ks": list(ks), "task": "session"}
        from pathlib import Path

        write_run(Path(out_dir), model, dataset.name, dataset.item_titles(), split, metrics, None, config=config)
    return metrics
