"""Benchmarks for buildhook's speed targets (issue 6): ``python -m bench [--quick]``."""
