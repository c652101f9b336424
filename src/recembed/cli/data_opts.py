"""Options and helpers for bringing data to a command: own interactions files with item / user tables, a column
mapping, the duplicate and cold-user policies, and item content (vector files, text columns)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .common import _load_data, console

DUPLICATES_HELP = ("Repeated (user, item) rows of an interactions file: drop (default; each pair's first event "
                   "kept, with a warning that counts them), sum (one event per pair, weights summed, ratings "
                   "averaged) or keep (every row an event).")


def own_data_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--items``, ``--users``, ``--columns``, ``--duplicates`` (for ``--data FILE.csv|.tsv|.parquet``)."""
    options = [
        click.option("--items", "items_path", type=click.Path(dir_okay=False), default=None,
                     help="Item table (CSV / TSV / Parquet), one row per item, keyed by the item column (or "
                          "item_id): e.g. title,description for --text-columns; items only listed here are added."),
        click.option("--users", "users_path", type=click.Path(dir_okay=False), default=None,
                     help="User table (CSV / TSV / Parquet), one row per user, keyed by the user column (or user_id)."),
        click.option("--columns", default=None, metavar="ROLE=NAME,...",
                     help="Column names of the interactions file when they differ from user_id, item_id, "
                          "timestamp, rating, weight: e.g. user=uid,item=movie,time=ts,rating=stars."),
        click.option("--duplicates", type=click.Choice(["drop", "sum", "keep"]), default=None, help=DUPLICATES_HELP),
    ]
    for option in reversed(options):
        command = option(command)
    return command


cold_users_option = click.option(
    "--cold-users", type=click.Choice(["skip", "include"]), default="skip", show_default=True,
    help="Users with validation / test events but no training events: skip them in evaluation (counted in "
         "metrics.json 'cold_users') or include them (ranked from whatever the model knows without their events).")


def load_data(data: str, data_root: str | None, items_path: str | None = None, users_path: str | None = None,
              columns: str | None = None, duplicates: str | None = None):  # noqa: ANN201
    """:func:`~recembed.cli.common._load_data` with the own-data options; duplicate warnings are printed."""
    from ..data.readers.own import DuplicatesWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DuplicatesWarning)
        loaded = _load_data(data, data_root, items=items_path, users=users_path, columns=columns,
                            duplicates=duplicates)
    for w in caught:
        if issubclass(w.category, DuplicatesWarning):
            console.print(f"[yellow]warning:[/] {w.message}")
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return loaded


def report_split(split, cold_users: str) -> None:  # noqa: ANN001
    """Warn about users with no training events (and the policy that applies) and pairs removed from a part."""
    from ..runs import cold_users_count

    counts = cold_users_count(split)
    if counts["valid"] or counts["test"]:
        what = "skipped in evaluation (--cold-users include ranks them)" if cold_users == "skip" else \
            "included in evaluation (--cold-users include)"
        console.print(f"[yellow]warning:[/] users with no training events: {counts['test']} with test events, "
                      f"{counts['valid']} with validation events: {what}")
    if split.removed_overlap:
        console.print(f"[yellow]warning:[/] removed events whose (user, item) pair is already in an earlier part: "
                      f"{split.removed_overlap} (a pair is never in two parts)")


def text_encoder(encoder: str, cache_dir: str | None, threads: int | None, batch_size: int = 64,
                 dim: int = 256):  # noqa: ANN201
    from ..encoders import SentenceEncoder, TfidfEncoder

    if encoder == "minilm":
        cache = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "recembed" / "text"
        return SentenceEncoder(batch_size=batch_size, cache_dir=cache, threads=threads)
    return TfidfEncoder(dim=dim)


def attach_content(dataset, specs: tuple[str, ...], text_columns: str, encoder: str,  # noqa: ANN001
                   cache_dir: str | None, threads: int | None) -> list[str]:
    from ..encoders import attach_features

    cols = [c for c in text_columns.split(",") if c]
    if not specs and not cols:
        return []
    if cols and not getattr(dataset.item_table, "kinds", None):
        raise click.UsageError(f"--text-columns {text_columns}: {dataset.name} has no item table to read them from "
                               "(pass --items FILE with those columns)")
    with console.status("adding item content"):
        return attach_features(dataset, specs, text_columns=cols,
                               text_encoder=text_encoder(encoder, cache_dir, threads) if cols else None)
