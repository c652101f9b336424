"""Item content encoders: text (local MiniLM sentence-transformer, TF-IDF + SVD fallback), precomputed
vectors, categorical / tag / numeric fields, and :class:`ItemFeatures`, the named modalities a content
model consumes (each an ``(I, d) float32`` matrix with a per-item "present" mask)."""

from .cache import VectorCache, text_hash
from .features import ItemFeatures, Modality, attach_features, features_from_table
from .fields import encode_categorical, encode_numeric, encode_tags
from .text import SentenceEncoder, TfidfEncoder, minilm_path
from .vectors import load_vectors

__all__ = [
    "ItemFeatures", "Modality", "SentenceEncoder", "TfidfEncoder", "VectorCache", "attach_features",
    "encode_categorical",
    "encode_numeric", "encode_tags", "features_from_table", "load_vectors", "minilm_path", "text_hash",
]
