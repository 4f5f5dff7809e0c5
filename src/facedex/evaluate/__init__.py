"""Evaluation protocols: LFW verification, 1:N identification, speed."""
