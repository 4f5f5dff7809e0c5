"""The facedex command line."""
