"""Benchmarks (``python -m retrieval benchmark`` / ``scripts/benchmark.py``).

Every figure is measured in the same run as its baseline and reported as a
ratio, so results from different machines can be compared.
"""
