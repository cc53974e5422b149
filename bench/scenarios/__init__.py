"""The registry: every scenario the benchmark knows, in the order they run and are printed.

To add one, write a module here that builds a :class:`bench._harness.Scenario` and list it
below.
"""

from __future__ import annotations

from bench._harness import Scenario
from bench.scenarios import inline_chain, producer

SCENARIOS: tuple[Scenario, ...] = (
    inline_chain.SCENARIO,
    producer.SCENARIO,
)
