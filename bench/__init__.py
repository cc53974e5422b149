"""Benchmarks of beluga_trio against hand-written trio code and its peers.

Run ``python -m bench`` (``--help`` for the options; ``make bench`` also writes the docs page).
The harness lives in :mod:`bench._harness`, the scenarios in :mod:`bench.scenarios`, the table
and the JSON file in :mod:`bench._report`, the plot in :mod:`bench._plot`, the page
docs/performance.md in :mod:`bench.docs`; slurry, which needs an older trio, runs in its own
interpreter through :mod:`bench._slurry`.
"""
