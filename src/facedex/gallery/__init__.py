"""Gallery storage: the SQLite store (source of truth) and the derived vector index."""
