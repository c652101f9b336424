"""The ranking stage of a bundle: a ranker fitted on the retriever's data and split, and the feature tables it
reads, so that the service re-ranks the retriever's candidates with no data root.

    recembed fit ease --data ml-100k --split S --out runs/ease
    recembed fit deepfm --data ml-100k --split S --out runs/deepfm
    recembed bundle runs/ease --ranker runs/deepfm --out bundles/ease-deepfm [--candidates 200]

Files (all under the manifest's checksums, and its signature when signed)::

    ranker/model.json, ranker/model.safetensors   the ranker's own saved form (Ranker.save: config, fitted schema,
                                                  weights)
    ranker/users.parquet                          the user-side columns the ranker's fields read, row i = user i
                                                  of users.parquet (absent when no field is a user attribute)
    ranker/items.parquet                          the item-side columns, row i = item i of items.parquet

Columns keep the tables' raw values (categorical: strings, tags: lists of strings, numeric: float64 with NaN for
missing, vector: fixed-size lists of float32); the ranker's schema encodes them at start-up, once per entity
(:class:`~recembed.ranking.implicit.EncodedPairs`), exactly as :func:`~recembed.ranking.implicit.pair_frame`
rows are encoded offline. ``user_id`` / ``item_id`` are the bundle's vocabularies.

A request's rank stage gathers its candidates' encoded rows and runs one forward pass of the ranker
(``torch.inference_mode``); items added through ``POST /v1/items`` after bundling have no attributes and get
OOV / zero features (:meth:`EncodedPairs.append_items`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ConfigError, DataError
from ..ranking.implicit import EncodedPairs, PairFeatures, retrieval_columns
from ..ranking.schema import Ragged
from . import DEFAULT_CANDIDATES, MAX_CANDIDATES  # noqa: F401 - re-exported

RANKER_DIR = "ranker"
FEATURE_FILES = {"user": f"{RANKER_DIR}/users.parquet", "item": f"{RANKER_DIR}/items.parquet"}


@dataclass
class RankerPart:
    """What ``write_bundle`` stores of a ranker: the model, its pair features aligned to the bundle's
    vocabularies, the default number of candidates, and where it came from."""

    model: Any
    features: PairFeatures
    candidates: int = DEFAULT_CANDIDATES
    source: dict[str, Any] | None = None


def check_candidates(candidates: int, flag: str = "--candidates") -> int:
    if isinstance(candidates, bool) or not isinstance(candidates, (int, np.integer)) \
            or not 1 <= candidates <= MAX_CANDIDATES:
        raise ConfigError(f"{flag}: must be an integer from 1 to {MAX_CANDIDATES}, got {candidates!r}")
    return int(candidates)


def ranker_for_run(run: Any, ranker_dir: str | Path, *, data_root: str | None = None,
                   candidates: int = DEFAULT_CANDIDATES) -> RankerPart:
    """The ranker run ``ranker_dir`` prepared for the bundle of the retrieval run ``run`` (a loaded run): refused
    (``ConfigError`` naming ``--ranker``) when fitted on a CTR dataset or on another data / split; its features are
    read from the ranker's dataset (``data_root``, else the run's) and aligned to the run's vocabularies."""
    from ..ranking.implicit import activity
    from ..ranking.pipeline import check_same_split, index_map, load_ranker_dataset
    from ..ranking.runs import load_ranker_run

    candidates = check_candidates(candidates)
    rk = load_ranker_run(ranker_dir)
    spec = check_same_split(run.config, rk.config, ranker_dir, what="a bundle with a ranker (retrieve-then-rank)")
    schema = rk.model.schema_
    dataset = load_ranker_dataset(spec, data_root)
    users, items = index_map(run.users, dataset.users, "user"), index_map(run.items, dataset.items, "item")
    counts = activity(run.split.train, users, items, dataset.num_users, dataset.num_items)
    try:
        features = PairFeatures.from_dataset(dataset, schema.fields, counts)
    except DataError as exc:
        raise ConfigError(f"--ranker: {ranker_dir} reads {exc} (a ranker fitted with --features / --text-columns "
                          "cannot be bundled yet: its content columns are not in the data's tables)") from None
    features = features.realign(users, items)
    EncodedPairs(features, schema)  # every field encodes (a mismatch shows here, not at serving time)
    metrics = {k: rk.metrics[k] for k in ("test", "valid") if k in rk.metrics}
    for part in metrics.values():
        part.pop("reliability", None)
    return RankerPart(rk.model, features, candidates,
                      {"run_dir": str(Path(ranker_dir).resolve()), "config": rk.config, "metrics": metrics})


