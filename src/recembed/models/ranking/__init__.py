"""CTR rankers (the ranking stage): one model per file, on :mod:`.base` and :mod:`._layers`."""
