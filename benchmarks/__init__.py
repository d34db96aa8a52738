"""Benchmarks: this package beside the tools people use, measured on one machine in one run.

``python benchmarks/run.py`` (or ``python -m benchmarks.run``) runs the rows of the benchmark
document and writes it to ``benchmarks/results/<date>-<commit>.md``; see ``benchmarks/README.md``.
Shared helpers are in :mod:`benchmarks.common`.
"""
