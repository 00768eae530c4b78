"""Benchmarks: `make bench` (CPU, against baselines) and bench/gpu.py (lent GPU)."""
