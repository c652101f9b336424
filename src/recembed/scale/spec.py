"""``--shard table|row[:MB]``: parsed without importing torch or TorchRec (the CLI checks it before the data)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

KINDS = ("table", "row")
FORM = "'table' or 'row', optionally ':MB' (each rank's table memory cap in the planner), e.g. 'row:64'"


@dataclass(frozen=True)
class ShardSpec:
    kind: str
    """``table``: every table whole on one rank; ``row``: every table's rows split across all ranks."""
    memory_mb: float | None = None
    """The planner's per-rank storage cap (None: the machine's memory)."""


def parse_shard(spec: str) -> ShardSpec:
    kind, sep, cap = str(spec).strip().lower().partition(":")
    if kind not in KINDS:
        raise ConfigError(f"--shard: expected {FORM}; got {spec!r}")
    if not sep:
        return ShardSpec(kind)
    try:
        mb = float(cap)
    except ValueError:
        raise ConfigError(f"--shard: the memory cap must be a number of MiB, got {cap!r} in {spec!r}") from None
    if not mb > 0:
        raise ConfigError(f"--shard: the memory cap must be > 0 MiB, got {cap!r} in {spec!r}")
    return ShardSpec(kind, mb)


#: rankers that read per-token embeddings (attention over a sequence): the sharded bag tables pool instead
PER_TOKEN_RANKERS = ("din", "qin")


def check_shardable(model: str) -> None:
    """``--shard`` covers the CTR rankers that pool their fields and MF-BPR; anything else is refused before the
    data is read (a ConfigError: exit code 2)."""
    from ..models.registry import is_ranker

    if model in PER_TOKEN_RANKERS:
        raise ConfigError(f"--shard: {model} reads per-token embeddings (attention over a sequence), which the "
                          "sharded bag tables do not give; shard a ranker that pools its fields (deepfm, fm, lr, "
                          "dcnv2, ...) or train it without --shard")
    if not is_ranker(model) and model != "bpr":
        raise ConfigError(f"--shard: shards the tables of the CTR rankers and of MF-BPR (bpr), not {model}; train it "
                          "with --distributed alone (every rank holds the whole model)")
