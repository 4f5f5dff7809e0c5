"""Synthetic test videos and GIFs built from LFW stills (see synth.py)."""
