"""Serving commands of the ``recembed`` CLI (registered on the main group by :func:`register`).

    recembed bundle RUN_DIR --out BUNDLE [--index hnsw] [--overwrite] [--sign] [--ranker RANKER_RUN [--candidates 200]]
                    [--dim 16]
    recembed index build RUN_DIR|BUNDLE --kind hnsw [--k 10] [--queries 1000] [--param m=32 ...] [--save]
    recembed serve RUN_DIR|BUNDLE [--host 127.0.0.1] [--port 8000] [--index KIND] [--workers 1]
                   [--require-signature] [--candidates N] [--store milvus:PATH.db|milvus:URI] [--max-added-items N]
    recembed export RUN_DIR|BUNDLE --k 100 --out recs.parquet [--batch-size 1024]
    recembed export RUN_DIR|BUNDLE --to milvus:PATH.db|milvus:URI

A RUN_DIR given where a bundle is expected is bundled into a temporary directory first (removed on exit).
``bundle``, ``index build`` and ``export`` show a progress bar (:mod:`recembed.progress`) on a terminal when they
take more than a second; ``--no-progress`` hides it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import click

from ..io import write_json
from ..serve import DEFAULT_CANDIDATES, MAX_CANDIDATES
from .common import POSITIVE_INT, k_option

INDEX_KINDS = ("exact", "flat", "hnsw", "ivfpq")


def _parse_params(values: tuple[str, ...], hint: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected key=value, got {item!r}", param_hint=hint)
        try:
            out[key.strip()] = int(value)
        except ValueError:
            raise click.BadParameter(f"{key.strip()}: expected an integer, got {value!r}", param_hint=hint) from None
    return out


def _console():  # noqa: ANN202
    from .common import console

    return console


def register(cli: click.Group) -> None:
    """Add ``bundle``, ``index build``, ``serve`` and ``export`` to the ``recembed`` group."""
    cli.add_command(bundle)
    cli.add_command(index)
    cli.add_command(serve)
    cli.add_command(export)


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Bundle directory to write.")
@click.option("--index", "index_kind", type=click.Choice(INDEX_KINDS[1:]), default=None,
              help="Also build and store a FAISS index over the item vectors (embedding models).")
@click.option("--param", "params", multiple=True, metavar="KEY=INT",
              help="Index parameter (hnsw: m, ef_construction, ef_search; ivfpq: nlist, pq_m, nbits, nprobe, rerank).")
@click.option("--data-root", type=click.Path(), default=None,
              help="Folder of the datasets, to rebuild a content model's text encoder (else the run's / env).")
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle.")
@click.option("--sign", is_flag=True,
              help="Also sign the manifest (HMAC-SHA256, key in the environment variable RECEMBED_BUNDLE_KEY), "
                   "so that `serve --require-signature` can tell it from an edited bundle.")
@click.option("--ranker", "ranker_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Also bundle this ranker run (fitted on the same data and split: recembed fit deepfm --data D "
                   "--split S) with the feature tables it reads; the service then re-ranks the retriever's candidates.")
@click.option("--candidates", type=click.IntRange(1, MAX_CANDIDATES), default=None,
              help=f"With --ranker: items the retriever proposes per request by default [default: "
                   f"{DEFAULT_CANDIDATES}; at most {MAX_CANDIDATES}].")
@click.option("--dim", type=click.IntRange(min=1), default=None,
              help="Serve the first DIM embedding coordinates (a Matryoshka prefix: fit with --set matryoshka_dims=...).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def bundle(run_dir: str, out_dir: str, index_kind: str | None, params: tuple[str, ...], data_root: str | None,
           overwrite: bool, sign: bool, ranker_dir: str | None, candidates: int | None, dim: int | None,
           no_progress: bool) -> None:
    """Write a verified serving bundle of RUN_DIR (manifest with checksums, safetensors, Parquet)."""
    from ..errors import ConfigError
    from ..progress import ProgressBar
    from ..serve.bundle import bundle_from_run, load_bundle
    from ..serve.signing import bundle_key

    opts = _parse_params(params, "--param")
    if sign:
        bundle_key(required=True, purpose="--sign")  # before any work: a missing key is a usage mistake
    if candidates is not None and ranker_dir is None:
        raise ConfigError("--candidates: only with --ranker (the retriever's candidates for the ranker to re-rank)")
    with ProgressBar("bundle", total=9 if ranker_dir else 7, enabled=not no_progress, console=_console()) as bar:
        path, notes = bundle_from_run(run_dir, out_dir, index=index_kind, index_params=opts, data_root=data_root,
                                      overwrite=overwrite, sign=sign, progress=bar.step, ranker_dir=ranker_dir,
                                      candidates=candidates, dim=dim)
        bar.step("verifying")
        manifest = load_bundle(path, require_signature=sign).manifest
    for note in notes:
        _console().print(f"[yellow]note:[/] {note}")
    size = sum(f["bytes"] for f in manifest["files"].values())
    _console().print(f"bundle {path}: {manifest['model']['name']} ({manifest['serving']['kind']}), "
                     f"{manifest['model']['num_users']} users, {manifest['model']['num_items']} items, "
                     f"content {'yes' if manifest['content'] else 'no'}, index "
                     f"{(manifest['index'] or {}).get('kind', 'none (exact at start-up)')}, "
                     f"{len(manifest['files'])} files, {size / 2**20:.1f} MiB, "
                     f"{'signed (HMAC-SHA256)' if sign else 'unsigned'}")
    rk = manifest.get("ranker")
    if rk:
        _console().print(f"ranker {rk['name']}: {len(rk['fields'])} fields ({', '.join(f['name'] for f in rk['fields'])}"
                         f"), {rk['candidates']} candidates per request by default")


def _bundle_path(path: str, tmp: str, data_root: str | None = None) -> Path:
    from ..serve.bundle import resolve_bundle

    resolved, notes = resolve_bundle(path, tmp, data_root=data_root)
    for note in notes:
        _console().print(f"[yellow]note:[/] {note}")
    return resolved


@click.group()
def index() -> None:
    """Item vector indexes."""


@index.command(name="build")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option("--kind", type=click.Choice(INDEX_KINDS), default="hnsw", show_default=True)
@click.option("--param", "params", multiple=True, metavar="KEY=INT", help="Index parameter (see `recembed bundle`).")
@click.option("--k", type=POSITIVE_INT, default=10, show_default=True,
              help="Cut-off of the recall measured against exact search.")
@click.option("--queries", type=POSITIVE_INT, default=1000, show_default=True,
              help="Users whose vectors are the test queries.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the query sample.")
@click.option("--save", is_flag=True, help="Store the index in PATH (a bundle), replacing any stored one.")
@click.option("--report", type=click.Path(), default=None, help="Also write the report as JSON here.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def index_build(path: str, kind: str, params: tuple[str, ...], k: int, queries: int, seed: int, save: bool,
                report: str | None, no_progress: bool) -> None:
    """Build an index over PATH's item vectors; report recall@K against exact search and queries/s."""
    import time

    import numpy as np

    from ..progress import ProgressBar
    from ..serve.bundle import add_index, is_bundle, load_bundle
    from ..serve.index import build_index, measure_index, set_index_threads
    from ..serve.signing import bundle_key, is_signed

    if save and not is_bundle(path):
        raise click.UsageError("--save needs a bundle (recembed bundle RUN_DIR --out BUNDLE)")
    if save and is_signed(path):  # before the work: storing the index signs the bundle again
        bundle_key(required=True, purpose="re-signing a signed bundle (index build --save)")
    opts = _parse_params(params, "--param")
    with (tempfile.TemporaryDirectory(prefix="recembed-index-") as tmp,
          ProgressBar("index build", total=4 if save else 3, enabled=not no_progress, console=_console()) as bar):
        bar.step("loading")
        b = load_bundle(_bundle_path(path, tmp))
        if b.kind != "embedding":
            raise click.UsageError(f"{b.model.name} is served by its own scoring: no user/item vectors to index")
        set_index_threads(1)
        bar.step(f"building {kind} over {len(b.items)} items")
        t = time.perf_counter()
        idx = build_index(kind, b.item_vectors, **opts)
        build_seconds = time.perf_counter() - t
        rng = np.random.default_rng(seed)
        users = rng.choice(len(b.users), size=min(queries, len(b.users)), replace=False)
        bar.step(f"measuring recall@{k} on {len(users)} queries")
        stats = measure_index(idx, b.user_vectors[users], k)
        entry = None
        if save:
            bar.step("storing in the bundle")
            entry = add_index(path, kind, opts)
    out = {"kind": kind, "params": idx.params(), "items": len(idx), "dim": idx.dim, "queries": len(users),
           "build_seconds": round(build_seconds, 2), **stats}
    _console().print(f"{kind} index over {len(idx)} items x {idx.dim}: built in {build_seconds:.2f}s; "
                     f"recall@{k} vs exact {stats[f'recall@{k}']:.4f} on {len(users)} user queries; "
                     f"{stats['qps_single']:.0f} queries/s one at a time ({stats['qps_batch']:.0f}/s batched; "
                     f"exact: {stats['exact_qps_single']:.0f}/s one at a time)  params {idx.params()}")
    if report:
        write_json(report, out)
    if entry is not None:
        _console().print(f"stored in {path}/{entry['file'] or '(exact: nothing to store)'}")


