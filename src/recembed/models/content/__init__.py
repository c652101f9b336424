"""Content-aware models: item vectors (text, image, audio) next to or in place of IDs; all rank cold items."""
