"""Benchmarks: scripts that print JSON figures (run them as ``python bench/NAME.py``)."""
