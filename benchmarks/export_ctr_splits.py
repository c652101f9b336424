"""Write the ranking stage's CTR splits as CSV for peers (benchmarks/peers/fuxictr_ctr.py) to read.

    PYTHONPATH=src python benchmarks/export_ctr_splits.py --data-root /work/shared/data --out /tmp/ctr-splits

For each dataset, ``OUT/<name>/{train,valid,test}.csv`` come from :meth:`CTRData.write_csv` (``label`` then every
field, token lists joined by ``^``), the identical rows recembed trains / validates / tests on. ``fields.json``
beside them records the fields (kind, ``min_count``, ``max_len``, ``vocab_from``), the token-list widths and
vocabulary sizes the schema fits on the training part, the part sizes and click rates, and each file's sha256,
so that the peer builds its feature config from the same field definitions and the JSON it writes can name
the exact files it read.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from recembed.ranking.datasets import CTR_DATASETS, PARTS, load_ctr  # noqa: E402


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export(name: str, data_root: str | None, out: Path) -> dict:
    data = load_ctr(name, data_root)
    folder = data.write_csv(out / name)
    schema = data.schema()
    manifest = {
        "dataset": name, "description": data.description,
        "fields": [asdict(f) for f in data.fields],
        "lengths": schema.lengths,
        "vocab_sizes": {k: len(v) for k, v in schema.vocab.items()},
        "sizes": data.sizes(),
        "click_rate": {p: float(data.part(p).labels.mean()) for p in PARTS},
        "sha256": {f"{p}.csv": sha256(folder / f"{p}.csv") for p in PARTS},
        "token_separator": "^",
    }
    (folder / "fields.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", default=None, help="folder of the datasets (else $RECEMBED_DATA_ROOT)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/ctr-splits"), help="folder to write (outside the repo)")
    ap.add_argument("--datasets", nargs="+", default=sorted(CTR_DATASETS), choices=sorted(CTR_DATASETS))
    args = ap.parse_args(argv)
    for name in args.datasets:
        m = export(name, args.data_root, args.out)
        print(f"{name}: {m['sizes']} -> {args.out / name}")


if __name__ == "__main__":
    main()
