"""The ranking stage's model base: CTR models that score (user, item, context) rows with a click probability.

A :class:`Ranker` is fitted on a :class:`~recembed.ranking.datasets.CTRData` (its schema fitted on the training
part), trained by the shared :class:`~recembed.training.trainer.Trainer` on binary cross-entropy (the
:class:`CTRTask`), early-stopped on the validation part's ``valid_metric`` (AUC by default), and saved as
``model.json`` (name, config, fitted schema) + ``model.safetensors`` (the module's weights). Subclasses implement
``_module(schema) -> nn.Module`` whose ``forward(batch)`` returns logits ``(B,)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...config import build_config, check, config_to_dict, saved_values
from ...errors import ConfigError, DataError, NotFittedError
from ...io import atomic_write, read_json, write_json
from ...options import FitOptions
from ...ranking.metrics import ctr_metrics
from ...ranking.schema import OOV, Encoded, Frame, Schema
from ...training.device import module_device, to_device, to_numpy
from ...training.trainer import TrainConfig, Trainer, seed_everything
from ._tables import TableSet, TableSpec, embedding_tables, parse_field_dims

FORMAT_VERSION = 1
CTR_VALID_METRICS = ("auc", "gauc")


@dataclass(frozen=True)
class RankerConfig(TrainConfig):
    """Shared by the CTR rankers."""

    embedding_dim: int = 16
    """Width of every field's embedding (FuxiCTR's and BARS' default: 10-16)."""
    batch_size: int = 1024
    """Rows per step (``min_steps`` shrinks it on small data)."""
    min_steps: int = 50
    """An epoch takes at least this many steps (ml-100k-ctr: 80,000 rows -> 78 steps of 1,024)."""
    epochs: int = 50
    """Most epochs (early stopping on ``valid_metric`` normally ends the fit sooner)."""
    patience: int = 2
    """Validations without improvement before stopping (FuxiCTR's default: 2)."""
    valid_metric: str = "auc"
    """``auc`` or ``gauc`` on the validation part."""
    embedding_l2: float = 0.0
    """L2 penalty on the embeddings the batch looked up (FuxiCTR's ``embedding_regularizer``)."""
    net_dropout: float = 0.0
    """Dropout in the models' MLPs."""
    eval_batch_size: int = 16384
    """Rows scored at once when predicting."""
    embedding_table: str = "field"
    """How token fields get embeddings (every field, every ranker; see ``models/ranking/_tables.py``): ``field``
    (one table per vocabulary), ``hash:N`` (each vocabulary hashed into its own N rows; vocabularies of at most N
    indices keep their table) or ``unified:N[:k]`` (Unified Embedding: one N-row table shared by all vocabularies,
    each with its own hashes; an embedding is k chunks of embedding_dim / k, k = 1 by default)."""
    id_dropout: float = 0.0
    """Share of training rows whose ``id_dropout_fields`` are replaced by the OOV bucket, drawn anew every batch
    (DropoutNet, Volkovs et al. 2017): the model also learns to score an item from its other fields (content
    vectors, attributes, semantic IDs), which is all a cold item has. 0: off."""
    id_dropout_fields: str = "item_id"
    """Comma-separated categorical fields ``id_dropout`` masks."""
    field_dims: str = ""
    """Per-field embedding widths ``FIELD:WIDTH,...`` (e.g. ``genres:4,zip3:0``; empty: every field at
    embedding_dim). A width below embedding_dim gives that vocabulary a narrow table projected to embedding_dim
    (keyed by the table's owner: ``item_id``, not ``hist_items``); 0 drops the field from the model (its column is
    still read and ignored). With ``field`` or ``hash`` tables; see ``models/ranking/_tables.py``."""

    def _check_valid_metric(self) -> None:
        check(self.valid_metric in CTR_VALID_METRICS, "valid_metric",
              f"a CTR model validates on one of {CTR_VALID_METRICS}, got {self.valid_metric!r}")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.embedding_dim >= 1, "embedding_dim", f"must be >= 1, got {self.embedding_dim}")
        check(self.embedding_l2 >= 0, "embedding_l2", f"must be >= 0, got {self.embedding_l2}")
        check(0 <= self.net_dropout < 1, "net_dropout", f"must be in [0, 1), got {self.net_dropout}")
        check(0 <= self.id_dropout < 1, "id_dropout", f"must be in [0, 1), got {self.id_dropout}")
        check(self.eval_batch_size >= 1, "eval_batch_size", f"must be >= 1, got {self.eval_batch_size}")
        table = TableSpec.parse(self.embedding_table)
        check(self.embedding_dim % table.chunks == 0, "embedding_table",
              f"{table.chunks} chunks must divide embedding_dim={self.embedding_dim}")
        widths = parse_field_dims(self.field_dims)
        check(table.mode != "unified" or all(w == 0 or w >= self.embedding_dim for w in widths.values()),
              "field_dims", "per-field widths need 'field' or 'hash' tables, not 'unified' (one shared width)")


