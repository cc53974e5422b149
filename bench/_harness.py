"""The scenario registry types and the timing loop.

A :class:`Scenario` names a job ("run a pipeline over N items") and the contenders that do it:
one of them is the reference the others are compared with. A contender's loader returns a
:data:`Job`, an async function that does the whole job once on ``n`` items and returns a
result that is compared with the scenario's expected value, so that no contender can be timed
doing nothing.

How a measurement is taken (see :func:`run_scenario`):

- each measurement runs in a fresh event loop (``trio.run`` or ``asyncio.run``) and times only
  the job inside it with ``time.perf_counter_ns()``; starting and closing the loop is not timed;
- the garbage collector stays enabled, as in a real program; ``gc.collect()`` runs before every
  measurement, outside the timed part, so that no contender pays for another's garbage;
- rounds are interleaved: a round runs every contender once, and the order rotates from round
  to round; the first round is a warm-up and is discarded;
- the reported figure is the median over the rounds, per item (or per run, for a scenario whose
  "items" are whole runs), in the scenario's :data:`Unit`.

A scenario may check results its own way (``check``: for instance, a merge's items arrive in
any interleaving) and may state the ideal time of its job (``ideal_ns``: for instance, the
time a concurrent map over simulated I/O would take with no overhead at all), which the report
turns into an "x ideal" ratio, and may derive :class:`Ratio` figures from its contenders'
medians (for instance a sweep's growth from its narrowest to its widest point, or a per-stage
cost as a ratio of differences), each with its own goal. Peak memory is measured apart, untimed, by
:mod:`bench._memory`.

A contender that cannot run in this interpreter (a peer that pins an older trio) may load an
:class:`ExternalJob` instead of a :data:`Job`: each measurement is then taken by another
process, the same way (a fresh event loop per measurement, only the job timed, inside that
loop), and reported back; the rounds stay interleaved with the in-process contenders.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar, cast

import trio

Job = Callable[[int], Awaitable[object]]
"""Runs the scenario's job once on ``n`` items; returns what was computed, for checking."""

Loop = Literal["trio", "asyncio"]
Status = Literal["ok", "skipped", "failed"]
Unit = Literal["ns/item", "us/item", "us/run"]
"""How a scenario's figures are shown: the samples are always nanoseconds for the whole job,
divided by the job's items (for "us/run", each item of the job is one whole run)."""

UNIT_SCALE: dict[Unit, float] = {"ns/item": 1.0, "us/item": 1_000.0, "us/run": 1_000.0}
"""Nanoseconds per unit."""

Check = Callable[[object, object], str | None]
"""``check(got, expected)``: None when the result is right, else what is wrong with it."""

Kind = Literal["beluga", "peer", "baseline"]
"""What a contender is: beluga_trio itself, a peer library, or a baseline (hand-written code,
trio's own ``as_safe_channel``), derived from its label and note (see :func:`kind_of`)."""


def kind_of(label: str, note: str) -> Kind:
    """A contender's kind: its label starts with "beluga", or its note with "peer"."""
    if label.startswith("beluga"):
        return "beluga"
    if note.startswith("peer"):
        return "peer"
    return "baseline"


class ExternalJob(ABC):
    """A job measured in another process: each :meth:`measure` runs it once there, in a fresh
    event loop, timed inside that loop, and returns (elapsed ns, result)."""

    @property
    @abstractmethod
    def note(self) -> str:
        """Where the job runs (for instance "separate env, trio 0.21.0"), added to the row."""

    @abstractmethod
    def measure(self, n: int) -> tuple[int, object]:
        """Run the job once on ``n`` items in the other process; raise if it failed there."""

    @abstractmethod
    def close(self) -> None:
        """Stop the other process; called once, after the last measurement."""


class SkipContenderError(Exception):
    """Raised by a loader when its contender cannot run here (an optional peer is missing)."""


