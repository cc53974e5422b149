"""The registry: every scenario the benchmark knows, in the order they run and are printed.

To add one, write a module here that builds a :class:`bench._harness.Scenario` (timed) or a
:class:`bench._memory.MemoryScenario` (peak memory, untimed) and list it below. Timed
scenarios run first, then the memory ones.
"""

from __future__ import annotations

from bench._harness import Scenario
from bench._memory import MemoryScenario
from bench.scenarios import (
    buffer,
    concurrent_map,
    fan_out,
    fan_out_width,
    first_item,
    inline_chain,
    llm_stream,
    map_depth,
    memory,
    merge,
    merge_width,
    openings,
    operators,
    producer,
    redis,
    sse_server,
)

SCENARIOS: tuple[Scenario | MemoryScenario, ...] = (
    inline_chain.SCENARIO,
    map_depth.SCENARIO,
    producer.SCENARIO,
    buffer.SCENARIO,
    merge.SCENARIO,
    merge_width.SCENARIO,
    fan_out.SCENARIO,
    fan_out_width.SCENARIO,
    concurrent_map.SCENARIO,
    concurrent_map.AT_100,
    concurrent_map.AT_1000,
    first_item.SCENARIO,
    llm_stream.SCENARIO,
    sse_server.SCENARIO,
    redis.SCENARIO,
    *operators.SCENARIOS,
    memory.SCENARIO,
    openings.SCENARIO,
)
