"""Compression stages: structured pruning (``prune``) and quantization."""