@click.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--index", "index_kind", type=click.Choice(INDEX_KINDS), default=None,
              help="Index for recommendations (default: the bundle's stored index, else exact).")
@click.option("--param", "params", multiple=True, metavar="KEY=INT", help="Parameters of an index built at start-up.")
@click.option("--workers", default=1, show_default=True, type=int,
              help="Worker processes (each loads the bundle; adding items needs 1, or a shared --store).")
@click.option("--threads", default=1, show_default=True, type=int, help="FAISS / BLAS threads per worker.")
@click.option("--max-body-bytes", default=1 << 20, show_default=True, type=int, help="Larger bodies get 413.")
@click.option("--api-key-env", default="RECEMBED_API_KEY", show_default=True,
              help="Environment variable holding the API key of POST /v1/items.")
@click.option("--data-root", type=click.Path(), default=None, help="Datasets folder (bundling a RUN_DIR).")
@click.option("--log-level", default="warning", show_default=True)
@click.option("--require-signature", is_flag=True,
              help="Refuse a bundle without a valid HMAC-SHA256 signature (`bundle --sign`; key in "
                   "RECEMBED_BUNDLE_KEY): an edited or re-checksummed bundle then stops start-up.")
@click.option("--candidates", type=click.IntRange(1, MAX_CANDIDATES), default=None,
              help="Bundles with a ranker: items the retriever proposes per request when the request does not say "
                   "(default: the bundle's setting).")
