"""Benchmarks of beluga_trio against hand-written trio code and its peers.

Run ``python -m bench`` (``--help`` for the options). The harness lives in
:mod:`bench._harness`, the scenarios in :mod:`bench.scenarios`, the table and the JSON file
in :mod:`bench._report`.
"""
