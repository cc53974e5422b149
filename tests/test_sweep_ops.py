"""zip, chain, flat_map, switch_map, scan, distinct_until_changed, catch, retry, debounce and
throttle, cancelled at every scheduler step (``cancel_sweep``), with the checks of
``test_sweep_stages.py``: every producer opened (inner streams included) ran its cleanup and
never ran ahead of its consumer, the items delivered are a duplicate-free prefix of the
expected ones (per source for the concurrent flat_map), and a run whose code after the loop ran
got every item.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing
from test_sweep_stages import Case, Harness, add_async, src, sweep_case

import beluga_trio as bt
from beluga_trio.testing import ScriptedError


async def zip_(h: Harness) -> None:
    await h.consume(bt.zip(h.source([0, 1, 2]), h.source([10, 11, 12, 13])))


async def zip_sync(h: Harness) -> None:
    await h.consume(bt.zip(bt.from_iterable("abc"), src(h, 5)))


async def chain(h: Harness) -> None:
    await h.consume(bt.chain(h.source([0, 1]), h.source([2, 3])))


async def chain_error(h: Harness) -> None:
    await h.consume(bt.chain(h.source([0, 1]), h.source([2, 3], raise_before=1)))


async def flat_map(h: Harness) -> None:
    await h.consume(src(h, 3).flat_map(lambda x: h.source([x * 10, x * 10 + 1])))


async def flat_map_concurrent(h: Harness) -> None:
    def inner(x: int) -> bt.Stream[int]:
        return h.source([x * 100, x * 100 + 1])

    await h.consume(src(h, 3).flat_map(inner, concurrency=2))


async def flat_map_inner_error(h: Harness) -> None:
    def inner(x: int) -> bt.Stream[int]:
        return h.source([x * 10, x * 10 + 1], raise_before=1 if x == 1 else None)

    await h.consume(src(h, 3).flat_map(inner))


async def switch_map(h: Harness) -> None:
    def inner(x: int) -> bt.Stream[int]:
        return h.source([x * 100, x * 100 + 1, x * 100 + 2], delay=0.4)

    await h.consume(src(h, 3, delay=1).switch_map(inner))


async def scan_sync(h: Harness) -> None:
    sums: bt.Stream[int] = src(h).scan(lambda a, x: a + x, 0)
    await h.consume(sums)


async def scan_async(h: Harness) -> None:
    sums: bt.Stream[int] = src(h).scan(add_async, 0)
    await h.consume(sums)


async def distinct(h: Harness) -> None:
    await h.consume(h.source([0, 0, 1, 1, 1, 2]).distinct_until_changed())


async def catch(h: Harness) -> None:
    await h.consume(src(h, 4, raise_before=2).catch(lambda _: h.source([100, 101])))


async def retry_gives_up(h: Harness) -> None:
    await h.consume(src(h, 2, raise_before=0).retry(3, backoff=1))


async def retry_after_an_item(h: Harness) -> None:
    await h.consume(src(h, 3, raise_before=2).retry(3))


async def debounce(h: Harness) -> None:
    await h.consume(src(h, 4, delay=1).debounce(0.5))


async def debounce_bursts(h: Harness) -> None:
    await h.consume(src(h, 4, delay=0.1).debounce(0.5))


async def throttle_latest(h: Harness) -> None:
    await h.consume(src(h, 4, delay=0.4).throttle(1))


async def throttle_first(h: Harness) -> None:
    await h.consume(src(h, 4, delay=0.4).throttle(1, keep="first"))


CASES: dict[str, Case] = {
    "zip": Case(zip_, [(0, 10), (1, 11), (2, 12)]),
    "zip-sync": Case(zip_sync, [("a", 0), ("b", 1), ("c", 2)]),
    "chain": Case(chain, [0, 1, 2, 3]),
    "chain-error": Case(chain_error, [0, 1, 2], error=ScriptedError),
    "flat-map": Case(flat_map, [0, 1, 10, 11, 20, 21]),
    "flat-map-concurrent": Case(flat_map_concurrent, [0, 1, 100, 101, 200, 201], "per-source"),
    "flat-map-inner-error": Case(flat_map_inner_error, [0, 1, 10], error=ScriptedError),
    "switch-map": Case(switch_map, [0, 1, 100, 101, 200, 201, 202]),
    "scan-sync": Case(scan_sync, [0, 0, 1, 3, 6]),
    "scan-async": Case(scan_async, [0, 0, 1, 3, 6]),
    "distinct": Case(distinct, [0, 1, 2]),
    "catch": Case(catch, [0, 1, 100, 101]),
    "retry-gives-up": Case(retry_gives_up, [], error=ScriptedError),
    "retry-after-an-item": Case(retry_after_an_item, [0, 1], error=ScriptedError),
    "debounce": Case(debounce, [0, 1, 2, 3]),
    "debounce-bursts": Case(debounce_bursts, [3]),
    "throttle-latest": Case(throttle_latest, [0, 2, 3]),
    "throttle-first": Case(throttle_first, [0, 3]),
}


@pytest.mark.parametrize("name", sorted(CASES))
async def test_every_operator_survives_a_cancellation_at_every_step(
    name: str, autojump_clock: trio.testing.MockClock
) -> None:
    await sweep_case(CASES[name])
