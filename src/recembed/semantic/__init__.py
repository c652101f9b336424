"""Semantic IDs: tokenizers that turn item vectors into short code tuples, and the codes themselves."""

from .ids import SemanticIds
from .tokenize import (
    METHODS,
    combine_vectors,
    load_vector_sources,
    make_tokenizer,
    tag_vectors,
    tokenize,
    vectors_from_column,
    vectors_from_npy,
    vectors_from_run,
)

__all__ = ["METHODS", "SemanticIds", "combine_vectors", "load_vector_sources", "make_tokenizer", "tag_vectors",
           "tokenize", "vectors_from_column", "vectors_from_npy", "vectors_from_run"]
