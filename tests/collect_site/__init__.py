"""The local test website for the collect tests (and the collect benchmark)."""
