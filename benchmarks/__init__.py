"""Benchmarks of sweep cost and batched generation: `make bench` (docs/PERFORMANCE.md)."""
