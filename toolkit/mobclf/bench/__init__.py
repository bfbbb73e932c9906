"""Benchmarks of exported and eager models: variants, measurement in fresh processes, the report."""
