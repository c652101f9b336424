"""Generative retrieval over semantic IDs (TIGER) and semantic-ID item embeddings."""
