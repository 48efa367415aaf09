"""Benchmarks that print figures a reader can compare (see each script's docstring)."""