@dataclass(frozen=True)
class Contender:
    """One way of doing a scenario's job."""

    label: str
    load: Callable[[], Job | ExternalJob]
    """Imports what the contender needs and returns its job; raises SkipContenderError."""
    loop: Loop = "trio"
    goal: float | None = None
    """The contender meets its goal when its median is at most ``goal`` times the reference's."""
    note: str = ""


@dataclass(frozen=True)
class Ratio:
    """A figure derived from a scenario's medians (ns per item), each taken from one run with
    the rounds interleaved::

          median(numerator) - median(numerator_base)
        ----------------------------------------------
        median(denominator) - median(denominator_base)

    where a base that is None counts as 0: with no bases, plainly one row's median over
    another's (a sweep's widest point over its narrowest, beluga over hand-written at the same
    point); with bases, a ratio of increments (what the stages added in a depth sweep cost
    beluga against what they cost bare code). None when a row did not run or the denominator
    is not positive (the increment drowned in noise).
    """

    label: str
    numerator: str
    denominator: str
    numerator_base: str | None = None
    denominator_base: str | None = None
    goal: float | None = None
    """The ratio meets its goal when it is at most ``goal``."""

    @property
    def labels(self) -> tuple[str, ...]:
        """The contender labels the ratio reads."""
        named = (self.numerator, self.numerator_base, self.denominator, self.denominator_base)
        return tuple(label for label in named if label is not None)

    @property
    def formula(self) -> str:
        """How the ratio is computed, in the contenders' labels."""

        def side(label: str, base: str | None) -> str:
            return f"[{label}]" if base is None else f"([{label}] - [{base}])"

        numerator = side(self.numerator, self.numerator_base)
        return f"{numerator} / {side(self.denominator, self.denominator_base)}"

    def value(self, median: Callable[[str], float | None]) -> float | None:
        """The ratio, from ``median(label)`` (ns per item, None when the row did not run)."""

        def side(label: str, base: str | None) -> float | None:
            top = median(label)
            bottom = 0.0 if base is None else median(base)
            return None if top is None or bottom is None else top - bottom

        numerator = side(self.numerator, self.numerator_base)
        denominator = side(self.denominator, self.denominator_base)
        if numerator is None or denominator is None or denominator <= 0:
            return None
        return numerator / denominator


@dataclass(frozen=True)
class Scenario:
    """A job, the contenders that do it, and the one the others are compared with."""

    name: str
    description: str
    items: int
    smoke_items: int
    reference: str
    """The label of the reference contender."""
    contenders: tuple[Contender, ...]
    expected: Callable[[int], object]
    """The correct result of the job for ``n`` items (computed once, outside the timing)."""
    check: Check | None = None
    """Compares a result with ``expected(n)`` (untimed); default: equality."""
    unit: Unit = "ns/item"
    ideal_ns: Callable[[int], float] | None = None
    """The ideal wall time of the whole job for ``n`` items, in ns, when the job has one."""
    ideal_note: str = ""
    """How the ideal is computed, for the report (e.g. "items x latency / concurrency")."""
    ratios: tuple[Ratio, ...] = ()
    """Figures derived from the contenders' medians, reported after the rows."""

    def __post_init__(self) -> None:
        labels = [c.label for c in self.contenders]
        if len(set(labels)) != len(labels):
            raise ValueError(f"{self.name}: contender labels must be unique: {labels}")
        names = [r.label for r in self.ratios]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: ratio labels must be unique: {names}")
        for r in self.ratios:
            unknown = [label for label in r.labels if label not in labels]
            if unknown:
                raise ValueError(f"{self.name}: ratio {r.label!r} reads no contender {unknown}")
        if self.reference not in labels:
            raise ValueError(f"{self.name}: reference {self.reference!r} is not a contender")
        for c in self.contenders:
            if c.label == self.reference and c.goal is not None:
                raise ValueError(f"{self.name}: the reference cannot have a goal")


