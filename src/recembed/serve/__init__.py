"""Serving: model bundles, vector indexes, an HTTP-free recommendation service, the FastAPI app and its page,
and batch export.

* :mod:`.bundle` -- the bundle directory (``manifest.json`` with checksums, safetensors, Parquet), written
  atomically; :mod:`.bundle_read` verifies and loads it; :mod:`.signing` -- the optional HMAC-SHA256 signature
  of the manifest (checksums catch corruption, the signature tampering);
* :mod:`.index` -- exact and FAISS inner-product indexes behind one interface (:mod:`.index_base`), with filters;
* :mod:`.content` -- the content encoder of a bundle (TF-IDF / MiniLM) and the per-model rule that turns a new
  item's content into an item vector;
* :mod:`.ranker` -- the optional ranking stage of a bundle (``bundle --ranker``): the ranker, its feature tables,
  and the service's re-ranking of the retriever's candidates;
* :mod:`.service` -- :class:`~.service.RecService`, everything the HTTP layer calls (no HTTP in it);
* :mod:`.app` -- the FastAPI app (bundle loaded in ``lifespan``), API key, error answers, offline docs, the page;
* :mod:`.middleware` -- body limit, Prometheus metrics and the fast path of user recommendations;
* :mod:`.export` -- top-k for every user into Parquet, in bounded memory.

Nothing here is imported by the rest of the package; FastAPI, uvicorn and faiss are imported lazily (the
``serve`` extra).
"""

DEFAULT_CANDIDATES = 200
"""Bundles with a ranker: items the retriever proposes per request unless the bundle / serve / request says."""
MAX_CANDIDATES = 1000
"""Most candidates a request may ask the retriever for (``candidates`` query parameter, ``--candidates``). Here, not
in :mod:`.ranker`, so that the CLI reads them without importing the ranking stage."""
