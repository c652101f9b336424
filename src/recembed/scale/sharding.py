"""Sharded embedding tables with TorchRec: ``fit MODEL ... --distributed --shard table|row[:MB]``.

Design (TorchRec's, https://pytorch.org/torchrec/: ``EmbeddingBagCollection`` under ``DistributedModelParallel``,
an ``EmbeddingShardingPlanner`` constrained by ``ParameterConstraints``): the model's token tables become one
``EmbeddingBagCollection`` whose tables the planner places table-wise (each table whole on one rank) or row-wise
(each table's rows split across all ranks); everything else in the model is data-parallel (DMP wraps it in
DDP). A batch's lookups go to the ranks that own the rows (an all-to-all of ids and of pooled vectors), so no
rank ever holds a whole row-wise table: that is what lets a catalog whose tables exceed one device's memory
train at all. The embedding optimizer runs inside the backward (TorchRec's fused ``apply_optimizer_in_backward``,
FBGEMM's table-batched kernels); the dense part keeps the trainer's optimizer.

How it plugs in (``training/trainer.py``): where plain ``--distributed`` wraps ``TaskStep(module, task)`` in DDP,
``--shard`` builds a *sharded twin* of the module instead: a deep copy with its tables replaced by the collection
(``_ctr.py`` for the rankers, ``_mf.py`` for MF), whose initial rows are copied from the model's own. The twin
trains; before each validation and at the end, :meth:`ShardedTraining.gather` sends every shard to rank 0 and
writes the rows and the dense weights back into the original module, so validation, model selection, saving and
export are the unsharded code, unchanged. Rank 0's host memory holds the full tables at that point (to save
them); the other ranks never do.

Deviations and limits (docs/scale.md): (1) the fused optimizers are FBGEMM's: ``optimizer=sgd`` is exact SGD
(the same update as torch.optim.SGD on the rows a batch touched, untouched rows get a zero gradient either way);
FBGEMM's CPU kernels have no Adam (SGD / Adagrad only), so ``optimizer=adam`` is refused on the CPU; on CUDA it
is FBGEMM's Adam, which updates only the rows a batch looked up (torch's dense Adam moves every row with its
momentum): not the same trajectory (untested here: no GPU). (2) FBGEMM needs table widths divisible
by 4: a narrower table (the rankers' first-order term, width 1) is padded with zero columns that get a zero
gradient and are cut off on gather. (3) Row-wise sharding is offered by TorchRec's sharder for CUDA only; on the
CPU it is enabled by a subclass (its CPU kernels work; ``tests/test_torchrec.py``). Row-wise needs the same batch
on every rank, so each rank pads its slice of a global batch with empty bags to the largest slice. (4) Not with
``grad_clip``, ``lr_schedule=cosine``, ``weight_decay``, ``--precision bf16`` or ``--checkpoint-dir`` (refused
with exit code 2).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..training.distributed import DistContext, TaskStep
from .spec import parse_shard

PINS = "fbgemm-gpu-cpu==1.8.0 torchrec==1.8.0 (pip install --no-deps; `make install-torchrec`)"


@dataclass
class Table:
    """One sharded table: its collection name, the original module's weight it mirrors, widths, rows."""

    name: str
    target: nn.Parameter
    dim: int
    padded: int
    rows: int