@dataclass
class ContenderResult:
    """What happened to one contender in one scenario."""

    label: str
    loop: Loop
    goal: float | None
    note: str
    items: int
    status: Status = "ok"
    reason: str = ""
    samples_ns: list[int] = field(default_factory=list[int])
    """Wall time of each timed round (warm-up excluded), for the whole job, in nanoseconds."""

    @property
    def kind(self) -> Kind:
        return kind_of(self.label, self.note)

    def _per_item(self, total_ns: float) -> float:
        return total_ns / self.items

    @property
    def median(self) -> float | None:
        """Median over the rounds, ns per item; None unless the contender ran."""
        if self.status != "ok" or not self.samples_ns:
            return None
        return self._per_item(statistics.median(self.samples_ns))

    @property
    def fastest(self) -> float | None:
        if self.status != "ok" or not self.samples_ns:
            return None
        return self._per_item(min(self.samples_ns))

    @property
    def slowest(self) -> float | None:
        if self.status != "ok" or not self.samples_ns:
            return None
        return self._per_item(max(self.samples_ns))


@dataclass
class ScenarioResult:
    name: str
    description: str
    items: int
    rounds: int
    reference: str
    contenders: list[ContenderResult]
    unit: Unit = "ns/item"
    ideal_ns_per_item: float | None = None
    ideal_note: str = ""
    ratios: tuple[Ratio, ...] = ()

    def derived(self, ratio: Ratio) -> float | None:
        """The value of one of the scenario's ratios in this run."""
        return ratio.value(lambda label: self.result(label).median)

    def derived_goal_met(self, ratio: Ratio) -> bool | None:
        value = self.derived(ratio)
        if ratio.goal is None or value is None:
            return None
        return value <= ratio.goal

    def in_unit(self, ns_per_item: float | None) -> float | None:
        """A figure in ns per item, converted to the scenario's unit."""
        return None if ns_per_item is None else ns_per_item / UNIT_SCALE[self.unit]

    def ratio_to_ideal(self, label: str) -> float | None:
        """The contender's median divided by the ideal time, when the scenario has one."""
        mine = self.result(label).median
        ideal = self.ideal_ns_per_item
        if mine is None or ideal is None or ideal <= 0:
            return None
        return mine / ideal

    def result(self, label: str) -> ContenderResult:
        for c in self.contenders:
            if c.label == label:
                return c
        raise KeyError(label)

    def ratio(self, label: str) -> float | None:
        """The contender's median divided by the reference's median."""
        mine = self.result(label).median
        ref = self.result(self.reference).median
        if mine is None or ref is None or ref <= 0:
            return None
        return mine / ref

    def best_peer(self) -> ContenderResult | None:
        """The peer with the lowest median, among the peers that ran; None if none did."""
        ran = [c for c in self.contenders if c.kind == "peer" and c.median is not None]
        return min(ran, key=lambda c: c.median or 0.0, default=None)

    def ratio_to_best_peer(self, label: str) -> float | None:
        """A beluga contender's median divided by the best peer's; None for other rows."""
        mine = self.result(label)
        peer = self.best_peer()
        if mine.kind != "beluga" or mine.median is None or peer is None or not peer.median:
            return None
        return mine.median / peer.median

    def goal_met(self, label: str) -> bool | None:
        goal = self.result(label).goal
        ratio = self.ratio(label)
        if goal is None or ratio is None:
            return None
        return ratio <= goal


async def _timed(job: Job, n: int) -> tuple[int, object]:
    # Runs inside the event loop: only the job is timed, not starting or closing the loop.
    start = time.perf_counter_ns()
    result = await job(n)
    return time.perf_counter_ns() - start, result


def measure(loop: Loop, job: Job | ExternalJob, n: int) -> tuple[int, object]:
    """Run ``job`` once on ``n`` items in a fresh event loop; return (elapsed ns, result)."""
    if isinstance(job, ExternalJob):
        return job.measure(n)
    if loop == "trio":
        return trio.run(_timed, job, n)
    return asyncio.run(_timed(job, n))


