"""``recembed tokenize`` and ``recembed sid-prefix``: build semantic IDs and look inside them.

    recembed tokenize --data NAME --vectors SOURCE[,SOURCE] --method rqvae|rkmeans|fsq --levels 3 --codebook 256
                      [--set key=value ...] [--seed N] --out DIR
    recembed tokenize --data amazon-seq --method file --vectors Beauty.letter.index.json --id-offset -1 --out DIR
    recembed sid-prefix DIR --item ID [--depth 2]     items sharing the first DEPTH codes of ID's semantic ID
    recembed sid-prefix DIR --prefix 12,40            items whose semantic ID starts with 12, 40
    recembed sid-prefix DIR [--depth 1]               the most crowded prefixes

``tokenize`` writes ``SemanticIds.save(DIR)`` plus ``DIR/items.parquet`` (item ids in index order, and titles when
the item table has them), so ``sid-prefix`` needs no data root.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.table import Table as RichTable

# ``main`` imports this module at its end to register the commands: import from it inside the commands only


def register(cli: click.Group) -> None:
    """Add the semantic-ID commands to the ``recembed`` group."""
    cli.add_command(tokenize_cmd)
    cli.add_command(sid_prefix)


def _stats_table(title: str, stats: dict[str, Any]) -> RichTable:
    table = RichTable(title=title)
    for col in ("level", "codebook", "used", "utilisation", "perplexity"):
        table.add_column(col, justify="right")
    for level, p in enumerate(stats["per_level"], start=1):
        table.add_row(str(level), str(p["codebook_size"]), str(p["used"]), f"{p['utilisation']:.3f}",
                      f"{p['perplexity']:.1f}")
    return table


@click.command(name="tokenize")
@click.option("--data", required=True, help="Catalog name or a file / folder path (its items get the codes).")
@click.option("--data-root", type=click.Path(), default=None, help="Folder of the datasets (else $RECEMBED_DATA_ROOT).")
@click.option("--vectors", "sources", required=True, metavar="SOURCE[,SOURCE]",
              help="Item-table column(s), .npy file(s) (row = item index) or run directories (item embeddings); "
                   "several are L2-normalised and concatenated. --method file: the *.index.json file.")
@click.option("--method", type=click.Choice(["rqvae", "rkmeans", "fsq", "file"]), default="rqvae",
              show_default=True, help="Tokenizer, or 'file' to read LETTER / LC-Rec codes.")
@click.option("--levels", type=click.IntRange(min=1), default=3, show_default=True,
              help="Code levels (before the collision level).")
@click.option("--codebook", type=click.IntRange(min=2), default=256, show_default=True, help="Codes per level.")
@click.option("--set", "sets", multiple=True, help="Tokenizer config key=value (repeatable), e.g. epochs=100.")
@click.option("--seed", type=click.IntRange(min=0), default=2020, show_default=True, help="Random seed.")
@click.option("--dim", type=click.IntRange(min=1), default=64, show_default=True,
              help="Dimension of vectors built from tags / text columns.")
@click.option("--dedup/--no-dedup", default=True, show_default=True,
              help="Append TIGER's collision level so every item's code is unique.")
@click.option("--id-offset", default=0, show_default=True,
              help="--method file: the file's key for item x is int(x) + offset (LETTER Beauty: -1).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for torch (default: library "
              "default).")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder to write the semantic IDs to.")
def tokenize_cmd(data: str, data_root: str | None, sources: str, method: str, levels: int, codebook: int,
                 sets: tuple[str, ...], seed: int, dim: int, dedup: bool, id_offset: int, threads: int | None,
                 no_progress: bool, out_dir: str) -> None:
    """Semantic IDs for every item of --data, from item vectors (or read from a file)."""
    import time

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..io import atomic_write
    from ..semantic import SemanticIds, load_vector_sources, tokenize
    from .common import _load_data, _parse_sets, console

    with console.status(f"loading {data}"):
        dataset, _ = _load_data(data, data_root)
    if method == "file":
        if sets:
            raise click.UsageError("--set does not apply to --method file")
        t = time.perf_counter()
        ids = SemanticIds.read_index_json(sources, dataset.items.ids, id_offset=id_offset)
        ids.info["read_seconds"] = round(time.perf_counter() - t, 3)
        ids.info["raw_stats"] = ids.stats()
        ids = ids.deduplicated() if dedup else ids
    else:
        t = time.perf_counter()
        with console.status("building item vectors"):
            x = load_vector_sources(dataset, sources, dim=dim, seed=seed)
        vector_seconds = time.perf_counter() - t
        console.print(f"[bold]{dataset}[/]  vectors {x.shape[0]} x {x.shape[1]} from {sources} "
                      f"({vector_seconds:.1f}s)")
        ids = tokenize(x, method, levels, codebook, seed=seed, dedup=dedup, progress=not no_progress,
                       threads=threads, **_parse_sets(sets))
        ids.info.update({"data": data, "vectors": sources, "vector_seconds": round(vector_seconds, 3)})
    out = Path(out_dir)
    ids.save(out)
    columns: dict[str, Any] = {"item_id": dataset.items.arrow}
    titles = dataset.item_titles()
    if titles is not None:
        columns["title"] = pa.array([str(t) for t in titles], pa.string())
    atomic_write(out / "items.parquet", lambda p: pq.write_table(pa.table(columns), p))
    raw = ids.info["raw_stats"]
    console.print(_stats_table(f"{method}: {raw['num_items']} items, {raw['levels']} levels", raw))
    facts = [f"distinct tuples {raw['distinct_tuples']}", f"collision rate {raw['collision_rate']:.4f}",
             f"max items per tuple {raw['max_items_per_tuple']}"]
    if "fit_seconds" in ids.info:
        facts += [f"fit {ids.info['fit_seconds']:.2f}s", f"encode {ids.info['encode_seconds']:.2f}s"]
    if "relative_reconstruction_error" in ids.info:
        facts.append(f"relative reconstruction error {ids.info['relative_reconstruction_error']:.4f}")
    console.print("  ".join(facts))
    if dedup:
        console.print(f"collision level: {ids.sizes[-1]} codes; unique: {ids.is_unique()}")
    console.print(f"-> {out}/semantic_ids.json, semantic_ids.safetensors, items.parquet "
                  f"(codes {ids.num_items} x {ids.num_levels}, max {int(np.max(ids.codes)) if ids.num_items else 0})")


def _item_names(directory: Path, data: str | None, data_root: str | None):  # noqa: ANN202
    """``(item ids (I,), titles (I,) or None)`` from ``--data`` or from DIR/items.parquet."""
    import numpy as np
    import pyarrow.parquet as pq

    from .common import _load_data

    if data is not None:
        dataset, _ = _load_data(data, data_root)
        return dataset.items.ids, dataset.item_titles()
    path = directory / "items.parquet"
    if not path.exists():
        raise click.UsageError(f"{path} not found: pass --data to name the items")
    table = pq.read_table(path)
    titles = table.column("title").to_pylist() if "title" in table.column_names else None
    return (np.asarray(table.column("item_id").to_pylist(), dtype=object),
            None if titles is None else np.asarray(titles, dtype=object))


@click.command(name="sid-prefix")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--item", "item_id", default=None, help="External item id: list the items sharing its prefix.")
@click.option("--prefix", default=None, metavar="C1,C2,...", help="List the items whose codes start with this.")
@click.option("--depth", default=2, show_default=True, help="Prefix length for --item, and for the crowded-prefix "
              "summary (neither --item nor --prefix).")
@click.option("--data", default=None, help="Dataset of the codes (default: DIR/items.parquet).")
@click.option("--data-root", type=click.Path(), default=None, help="Folder of the datasets (else $RECEMBED_DATA_ROOT).")
@click.option("--limit", type=click.IntRange(min=1), default=30, show_default=True, help="Rows to print at most.")
def sid_prefix(directory: str, item_id: str | None, prefix: str | None, depth: int, data: str | None,
               data_root: str | None, limit: int) -> None:
    """Which items share a semantic-ID prefix (or, with neither --item nor --prefix, the most crowded ones)."""
    import numpy as np

    from ..errors import DataError
    from ..semantic import SemanticIds
    from .common import console

    if item_id is not None and prefix is not None:
        raise click.UsageError("give at most one of --item and --prefix")
    ids = SemanticIds.load(directory)
    items, titles = _item_names(Path(directory), data, data_root)
    if len(items) != ids.num_items:
        raise DataError(f"{ids.num_items} semantic IDs but {len(items)} items", path=directory)
    if not 1 <= depth <= ids.num_levels:
        raise click.BadParameter(f"must be in 1..{ids.num_levels}", param_hint="--depth")
    if item_id is None and prefix is None:
        keys, inverse, counts = np.unique(ids.codes[:, :depth], axis=0, return_inverse=True, return_counts=True)
        table = RichTable(title=f"most crowded prefixes of length {depth} ({len(keys)} distinct)")
        for col in ("prefix", "items", "examples"):
            table.add_column(col)
        for g in np.argsort(-counts, kind="stable")[:limit]:
            members = np.flatnonzero(inverse.reshape(-1) == g)[:3]
            shown = [str(titles[m]) if titles is not None else str(items[m]) for m in members]
            table.add_row(",".join(map(str, keys[g])), str(counts[g]), "; ".join(shown))
        console.print(table)
        return
    if item_id is not None:
        where = np.flatnonzero(np.asarray([str(i) for i in items], dtype=object) == str(item_id))
        if not len(where):
            raise click.BadParameter(f"item {item_id!r} is not in the semantic IDs' items", param_hint="--item")
        code = ids.codes[int(where[0])]
        wanted = tuple(int(c) for c in code[:depth])
        name = f" ({titles[where[0]]})" if titles is not None else ""
        console.print(f"item {item_id}{name}: semantic ID {','.join(map(str, code))}")
    else:
        try:
            wanted = tuple(int(c) for c in prefix.split(",") if c.strip())
        except ValueError:
            raise click.BadParameter(f"expected comma-separated integers, got {prefix!r}",
                                     param_hint="--prefix") from None
    members = ids.items_with_prefix(wanted)
    table = RichTable(title=f"{len(members)} item(s) with prefix {','.join(map(str, wanted))}")
    for col in ("item_id", "semantic ID") + (("title",) if titles is not None else ()):
        table.add_column(col)
    for m in members[:limit]:
        row = [str(items[m]), ",".join(map(str, ids.codes[m]))]
        table.add_row(*row, *([str(titles[m])] if titles is not None else []))
    console.print(table)
    if len(members) > limit:
        console.print(f"... and {len(members) - limit} more (--limit)")
