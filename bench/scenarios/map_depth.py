"""Scenario "fused map depth": ``from_iterable(range(N))`` and D synchronous ``.map(abs)``
stages, collected, for D = 0, 1, 2, 4, 8, against a bare C ``map`` chain of the same depth,
``list(map(abs, map(abs, ... range(N))))``, all in one scenario (the same interleaved rounds).

``abs`` of a non-negative int returns that int: no allocation, so a stage of the C chain costs
little more than the ``map`` iterator's own step, and the comparison is about what beluga adds
around each stage. Every job returns ``list(range(N))``. Depth 0 is each chain's fixed part
(beluga: the source, the fused driver, its schedule-point budget, the list; C: ``list(range(N))``).

The per-stage figure (issue 18: goal at most 1.1x a bare C chain per stage) is a ratio of
increments over depth 0::

    per stage at depth D = (beluga(D) - beluga(0)) / (C(D) - C(0))

where each term is a row's median per item. Subtracting depth 0 leaves what the D stages
themselves cost, so the ratio is beluga's cost of a stage over the C chain's, averaged over D
stages. The goal is on D = 8: the most stages, the largest increments, the least noise (an
increment of one stage is some 30-50 ns per item, near the spread of the rounds on a busy
machine; D = 1, 2 and 4 are shown without a goal). Reference: the C chain at depth 8.
"""

from __future__ import annotations

from collections.abc import Iterable

import beluga_trio as bt
from bench._harness import Contender, Job, Ratio, Scenario

DEPTHS = (0, 1, 2, 4, 8)
GOAL_DEPTH = 8

stage = abs


def c_label(depth: int) -> str:
    return f"bare C chain, list() of {depth} x map(abs)"


def beluga_label(depth: int) -> str:
    return f"beluga {depth} x .map(abs), .collect()"


def expected(n: int) -> list[int]:
    return list(range(n))


def load_beluga(depth: int) -> Job:
    async def job(n: int) -> list[int]:
        s = bt.from_iterable(range(n))
        for _ in range(depth):
            s = s.map(stage)
        return await s.collect()

    return job


class _Depth:
    """One depth's loaders (methods, not lambdas in a loop: each keeps its own depth)."""

    def __init__(self, depth: int) -> None:
        self.depth = depth

    async def c_chain_job(self, n: int) -> list[int]:
        # No await on purpose: the bare chain is the floor (a method, so flake8-async's "could
        # be sync" check stays off it, as for bench.scenarios._common.Sources).
        items: Iterable[int] = range(n)
        for _ in range(self.depth):
            items = map(stage, items)
        return list(items)

    def c_chain(self) -> Job:
        return self.c_chain_job

    def beluga(self) -> Job:
        return load_beluga(self.depth)


_depths = [_Depth(d) for d in DEPTHS]
base = DEPTHS[0]

SCENARIO = Scenario(
    name="fused map depth",
    description=(
        "from_iterable(range(N)) + D sync .map(abs) stages, collected, D = 0, 1, 2, 4, 8;"
        " per stage = (beluga(D) - beluga(0)) / (C(D) - C(0)); reference: the bare C chain"
        f" list(map(abs, ...)) at depth {GOAL_DEPTH}"
    ),
    items=500_000,
    smoke_items=2_000,
    reference=c_label(GOAL_DEPTH),
    contenders=(
        *(Contender(c_label(d.depth), d.c_chain) for d in _depths),
        *(Contender(beluga_label(d.depth), d.beluga) for d in _depths),
    ),
    expected=expected,
    ratios=tuple(
        Ratio(
            f"beluga / C, per stage at depth {d}",
            beluga_label(d),
            c_label(d),
            numerator_base=beluga_label(base),
            denominator_base=c_label(base),
            goal=1.1 if d == GOAL_DEPTH else None,
        )
        for d in DEPTHS
        if d != base
    ),
)
