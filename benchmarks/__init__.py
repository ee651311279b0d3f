"""twopass benchmarks: `python -m benchmarks [--quick]` (see __main__.py and RESULTS.md)."""