@click.option("--store", "store", default=None, metavar="milvus:PATH.db|milvus:URI",
              help="Keep the item index and the added items in Milvus: a milvus-lite data directory (PATH ending "
                   "in .db, embedded) or a Milvus server URI. Added items then survive restarts and are shared by "
                   "the workers. Needs the store extra.")
@click.option("--store-search", type=click.Choice(["store", "local"]), default="store", show_default=True,
              help="With --store: run searches in Milvus (store), or in each worker's in-process index (local: "
                   "FAISS speed; the store keeps the added items, each worker refreshes them every second).")
@click.option("--max-added-items", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Most items POST /v1/items may add (409 beyond).")
def serve(path: str, host: str, port: int, index_kind: str | None, params: tuple[str, ...], workers: int,
          threads: int, max_body_bytes: int, api_key_env: str, data_root: str | None, log_level: str,
          require_signature: bool, candidates: int | None, store: str | None, store_search: str,
          max_added_items: int) -> None:
    """Serve recommendations over HTTP from a bundle (or a RUN_DIR, bundled to a temporary directory first).

    The bundle is verified (format version, checksums; the signature when the bundle is signed and
    RECEMBED_BUNDLE_KEY is set, always with --require-signature) before the server listens: a corrupted bundle,
    or with --require-signature an edited or unsigned one, stops here with exit code 2."""
    from ..serve.bundle import is_bundle, verify_bundle

    if store is not None:
        from ..serve.store import parse_store

        parse_store(store)  # a malformed --store stops here, before any bundling
    elif store_search != "store":
        raise click.UsageError("--store-search: only with --store")
    if workers < 1 or threads < 1:
        raise click.BadParameter("must be >= 1", param_hint="--workers / --threads")
    if require_signature and not is_bundle(path):
        raise click.UsageError("--require-signature needs a signed bundle (recembed bundle RUN_DIR --out BUNDLE "
                               "--sign), not a run directory")
    with tempfile.TemporaryDirectory(prefix="recembed-serve-") as tmp:
        bundle_dir = _bundle_path(path, tmp, data_root)
        manifest = verify_bundle(bundle_dir, require_signature=require_signature)
        if candidates is not None and not manifest.get("ranker"):
            from ..errors import ConfigError

            raise ConfigError("--candidates: the bundle has no ranker (bundle it with `recembed bundle RUN --ranker "
                              "RANKER_RUN`)")
        try:
            import uvicorn  # noqa: F401 - only: is the serve extra installed?
        except ImportError:
            raise click.ClickException("serving needs the serve extra: pip install 'recembed[serve]'") from None
        store_uri = _open_store(store, bundle_dir, manifest) if store is not None else ""
        pointer = Path(tmp) / "current-bundle"
        pointer.write_text(str(bundle_dir), encoding="utf-8")
        os.environ.update({
            "RECEMBED_SERVE_BUNDLE": str(bundle_dir), "RECEMBED_SERVE_INDEX": index_kind or "",
            "RECEMBED_SERVE_INDEX_PARAMS": json.dumps(_parse_params(params, "--param")),
            "RECEMBED_SERVE_WORKERS": str(workers), "RECEMBED_SERVE_THREADS": str(threads),
            "RECEMBED_SERVE_MAX_BODY": str(max_body_bytes), "RECEMBED_SERVE_API_KEY_ENV": api_key_env,
            "RECEMBED_SERVE_REQUIRE_SIGNATURE": "1" if require_signature else "",
            "RECEMBED_SERVE_CANDIDATES": "" if candidates is None else str(candidates),
            "RECEMBED_SERVE_STORE": store_uri, "RECEMBED_SERVE_MAX_ADDED_ITEMS": str(max_added_items),
            "RECEMBED_SERVE_STORE_SEARCH": store_search,
            "RECEMBED_SERVE_BUNDLE_POINTER": str(pointer),
        })
        if not os.environ.get(api_key_env):
            click.echo(f"warning: no API key set ({api_key_env} is empty): POST /v1/items (adding items) is "
                       f"refused with 403; set {api_key_env} to allow it", err=True)
        rk = manifest.get("ranker")
        ranked = (f", re-ranked by {rk['name']} over {candidates or rk['candidates']} candidates" if rk else "")
        _console().print(f"serving {manifest['model']['name']} ({manifest['serving']['kind']}){ranked} from "
                         f"{bundle_dir} on http://{host}:{port} with {workers} worker(s)")
        from ..serve.runner import run

        run(host, port, workers, log_level=log_level, access_log=False)  # workers: one SO_REUSEPORT socket each


def _open_store(store: str, bundle_dir: Path, manifest: dict[str, Any]) -> str:
    """Open ``--store`` in this process (milvus-lite: its gRPC server lives here, the workers connect to it) and
    bulk-load the bundle's items once, before any worker starts; returns the URI the workers use."""
    from ..errors import ConfigError
    from ..serve.store import open_store, preload

    if manifest["serving"]["kind"] != "embedding":
        raise ConfigError(f"--store: {manifest['model']['name']} is served by its own scoring (no item vectors "
                          "to store); a store needs an embedding bundle")
    uri = open_store(store)
    stats = preload(uri, bundle_dir)
    how = "reused" if stats["reused"] else f"loaded {stats['loaded']} items in {stats['seconds']:.1f}s"
    _console().print(f"store {store}: collection {stats['collection']} ({how})")
    return uri


@click.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@k_option(default=100, help="Items per user.")
@click.option("--out", "out_file", default=None, type=click.Path(dir_okay=False),
              help="Parquet file of every user's top-K to write.")
@click.option("--to", "to_store", default=None, metavar="milvus:PATH.db|milvus:URI",
              help="Bulk-load the bundle's item embeddings (ids, titles) into this Milvus store: the collection "
                   "`serve --store` then reuses.")
@click.option("--batch-size", type=POSITIVE_INT, default=1024, show_default=True,
              help="Users scored at once (bounds memory).")
@click.option("--index", "index_kind", type=click.Choice(INDEX_KINDS), default="exact", show_default=True,
              help="Index for embedding bundles.")
@click.option("--include-seen", is_flag=True, help="Keep the users' known items.")
@click.option("--data-root", type=click.Path(), default=None, help="Datasets folder (bundling a RUN_DIR).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def export(path: str, k: int, out_file: str | None, to_store: str | None, batch_size: int, index_kind: str,
           include_seen: bool, data_root: str | None, no_progress: bool) -> None:
    """Write the top-K recommendations of every user to a Parquet file (user_id, item_ids, scores) with --out;
    bulk-load the item embeddings into Milvus with --to."""
    from ..progress import ProgressBar
    from ..serve.bundle import load_bundle
    from ..serve.export import export_recommendations
    from ..serve.service import RecService, ServiceOptions

    if out_file is None and to_store is None:
        raise click.UsageError("give --out FILE.parquet (every user's top-K) and/or --to milvus:PATH.db|milvus:URI "
                               "(bulk-load the item embeddings)")
    if to_store is not None:
        from ..serve.store import parse_store

        parse_store(to_store)
    with tempfile.TemporaryDirectory(prefix="recembed-export-") as tmp:
        bundle_dir = _bundle_path(path, tmp, data_root)
        if to_store is not None:
            from ..serve.bundle import verify_bundle

            _open_store(to_store, bundle_dir, verify_bundle(bundle_dir))
            if out_file is None:
                return
        b = load_bundle(bundle_dir)
        service = RecService(b, ServiceOptions(index=index_kind if b.kind == "embedding" else None,
                                               threads=os.cpu_count() or 1))
        with ProgressBar("export (users)", total=len(service.user_ids), enabled=not no_progress,
                         console=_console()) as bar:
            stats = export_recommendations(service, out_file, k=k, batch_size=batch_size,
                                           exclude_seen=not include_seen, progress=bar.update)
    _console().print(f"{stats['users']} users x top {k} -> {out_file} in {stats['seconds']:.1f}s "
                     f"({stats['users_per_second']:.0f} users/s, {stats['batches']} batches of <= {batch_size})")
