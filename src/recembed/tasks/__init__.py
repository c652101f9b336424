"""Task-specific uses of fitted representations ([Tasks]): relevance cut-offs (:mod:`.cutoff`)."""