def _describe_mismatch(got: object, expected: object) -> str:
    text = repr(got)
    if isinstance(got, list) and isinstance(expected, list):
        got_list = cast("list[object]", got)
        expected_list = cast("list[object]", expected)
        if len(got_list) != len(expected_list):
            return f"{len(got_list)} items instead of {len(expected_list)}"
        for i, (g, e) in enumerate(zip(got_list, expected_list, strict=True)):
            if g != e:
                return f"item {i} is {g!r}, expected {e!r}"
    return f"got {text[:60]}{'...' if len(text) > 60 else ''}"


def check_result(check: Check | None, got: object, expected: object) -> str | None:
    """None when ``got`` is right; else a short description of what is wrong."""
    if check is not None:
        return check(got, expected)
    if got != expected:
        return _describe_mismatch(got, expected)
    return None


def run_scenario(
    scenario: Scenario,
    *,
    items: int,
    rounds: int,
    warmup: int = 1,
    progress: Callable[[str], None] = lambda _: None,
) -> ScenarioResult:
    """Measure every contender of ``scenario``; see the module's docstring for the method."""
    results = [
        ContenderResult(label=c.label, loop=c.loop, goal=c.goal, note=c.note, items=items)
        for c in scenario.contenders
    ]
    active: list[tuple[Contender, Job | ExternalJob, ContenderResult]] = []
    for contender, result in zip(scenario.contenders, results, strict=True):
        try:
            job = contender.load()
        except SkipContenderError as exc:
            result.status, result.reason = "skipped", str(exc)
        except Exception as exc:  # noqa: BLE001 - any failure is reported in the table
            result.status, result.reason = "failed", f"loading: {type(exc).__name__}: {exc}"
        else:
            active.append((contender, job, result))
            if isinstance(job, ExternalJob):
                result.note = "; ".join(part for part in (result.note, job.note) if part)
    external = [job for _, job, _ in active if isinstance(job, ExternalJob)]
    try:
        _run_rounds(scenario, active, items=items, rounds=rounds, warmup=warmup, progress=progress)
    finally:
        for job in external:
            job.close()

    for result in results:
        if result.status == "ok":
            # A contender that ran must have a sample per round; anything else is a harness bug.
            assert len(result.samples_ns) == rounds, result
    return ScenarioResult(
        name=scenario.name,
        description=scenario.description,
        items=items,
        rounds=rounds,
        reference=scenario.reference,
        contenders=results,
        unit=scenario.unit,
        ideal_ns_per_item=(None if scenario.ideal_ns is None else scenario.ideal_ns(items) / items),
        ideal_note=scenario.ideal_note,
        ratios=scenario.ratios,
    )


def _run_rounds(
    scenario: Scenario,
    active: list[tuple[Contender, Job | ExternalJob, ContenderResult]],
    *,
    items: int,
    rounds: int,
    warmup: int,
    progress: Callable[[str], None],
) -> None:
    """The interleaved rounds; a contender that raises or computes a wrong result is dropped."""
    expected = scenario.expected(items)
    for round_no in range(-warmup, rounds):
        if not active:
            break
        shift = round_no % len(active)
        order = active[shift:] + active[:shift]
        for contender, job, result in order:
            gc.collect()
            try:
                elapsed, got = measure(contender.loop, job, items)
            except Exception as exc:  # noqa: BLE001 - any failure is reported in the table
                result.status, result.reason = "failed", f"raised {type(exc).__name__}: {exc}"
                active = [a for a in active if a[2] is not result]
                continue
            wrong = check_result(scenario.check, got, expected)
            if wrong is not None:
                result.status = "failed"
                result.reason = f"wrong result: {wrong}"
                active = [a for a in active if a[2] is not result]
                continue
            if round_no >= 0:
                result.samples_ns.append(elapsed)
        progress(f"round {round_no + 1}/{rounds}" if round_no >= 0 else "warm-up")


class _Named(Protocol):
    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=_Named)


def select(scenarios: Sequence[N], only: str | None) -> list[N]:
    """The scenarios whose name contains ``only`` (case-insensitive); all when it is None."""
    if only is None:
        return list(scenarios)
    needle = only.casefold()
    return [s for s in scenarios if needle in s.name.casefold()]
