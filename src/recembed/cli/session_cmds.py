"""[Tasks] the session task on the command line: ``recembed fit MODEL --data diginetica-session`` (session models
``sknn`` / ``vsknn`` / ``stan``, or a sequential model such as ``sasrec`` on sessions; :mod:`recembed.tasks.sessions`).

``fit`` routes here when the model is a session model or the data is a session dataset; the run directory has
the usual layout (``recembed recommend RUN --history ...`` and bundles work), with ``metrics.json`` ``test``
holding ``p@K`` (= ``hit@K``) and ``mrr@K`` over the test prefixes.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table as RichTable

from ..errors import ConfigError
from .common import console


def is_session_data(data: str) -> bool:
    """``data`` names a catalog dataset of the session task (diginetica-session)."""
    from ..data import catalog

    base = data.split(":", 1)[0]
    return base in catalog.CATALOG and catalog.CATALOG[base].task == "session"


def refuse_options(model: str, given: dict[str, Any]) -> None:
    """Options of the retrieval / ranking paths that the session task does not take: exit 2 naming the flag."""
    for flag, value in given.items():
        if value:
            raise ConfigError(f"{flag}: not for the session task ({model} on session data: the test prefixes are "
                              "given, training uses the training sessions; see docs in recembed.tasks.sessions)")


def fit_session(model: str, data: str, data_root: str | None, sets: dict[str, str], out_dir: str, *, seed: int,
                ks: tuple[int, ...], threads: int | None, no_progress: bool, env: dict[str, Any]) -> None:
    from ..data import catalog
    from ..models.registry import SESSION_MODELS, is_session_model, model_class
    from ..options import FitOptions

    if is_session_model(model) and not is_session_data(data):
        names = [n for n, e in catalog.CATALOG.items() if e.task == "session"]
        raise ConfigError(f"--data: {model} is a session model; it needs a session dataset with given test prefixes "
                          f"({', '.join(names)}), not {data!r}")
    model_class(model)(**sets)  # bad --set keys / values fail before the data is read
    if threads:
        import torch

        torch.set_num_threads(threads)
    with console.status(f"loading {data}"):
        dataset = catalog.load(data, root=data_root)
    from ..tasks.sessions import fit_session_run

    console.print(f"[bold]{dataset}[/]  session task: train sessions, given test prefixes "
                  f"({len(dataset.extras.get('test_prefix_target', {}).get('target', []))})")
    m = fit_session_run(model, dataset, params=sets, out_dir=out_dir, ks=ks,
                        options=FitOptions(seed=seed, show_progress=not no_progress, threads=threads, **env),
                        data_spec={"data": data, "data_root": data_root})
    table = RichTable(title=f"{model} on {dataset.name} (session task, {m['test']['prefixes']} test prefixes, %)")
    for col in ("split", *[f"{n}@{k}" for k in ks for n in ("P", "MRR")]):
        table.add_column(col, justify="right")
    table.add_row("test", *[f"{100 * m['test'][f'{n}@{k}']:.2f}" for k in ks for n in ("p", "mrr")])
    console.print(table)
    kind = "session model" if model in SESSION_MODELS else "trained on the sessions"
    console.print(f"{kind}  fit {m['fit_seconds']:.2f}s  eval {m['eval_seconds']:.2f}s  peak RSS "
                  f"{m['peak_rss_mb']:.0f} MiB  -> {out_dir}/metrics.json")
