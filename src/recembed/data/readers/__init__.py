"""Readers for the file formats recommender data comes in. Each returns a :class:`Dataset`.

Every reader fails with a :class:`~recembed.errors.DataError` naming file, line and field.
"""

from .delimited import read_delimited, read_token_lines
from .formats import (
    read_adjacency_split,
    read_csv_interactions,
    read_json_sequences,
    read_mmrec,
    read_parquet_interactions,
    read_recbole_atomic,
    read_sequence_file,
    read_triples_split,
    read_unisrec_split,
)
from .own import read_own

__all__ = [
    "read_adjacency_split",
    "read_csv_interactions",
    "read_delimited",
    "read_json_sequences",
    "read_mmrec",
    "read_own",
    "read_parquet_interactions",
    "read_recbole_atomic",
    "read_sequence_file",
    "read_token_lines",
    "read_triples_split",
    "read_unisrec_split",
]