class CTRTask:
    """Binary cross-entropy over shuffled rows (plus the looked-up embeddings' L2 when set)."""

    def __init__(self, data: Encoded, batch_size: int, embedding_l2: float, id_dropout: float = 0.0,
                 id_fields: tuple[str, ...] = ()) -> None:
        self.data, self.batch_size, self.l2 = data, batch_size, embedding_l2
        self.labels = torch.from_numpy(data.labels)
        self.id_dropout, self.id_fields = id_dropout, id_fields

    def num_batches(self) -> int:
        return math.ceil(len(self.data) / self.batch_size)

    def batches(self, epoch: int, rng: np.random.Generator):  # noqa: ANN201
        order = rng.permutation(len(self.data))
        for s in range(0, len(order), self.batch_size):
            rows = order[s : s + self.batch_size]
            inputs = self.data.batch(rows)
            if self.id_dropout > 0:
                masked = torch.from_numpy(rng.random(len(rows)) < self.id_dropout)
                for name in self.id_fields:
                    inputs[name] = inputs[name].masked_fill(masked, OOV)
            yield inputs, self.labels[rows]

    def loss(self, module: nn.Module, batch: Any, epoch: int) -> torch.Tensor:
        inputs, labels = batch
        logits = module(inputs)
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        if self.l2 > 0:
            loss = loss + self.l2 * module.embedding_penalty(inputs)
        return loss


