"""Session-based models: anonymous sessions, scored from the prefix alone (SKNN, V-SKNN, STAN)."""
