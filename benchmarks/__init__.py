"""gradbench's asv suite (bench_*.py); the pytest-benchmark suite lives in pytest_suite/."""
