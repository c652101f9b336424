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

POSITIVE_INT = click.IntRange(min=1)
"""The type of every count option (--threads, --k, --batch-size, ...): 0 and negatives are refused as the option is
parsed, naming it."""
THREADS_HELP = "CPU threads for torch / BLAS (default: library default)."


class _HiddenAliases(click.Option):
    """An option whose first name is the one ``--help`` shows; its other names are hidden aliases (old spellings
    kept working)."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        names, self.opts = self.opts, self.opts[:1]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = names

    def get_error_hint(self, ctx: click.Context) -> str:
        return f"'{self.opts[0]}'"


def k_option(default: int = 10, help: str = "How many items (the cut-off K).") -> Any:
    """``--k``, the one name of the cut-off on every command (``--top-k`` still works, hidden)."""
    return click.option("--k", "--top-k", "k", cls=_HiddenAliases, type=POSITIVE_INT, default=default,
                        show_default=True, help=help)


def parse_ks(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    """``--ks 5,10,20`` -> ``(5, 10, 20)``: positive integers, checked as the option is parsed."""
    if value is None:
        return None
    parts = [p.strip() for p in value.split(",")]
    if not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise click.BadParameter(f"expected positive integers separated by commas, e.g. 5,10,20; got {value!r}")
    return tuple(dict.fromkeys(int(p) for p in parts))


def _parse_sets(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected key=value, got {item!r}", param_hint="--set")
        out[key.strip()] = value.strip()
    return out


def _load_run(run_dir: str | Path):
    """:func:`recembed.runs.load_run` (which names a missing or unreadable run file in a DataError)."""
    from ..runs import load_run

    return load_run(run_dir)


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
    from ..errors import did_you_mean

    path = Path(data)
    if data.split(":", 1)[0] in catalog.CATALOG or path.exists():
        return catalog.load_any(data, root=data_root, **own)
    names = ", ".join(catalog.names())
    if path.suffix or "/" in data or "\\" in data:
        raise click.BadParameter(f"{data!r}: no such file or folder (--data takes a path or a catalog name: {names})",
                                 param_hint="--data")
    raise click.BadParameter(f"{data!r}{did_you_mean(data.split(':', 1)[0], catalog.CATALOG)} is neither a catalog "
                             f"dataset ({names}) nor a path", param_hint="--data")
