"""Helpers every ``recembed`` command module shares (console, argument parsing, data loading, metric tables).

``main``, ``serve_cmds`` and ``semantic_cmds`` import from here; nothing here imports a command module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table as RichTable

console = Console()


def _parse_sets(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected key=value, got {item!r}", param_hint="--set")
        out[key.strip()] = value.strip()
    return out


def _run_parts(m: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The metric parts of a run's metrics.json that the CLI shows: valid, test and test_cold if any."""
    return {"valid": m["valid"], "test": m["test"], **({"test_cold": m["test_cold"]} if "test_cold" in m else {})}


def _metrics_table(title: str, parts: dict[str, dict[str, Any]], names: tuple[str, ...]) -> RichTable:
    table = RichTable(title=title)
    table.add_column("split")
    for n in names:
        table.add_column(n, justify="right")
    for part, summary in parts.items():
        if summary:
            table.add_row(part, *[f"{summary[n]:.4f}" if n in summary else "-" for n in names])
    return table


def _load_data(data: str, data_root: str | None, **own: Any):  # noqa: ANN202
    """``(dataset, default split)``; ``own``: ``items`` / ``users`` / ``columns`` / ``duplicates`` for an
    interactions file (see :func:`recembed.data.catalog.load_any`)."""
    from ..data import catalog

    path = Path(data)
    if data.split(":", 1)[0] in catalog.CATALOG or path.exists():
        return catalog.load_any(data, root=data_root, **own)
    raise click.BadParameter(f"{data!r} is neither a catalog dataset ({', '.join(catalog.names())}) nor a path",
                             param_hint="--data")
