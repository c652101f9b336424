"""Reusable test material: planted-signal fixtures and the conformance suite every model passes."""
