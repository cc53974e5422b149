"""Peak memory of a job at two sizes: does it grow with the length of the stream?

A :class:`MemoryScenario` runs each contender's job once at a small and once at a large size
(100k and 1M items by default), each in a fresh event loop, with :mod:`tracemalloc` tracing
only while the job runs: tracing starts inside the loop, just before the job, and the peak is
read just after it, so the loop's own start-up is not counted. The figure is the peak of the
memory allocated by Python during the job (``tracemalloc``'s peak minus what was traced when
the job began). Tracing slows allocation several times over, so these runs are never timed
for the table; their wall time is reported only to say what the measurement costs.

The ratio large/small is the measure: a job whose buffers are bounded stays near 1.0, one
that holds items for a lagging consumer grows with the length (10x the items, ~10x the
memory). A contender's ``goal`` is the largest ratio it may show.

A scenario that names a ``per`` unit and a ``reference`` measures a cost per unit instead (for
instance the memory of one opening, with N openings held at once): its figures are the peaks
divided by N, and a contender's ``goal`` is the largest ratio of its figure at the large size
to the reference's; large/small then says whether the cost per unit stays flat.
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from bench._harness import (
    Check,
    Contender,
    ExternalJob,
    Job,
    Loop,
    SkipContenderError,
    Status,
    check_result,
)


@dataclass(frozen=True)
class MemoryScenario:
    """A job measured for peak memory at two sizes; the contenders that do it."""

    name: str
    description: str
    sizes: tuple[int, int]
    smoke_sizes: tuple[int, int]
    contenders: tuple[Contender, ...]
    expected: Callable[[int], object]
    check: Check | None = None
    per: str | None = None
    """The unit of N (e.g. "opening"): figures per unit, goals against the reference."""
    reference: str | None = None
    """The contender the others are compared with, for a scenario measured ``per`` unit."""

    def __post_init__(self) -> None:
        labels = [c.label for c in self.contenders]
        if len(set(labels)) != len(labels):
            raise ValueError(f"{self.name}: contender labels must be unique: {labels}")
        if (self.per is None) != (self.reference is None):
            raise ValueError(f"{self.name}: a reference and a unit ('per') go together")
        if self.reference is not None and self.reference not in labels:
            raise ValueError(f"{self.name}: reference {self.reference!r} is not a contender")
        small, large = self.sizes
        if not 0 < small < large:
            raise ValueError(f"{self.name}: sizes must grow: {self.sizes}")


@dataclass
class MemoryContenderResult:
    label: str
    loop: Loop
    goal: float | None
    note: str
    status: Status = "ok"
    reason: str = ""
    peak_bytes: dict[int, int] = field(default_factory=dict[int, int])
    """Peak traced memory of the job, by size."""
    seconds: dict[int, float] = field(default_factory=dict[int, float])
    """Wall time of the traced (slowed) run, by size: what the measurement costs."""


@dataclass
class MemoryResult:
    name: str
    description: str
    sizes: tuple[int, int]
    contenders: list[MemoryContenderResult]
    per: str | None = None
    reference: str | None = None

    def per_unit(self, label: str, n: int) -> float | None:
        """The peak at size ``n`` divided by ``n`` (bytes per unit); None if not measured."""
        peak = self.result(label).peak_bytes.get(n)
        return None if peak is None else peak / n

    def ratio(self, label: str) -> float | None:
        """Per unit at the large size, over the reference's; None without a reference."""
        if self.reference is None:
            return None
        large = self.sizes[1]
        mine = self.per_unit(label, large)
        ref = self.per_unit(self.reference, large)
        if mine is None or ref is None or ref <= 0 or self.result(label).status != "ok":
            return None
        return mine / ref

    def growth(self, label: str) -> float | None:
        """Peak at the large size divided by the peak at the small size (per unit, for a
        scenario measured per unit: 1.0 when each unit costs the same at both sizes)."""
        c = self.result(label)
        small, large = self.sizes
        if c.status != "ok" or small not in c.peak_bytes or large not in c.peak_bytes:
            return None
        growth = c.peak_bytes[large] / max(c.peak_bytes[small], 1)
        return growth if self.per is None else growth * small / large

    def goal_met(self, label: str) -> bool | None:
        """Growth <= goal; for a scenario measured per unit, ratio to the reference <= goal."""
        goal = self.result(label).goal
        measure = self.growth(label) if self.reference is None else self.ratio(label)
        if goal is None or measure is None:
            return None
        return measure <= goal

    def result(self, label: str) -> MemoryContenderResult:
        for c in self.contenders:
            if c.label == label:
                return c
        raise KeyError(label)


async def _traced(job: Job, n: int) -> tuple[int, object]:
    # Inside the loop: only what the job allocates counts, not the loop's own start-up.
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        result = await job(n)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - base, result


def measure_peak(loop: Loop, job: Job, n: int) -> tuple[int, object]:
    """Run ``job`` once on ``n`` items in a fresh event loop; return (peak bytes, result)."""
    if loop == "trio":
        return trio.run(_traced, job, n)
    return asyncio.run(_traced(job, n))


def run_memory_scenario(
    scenario: MemoryScenario,
    *,
    sizes: tuple[int, int],
    progress: Callable[[str], None] = lambda _: None,
) -> MemoryResult:
    """Measure every contender's peak memory at both sizes (once each, untimed)."""
    results: list[MemoryContenderResult] = []
    for contender in scenario.contenders:
        result = MemoryContenderResult(
            label=contender.label, loop=contender.loop, goal=contender.goal, note=contender.note
        )
        results.append(result)
        try:
            job = contender.load()
        except SkipContenderError as exc:
            result.status, result.reason = "skipped", str(exc)
            continue
        except Exception as exc:  # noqa: BLE001 - any failure is reported in the table
            result.status, result.reason = "failed", f"loading: {type(exc).__name__}: {exc}"
            continue
        if isinstance(job, ExternalJob):
            job.close()
            result.status, result.reason = "skipped", "peak memory is traced in this process only"
            continue
        for n in sizes:
            gc.collect()
            started = time.perf_counter()
            try:
                peak, got = measure_peak(contender.loop, job, n)
            except Exception as exc:  # noqa: BLE001 - any failure is reported in the table
                result.status, result.reason = "failed", f"raised {type(exc).__name__}: {exc}"
                break
            result.seconds[n] = time.perf_counter() - started
            wrong = check_result(scenario.check, got, scenario.expected(n))
            if wrong is not None:
                result.status, result.reason = "failed", f"wrong result: {wrong}"
                break
            result.peak_bytes[n] = peak
            progress(f"{contender.label}: N={n:,}, {result.seconds[n]:.1f} s")
    return MemoryResult(
        name=scenario.name,
        description=scenario.description,
        sizes=sizes,
        contenders=results,
        per=scenario.per,
        reference=scenario.reference,
    )