def padded_width(dim: int) -> int:
    """FBGEMM's table-batched kernels need widths divisible by 4."""
    return -(-dim // 4) * 4


def import_torchrec() -> Any:
    try:
        import torchrec  # noqa: F401
        from torchrec.distributed import DistributedModelParallel  # noqa: F401  (loads fbgemm's operators)
    except Exception as exc:  # ImportError, or fbgemm's operators failing to load against this torch
        raise ConfigError(f"--shard: TorchRec is not usable here ({type(exc).__name__}: {str(exc).splitlines()[0]}"
                          f"); install the extra (pip install 'recembed[torchrec]') and {PINS}, with torch {torch.__version__}"
                          ) from None
    import torchrec

    return torchrec


def check_config(cfg: Any, opts: Any, device_type: str = "cpu") -> None:
    """What the sharded path does not do, refused before anything is built (a ConfigError: exit code 2)."""
    if getattr(cfg, "optimizer", "sgd") == "adam" and device_type != "cuda":
        raise ConfigError("--shard: FBGEMM's CPU kernels have no Adam for the tables (SGD and Adagrad only): set "
                          "optimizer=sgd (--set optimizer=sgd; the exact update, tests/test_torchrec.py), or train "
                          "on CUDA, where the tables use FBGEMM's row-sparse Adam")
    refused = [(getattr(cfg, "grad_clip", 0) > 0, "grad_clip", "the fused embedding optimizer is not clipped"),
               (getattr(cfg, "lr_schedule", "constant") != "constant", "lr_schedule", "the fused step size is fixed"),
               (getattr(cfg, "weight_decay", 0) > 0, "weight_decay", "the fused optimizer decays touched rows only"),
               (opts.precision != "fp32", "--precision", "the tables train in float32"),
               (bool(opts.checkpoint_dir), "--checkpoint-dir", "sharded optimizer state is not checkpointed")]
    for bad, key, why in refused:
        if bad:
            raise ConfigError(f"--shard: not with {key} ({why}); drop one of them")


class ShardedStep(TaskStep):
    """The step DMP wraps: a rank with no rows in a short batch still takes part in the lookups' all-to-all."""

    def forward(self, batch: Any, epoch: int, weight: float = 1.0) -> torch.Tensor:
        if weight == 0.0:
            return self.module.idle(batch)
        loss = self.task.loss(self.module, batch, epoch)
        return loss * weight if weight != 1.0 else loss


def max_over_ranks(value: int, device: torch.device) -> int:
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.int64, device=device if device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def _convert(module: nn.Module, task: Any) -> tuple[nn.Module, Any, list[Table]]:
    """The sharded twin of ``module`` (its ``ebc`` on the meta device), the task it trains with, the tables."""
    from ..models.ranking._layers import FieldEmbedding

    if any(isinstance(m, FieldEmbedding) for m in module.modules()):
        from ._ctr import convert_ctr

        return convert_ctr(module, task)
    from ..models.cf.bpr import MFModule

    if isinstance(module, MFModule):
        from ._mf import convert_mf

        return convert_mf(module, task)
    raise ConfigError(f"--shard: {type(module).__name__} has no tables to shard; sharding covers the CTR rankers "
                      "with pooled fields (deepfm, fm, lr, dcnv2, ...) and MF-BPR (bpr)")


class ShardedTraining:
    """The sharded twin of ``step.module`` under DMP: ``runner`` (what the trainer calls), the dense parameters
    (for the trainer's optimizer), and :meth:`gather` (shards -> rank 0's original module)."""

    def __init__(self, step: TaskStep, ctx: DistContext | None, spec: str, cfg: Any, opts: Any) -> None:
        shard = parse_shard(spec)
        if ctx is None:
            raise ConfigError("--shard: needs --distributed under torchrun (torchrun --nproc_per_node N -m recembed "
                              "fit MODEL ... --distributed --shard row)")
        check_config(cfg, opts, ctx.device.type)
        import_torchrec()
        import torch.distributed as dist
        from torchrec.distributed import DistributedModelParallel
        from torchrec.distributed.model_parallel import DefaultDataParallelWrapper
        from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
        from torchrec.distributed.types import ShardingType
        from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward

        self.ctx, self.spec, self.plain = ctx, shard, step.module
        root, task, self.tables = _convert(step.module, step.task)
        optim = torch.optim.SGD if cfg.optimizer == "sgd" else torch.optim.Adam
        apply_optimizer_in_backward(optim, root.ebc.parameters(), {"lr": cfg.learning_rate})
        kind = ShardingType.ROW_WISE.value if shard.kind == "row" else ShardingType.TABLE_WISE.value
        constraints = {t.name: ParameterConstraints(sharding_types=[kind], compute_kernels=["fused"])
                       for t in self.tables}
        cap = None if shard.memory_mb is None else int(shard.memory_mb * 2**20)
        device_type = ctx.device.type
        sharders = [_sharder()]
        wrapped = ShardedStep(root, task)
        # rank 0 plans and sends every rank the plan or its failure (so that all of them stop with the same error)
        outcome: list[Any] = [None]
        if ctx.rank == 0:
            quiet = logging.getLogger("torchrec.distributed.planner")
            level, quiet.level = quiet.level, logging.ERROR  # its advice to build the topology from detected hardware
            try:
                topology = Topology(world_size=ctx.world, compute_device=device_type,
                                    **({"hbm_cap": cap} if device_type == "cuda" else {"ddr_cap": cap} if cap else {}))
                outcome[0] = EmbeddingShardingPlanner(topology=topology, constraints=constraints).plan(wrapped, sharders)
            except Exception as exc:  # PlannerError: the tables do not fit the ranks' memory under this plan
                outcome[0] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
                failure = exc
            finally:
                quiet.level = level
        dist.broadcast_object_list(outcome, src=0)
        plan = outcome[0]
        if isinstance(plan, str) and not plan.startswith("PlannerError"):  # a bug, not a misfit: rank 0 shows it
            if ctx.rank == 0:
                raise failure
            raise RuntimeError(f"--shard: rank 0 failed to plan ({plan})")
        if isinstance(plan, str):
            total = sum(t.rows * t.padded * 4 for t in self.tables)
            raise ConfigError(f"--shard {spec}: no {shard.kind}-wise plan fits {ctx.world} ranks"
                              + (f" of {shard.memory_mb:g} MiB each" if cap else "")
                              + f" for {total / 2**20:.1f} MiB of tables (and the planner's reserve); "
                              f"{'try row-wise (--shard row), ' if shard.kind == 'table' else ''}more ranks or a "
                              f"larger cap ({plan})")
        self.plan = plan
        self.dmp = DistributedModelParallel(
            wrapped, device=ctx.device, plan=plan, sharders=sharders,
            data_parallel_wrapper=DefaultDataParallelWrapper(static_graph=False, find_unused_parameters=True))
        self.root, self.runner = root, self.dmp
        root.train()
        self._keys = self._table_keys()
        self._load()
        self.local_bytes, self.total_bytes = self._bytes()
        print(f"--shard {spec}: rank {ctx.rank} of {ctx.world} holds {self.local_bytes:,} of {self.total_bytes:,} "
              f"table bytes ({100 * self.local_bytes / max(self.total_bytes, 1):.1f}%) in {len(self.tables)} "
              f"{shard.kind}-wise tables", file=sys.stderr, flush=True)

    # -- parameters -------------------------------------------------------------------------------------------
    def dense_parameters(self) -> list[nn.Parameter]:
        """The parameters the trainer's optimizer steps (the tables' optimizer is fused into the backward)."""
        from torchrec.optim.optimizers import in_backward_optimizer_filter

        dense = [p for _, p in in_backward_optimizer_filter(self.dmp.named_parameters())]
        # a model that is all tables (MF): an empty placeholder, since torch's optimizers refuse no parameters
        return dense or [nn.Parameter(torch.zeros(0))]

    def _table_keys(self) -> dict[str, str]:
        keys = {}
        names = list(self.dmp.state_dict().keys())
        for t in self.tables:
            found = [k for k in names if k.endswith(f"ebc.embedding_bags.{t.name}.weight")]
            if len(found) != 1:
                raise RuntimeError(f"--shard: table {t.name!r} not found once in the sharded state ({found})")
            keys[t.name] = found[0]
        return keys

    def _shards(self) -> dict[str, Any]:
        state = self.dmp.state_dict()
        return {t.name: state[self._keys[t.name]] for t in self.tables}

    def _load(self) -> None:
        """Every rank's local shards <- the original module's rows (zero in the padding columns)."""
        shards = self._shards()
        with torch.no_grad():
            for t in self.tables:
                for s in shards[t.name].local_shards():
                    (r0, c0), (nr, nc) = s.metadata.shard_offsets, s.metadata.shard_sizes
                    piece = torch.zeros(nr, nc)
                    cols = max(0, min(t.dim, c0 + nc) - c0)
                    if cols:
                        piece[:, :cols] = t.target.detach()[r0 : r0 + nr, c0 : c0 + cols].float().cpu()
                    s.tensor.copy_(piece.to(s.tensor.device))

    def _bytes(self) -> tuple[int, int]:
        shards = self._shards()
        local = sum(s.tensor.numel() * s.tensor.element_size() for t in self.tables
                    for s in shards[t.name].local_shards())
        return int(local), int(sum(t.rows * t.padded * 4 for t in self.tables))

    # -- shards -> rank 0 ----------------------------------------------------------------------------------------
    def gather(self) -> None:
        """Every rank calls this: rank 0 receives every shard and writes the rows (and the dense weights, the same
        on every rank) into the original module; the other ranks send theirs and keep nothing new."""
        import torch.distributed as dist

        rank, shards = self.ctx.rank, self._shards()
        with torch.no_grad():
            for t in self.tables:
                st = shards[t.name]
                local = {tuple(s.metadata.shard_offsets): s.tensor for s in st.local_shards()}
                full = torch.zeros(t.rows, t.padded) if rank == 0 else None
                for md in st.metadata().shards_metadata:
                    owner, (r0, c0), (nr, nc) = md.placement.rank(), md.shard_offsets, md.shard_sizes
                    if rank == 0:
                        if owner == 0:
                            piece = local[(r0, c0)]
                        else:
                            piece = torch.empty(nr, nc, dtype=torch.float32, device=self.ctx.device)
                            dist.recv(piece, src=owner)
                        full[r0 : r0 + nr, c0 : c0 + nc] = piece.float().cpu()
                    elif owner == rank:
                        dist.send(local[(r0, c0)].contiguous(), dst=0)
                if rank == 0:
                    t.target.copy_(full[:, : t.dim].to(t.target.device, t.target.dtype))
            if rank == 0:
                self.root.copy_dense_into(self.plain)


def _sharder() -> Any:
    """TorchRec's EmbeddingBagCollectionSharder, with row-wise sharding offered on the CPU too."""
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
    from torchrec.distributed.types import ShardingType

    class Sharder(EmbeddingBagCollectionSharder):
        def sharding_types(self, compute_device_type: str) -> list[str]:
            types = list(super().sharding_types(compute_device_type))
            return types + [t for t in (ShardingType.ROW_WISE.value,) if t not in types]

    return Sharder()


def pooled_lookup(ebc: nn.Module, features: list[tuple[str, torch.Tensor]], rows: int, device: torch.device,
                  pad: int | None = 0) -> dict[str, torch.Tensor]:
    """``{key: (rows, padded width)}``: each feature's ids (``(B,)`` one id a row, ``(B, L)`` a bag a row; ids equal
    to ``pad`` are dropped, None: none) mean-pooled by the collection, every rank's batch padded with empty bags to
    the largest one (row-wise sharding needs one batch size)."""
    from torchrec import KeyedJaggedTensor

    stride = max_over_ranks(rows, device)
    values, lengths = [], []
    for _, ids in features:
        mask = ids != pad if pad is not None else torch.ones_like(ids, dtype=torch.bool)
        per_row = mask.long() if ids.dim() == 1 else mask.sum(1)
        values.append(ids[mask])
        lengths.append(torch.cat([per_row, per_row.new_zeros(stride - rows)]))
    kjt = KeyedJaggedTensor(keys=[k for k, _ in features], values=torch.cat(values).long(),
                            lengths=torch.cat(lengths).long())
    return {k: v[:rows] for k, v in ebc(kjt).to_dict().items()}
