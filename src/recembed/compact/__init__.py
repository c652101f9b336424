"""Compact representations (issue #22 [Compact]): quantised embedding tables and indexes (:mod:`.quantize`, the
``compressed`` model in :mod:`.model`, ``recembed compress`` in :mod:`.compress`) and multi-vector retrieval with
MUVERA fixed dimensional encodings and CRISP-lite pruning (:mod:`.muvera`). See docs/compact.md."""