# --------------------------------------------------------------------------------------------
# the feature tables
# --------------------------------------------------------------------------------------------
def _to_arrow(kind: str, values: Any) -> pa.Array:
    if kind == "tags":
        return pa.ListArray.from_arrays(pa.array(values.offsets, pa.int64()).cast(pa.int32()),
                                        pa.array(values.values.tolist(), pa.string()))
    if kind == "numeric":
        return pa.array(np.asarray(values, dtype=np.float64))
    if kind == "vector":
        x = np.ascontiguousarray(values, dtype=np.float32)
        return pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), x.shape[1])
    return pa.array([str(v) for v in values], pa.string())


def _from_arrow(kind: str, col: pa.ChunkedArray, path: Path, name: str) -> Any:
    arr = col.combine_chunks()
    try:
        if kind == "tags":
            offsets = arr.offsets.to_numpy().astype(np.int64)
            values = np.asarray(arr.flatten().to_pylist(), dtype=object)
            return Ragged(values, offsets - offsets[0])
        if kind == "numeric":
            return arr.to_numpy(zero_copy_only=False).astype(np.float64)
        if kind == "vector":
            return arr.flatten().to_numpy().astype(np.float32).reshape(len(arr), arr.type.list_size)
        return np.asarray(arr.to_pylist(), dtype=object)
    except (pa.ArrowException, AttributeError, ValueError) as exc:
        raise DataError(f"column {name!r} is not a {kind} column ({exc})", path=path, field=name) from None


def write_ranker(root: Path, part: RankerPart, num_users: int, num_items: int) -> dict[str, Any]:
    """Write the ranker's files under ``root`` (a bundle being written); returns its manifest entry."""
    feats = part.features
    if len(feats.user_ids) != num_users or len(feats.item_ids) != num_items:
        raise DataError(f"ranker features for {len(feats.user_ids)} users / {len(feats.item_ids)} items, the bundle "
                        f"has {num_users} / {num_items}")
    part.model.save(root / RANKER_DIR)
    fields, files = [], {}
    for side in ("user", "item"):
        cols = {name: _to_arrow(kind, values) for name, (s, kind, values) in feats.columns.items() if s == side}
        if cols:
            (root / RANKER_DIR).mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table(cols), root / FEATURE_FILES[side])
            files[side] = FEATURE_FILES[side]
    for f in part.model.schema_.fields:
        fields.append({"name": f.name, "kind": f.kind, "side": feats.side(f.name)})
    return {"name": part.model.name, "candidates": part.candidates, "max_candidates": MAX_CANDIDATES,
            "fields": fields, "feature_files": files,
            "columns": {name: {"side": s, "kind": kind} for name, (s, kind, _) in feats.columns.items()},
            "new_items": "OOV / zero features (categorical: OOV bucket, tags: none, numeric: 0, vector: zeros)",
            **({"source": part.source} if part.source else {})}


def read_ranker(path: Path, entry: dict[str, Any], user_ids: list[str], item_ids: list[str]
                ) -> tuple[Any, PairFeatures]:
    """The ranker and its features of a (verified) bundle."""
    from ..models.ranking.base import Ranker

    model = Ranker.load(path / RANKER_DIR)
    tables: dict[str, pa.Table] = {}
    for side, rel in (entry.get("feature_files") or {}).items():
        tables[side] = pq.read_table(path / rel)
        size = len(user_ids) if side == "user" else len(item_ids)
        if tables[side].num_rows != size:
            raise DataError(f"{tables[side].num_rows} rows, the bundle has {size} {side}s", path=path / rel)
    cols = {}
    for name, meta in (entry.get("columns") or {}).items():
        side, kind = meta["side"], meta["kind"]
        table = tables.get(side)
        if table is None or name not in table.column_names:
            raise DataError(f"no column {name!r} for the ranker", path=path / FEATURE_FILES[side], field=name)
        cols[name] = (side, kind, _from_arrow(kind, table.column(name), path / FEATURE_FILES[side], name))
    return model, PairFeatures(np.asarray(user_ids, dtype=object), np.asarray(item_ids, dtype=object), cols)


# --------------------------------------------------------------------------------------------
# the service's rank stage
# --------------------------------------------------------------------------------------------
class RankStage:
    """Re-ranks one user's candidates: their encoded rows (cached per entity at start-up) through the ranker."""

    def __init__(self, model: Any, features: PairFeatures, candidates: int) -> None:
        self.model, self.candidates = model, candidates
        self.name = model.name
        self.pairs = EncodedPairs(features, model.schema_)

    def probabilities(self, user: int, items: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
        """The ranker's click probabilities ``(n,)`` of ``user`` with each of ``items`` (service indices), whose
        retrieval ``scores`` a ranker fitted on the retriever's candidates reads (``--retriever``)."""
        pair = retrieval_columns(np.asarray(scores)[None, :]) if self.pairs.pair_names else None
        return self.model.predict_arrays(self.pairs.arrays(np.full(len(items), user, dtype=np.int64), items, pair))

    def add_item(self, item_id: str) -> None:
        self.pairs.append_items([item_id])
