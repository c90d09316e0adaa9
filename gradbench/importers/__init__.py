"""Readers of other harnesses' results, one module each: asv result folders (asv.py) and pytest-benchmark
JSON (pytest_benchmark.py). Each turns its source into records of the one schema (record.py)."""
