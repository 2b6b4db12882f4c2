"""Benchmarks printed by ``nox -s bench``: figures to read, not tests to pass."""