class Ranker:
    """Base of the CTR models (see the module docstring)."""

    name: ClassVar[str] = "ranker"
    Config: ClassVar[type] = RankerConfig
    kind: ClassVar[str] = "ranker"

    schema_: Schema
    module_: nn.Module

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        if config is not None and not isinstance(config, self.Config):
            raise ConfigError(f"{self.name}: expected a {self.Config.__name__}, got {type(config).__name__}")
        base = config_to_dict(config) if config is not None else {}
        self.config = build_config(self.Config, {**base, **overrides})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"

    # -- what subclasses provide ---------------------------------------------------------------------------------
    def _module(self, schema: Schema) -> nn.Module:
        raise NotImplementedError

    def _prepare(self, module: nn.Module, train: Encoded) -> None:
        """Fill what the module takes from the encoded training rows before training (QIN's item -> content
        vector table, kept as buffers so it is saved with the weights); nothing by default."""

    def _build_module(self, schema: Schema) -> nn.Module:
        """``_module`` with every FieldEmbedding inside it built as ``embedding_table`` and ``field_dims`` say
        (on :meth:`model_schema`: the fields ``field_dims`` drops are left out)."""
        with embedding_tables(self.config.embedding_table, self.config.field_dims):
            return self._module(self.model_schema(schema))

    def model_schema(self, schema: Schema) -> Schema:
        """``schema`` without the fields ``field_dims`` gives width 0 (the same fitted vocabularies); ``schema``
        itself when none is dropped. Names ``field_dims`` gives that are not fields are refused here (they
        depend on the data)."""
        widths = parse_field_dims(self.config.field_dims)
        names = schema.names()
        unknown = sorted(set(widths) - set(names))
        if unknown:
            raise ConfigError(f"field_dims: no field {', '.join(map(repr, unknown))} in the data; fields: {names}")
        for name, w in widths.items():
            owner = schema.table_of(name)
            if w > 0 and owner != name:
                raise ConfigError(f"field_dims: {name!r} shares {owner!r}'s table; give the width to {owner!r}")
        dropped = {n for n, w in widths.items() if w == 0}
        if not dropped:
            return schema
        kept = [f for f in schema.fields if f.name not in dropped]
        if not kept:
            raise ConfigError("field_dims: every field is dropped (width 0); keep at least one")
        for f in kept:
            if f.vocab_from in dropped:
                raise ConfigError(f"field_dims: {f.vocab_from}:0 drops the table {f.name!r} shares; drop "
                                  f"{f.name!r} too ({f.name}:0) or keep {f.vocab_from!r}")
        return Schema(kept, schema.vocab, schema.stats, schema.dims, schema.lengths)

    # -- fitting ------------------------------------------------------------------------------------------------
    def fit(self, train: Frame, *, schema: Schema, valid: Frame | None = None,
            options: FitOptions | None = None) -> Ranker:
        """Learn from ``train`` rows encoded by ``schema`` (fitted on ``train``), early-stopping on ``valid``."""
        options = options or FitOptions()
        if len(train) == 0:
            raise DataError("cannot fit on an empty training part")
        if options.threads:
            torch.set_num_threads(options.threads)
        self.schema_ = schema
        enc = schema.encode(train)
        self.auto_resolved_: dict[str, Any] = {}
        batch = self.config.batch_for(len(enc))
        if batch != self.config.batch_size:
            self.auto_resolved_["batch_size"] = batch
        seed_everything(options.seed)
        module = self._build_module(schema)
        self._prepare(module, enc)
        validate = None
        if valid is not None and len(valid):
            venc = schema.encode(valid)

            def validate() -> dict[str, float]:
                m = ctr_metrics(venc.labels, self._predict(module, venc), venc.users)
                return {"auc": m["auc"], "gauc": m["gauc"], "logloss": m["logloss"]}

        id_fields = tuple(n.strip() for n in self.config.id_dropout_fields.split(",") if n.strip())
        if self.config.id_dropout > 0:
            for name in id_fields:
                if name not in schema.names() or schema.field(name).kind != "categorical":
                    raise ConfigError(f"id_dropout_fields: {name!r} is not a categorical field of this data "
                                      f"(categorical fields: {schema.names('categorical')})")
        task = CTRTask(enc, batch, self.config.embedding_l2, self.config.id_dropout, id_fields)
        self.train_result_ = Trainer(self.config, options).fit(module, task, validate)
        self.history_ = self.train_result_.history
        self.module_ = module.eval()
        return self

    def fit_stream(self, data: Any, *, schema: Schema, options: FitOptions | None = None) -> Ranker:
        """:meth:`fit` on a :class:`~recembed.ranking.ctr_stream.StreamedCTR` (a Parquet file larger than memory):
        the :class:`~recembed.ranking.ctr_stream.StreamTask` reads the training part in shuffled buffers, the
        validation part is scored batch by batch. ``stream_stats_``: the most rows held encoded / read at once."""
        from ...ranking.ctr_stream import StreamTask, score_stream

        if type(self)._prepare is not Ranker._prepare:
            raise ConfigError(f"{self.name} reads its whole encoded training part before training; it cannot "
                              "stream (stream=false, or another ranker)")
        options = options or FitOptions()
        rows = data.sizes()["train"]
        if rows == 0:
            raise DataError("cannot fit on an empty training part")
        if options.threads:
            torch.set_num_threads(options.threads)
        self.schema_ = schema
        self.auto_resolved_ = {}
        batch = self.config.batch_for(rows)
        if batch != self.config.batch_size:
            self.auto_resolved_["batch_size"] = batch
        seed_everything(options.seed)
        module = self._build_module(schema)
        validate = None
        if data.sizes()["valid"]:
            def validate() -> dict[str, float]:
                m = ctr_metrics(*score_stream(self, module, data, "valid"))
                return {"auc": m["auc"], "gauc": m["gauc"], "logloss": m["logloss"]}

        task = StreamTask(data, schema, batch, data.buffer_rows, self.config.embedding_l2)
        self.train_result_ = Trainer(self.config, options).fit(module, task, validate)
        self.history_ = self.train_result_.history
        self.module_ = module.eval()
        self.stream_stats_ = {"buffer_rows": task.buffer_rows, "max_buffered_rows": task.max_buffered,
                              "max_read_rows": data.max_frame_rows}
        return self

    # -- scoring ------------------------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "module_"):
            raise NotFittedError(f"{self.name} is not fitted: call fit() first")

    def _predict(self, module: nn.Module, enc: Encoded) -> np.ndarray:
        out = np.empty(len(enc), dtype=np.float32)
        device = module_device(module)
        module.eval()
        with torch.no_grad():
            for s in range(0, len(enc), self.config.eval_batch_size):
                rows = np.arange(s, min(s + self.config.eval_batch_size, len(enc)))
                out[rows] = to_numpy(torch.sigmoid(module(to_device(enc.batch(rows), device))))
        return out

    def predict(self, frame: Frame | Encoded) -> np.ndarray:
        """Click probabilities ``(n,)`` of raw rows (encoded with the fitted schema) or already-encoded rows."""
        self._check_fitted()
        enc = frame if isinstance(frame, Encoded) else self.schema_.encode(frame)
        return self._predict(self.module_, enc)

    def predict_arrays(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """Click probabilities ``(n,)`` of encoded rows given as field name -> array, in one forward pass (the
        serving path: a request's few hundred candidates; no gradient bookkeeping)."""
        self._check_fitted()
        with torch.inference_mode():
            batch = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
            return torch.sigmoid(self.module_(batch)).numpy()

    def evaluate(self, frame: Frame) -> dict[str, Any]:
        """AUC, logloss, GAUC, ECE of ``frame``'s rows."""
        enc = self.schema_.encode(frame)
        return ctr_metrics(enc.labels, self.predict(enc), enc.users)

    def num_parameters(self) -> int:
        self._check_fitted()
        return int(sum(p.numel() for p in self.module_.parameters()))

    def num_embedding_parameters(self) -> int:
        """Parameters in the token tables (every FieldEmbedding's, the first-order term's included)."""
        self._check_fitted()
        seen = {id(p): p for m in self.module_.modules() if isinstance(m, TableSet) for p in m.parameters()}
        return int(sum(p.numel() for p in seen.values()))

    # -- persistence --------------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        from safetensors.torch import save_file

        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.module_.state_dict().items()}
        atomic_write(directory / "model.safetensors", lambda p: save_file(state, str(p)))
        write_json(directory / "model.json", {"model": self.name, "kind": self.kind, "format": FORMAT_VERSION,
                                              "config": config_to_dict(self.config),
                                              "schema": self.schema_.to_dict()})
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Ranker:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from ..registry import model_class

        directory = Path(directory)
        meta = read_json(directory / "model.json")
        if meta.get("kind") != "ranker" or meta.get("format") != FORMAT_VERSION:
            raise DataError(f"not a saved ranker (kind {meta.get('kind')!r}, format {meta.get('format')!r})",
                            path=directory / "model.json")
        target = model_class(meta["model"]) if cls is Ranker else cls
        if target.name != meta["model"]:
            raise DataError(f"holds a {meta['model']!r} model, not {target.name!r}", path=directory / "model.json")
        model = target(build_config(target.Config, saved_values(target.Config, meta["config"])))
        model.schema_ = Schema.from_dict(meta["schema"])
        module = model._build_module(model.schema_)
        try:
            module.load_state_dict(load_file(str(directory / "model.safetensors")))
        except (SafetensorError, OSError, RuntimeError) as exc:
            raise DataError(f"unreadable weights ({exc})", path=directory / "model.safetensors") from None
        model.module_ = module.eval()
        return model
