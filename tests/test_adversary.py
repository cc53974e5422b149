"""A model-based adversary: random pipelines over every stage, with user code that misbehaves
the way ordinary user code does, checked against a reference model (issue 10, CONTRACT.md).

hypothesis draws a pipeline (`Spec`): one or two sources (two are merged), a chain of stages
and a consumer. The sources are lists, async iterables or ``@bt.stream`` producers that fail,
time out under their own ``fail_after``, hold a cancel scope or a nursery across ``yield``
(deadlines fire and children fail while they are parked), hang, press Ctrl-C, and whose
``finally`` raises, awaits or presses Ctrl-C. Map and filter functions are sync or async,
sequential or concurrent, and raise, raise ``StopIteration``/``StopAsyncIteration``, return
an awaitable late, or press Ctrl-C (a real ``signal.raise_signal(SIGINT)``). Consumers read
everything, break, raise, are cancelled, poll with per-``anext`` timeouts shorter than a
call, or use a terminal operation or ``fan_out``. Time is virtual (``MockClock`` with
autojump), so every example runs in milliseconds.

The reference model (`Model`) runs the same pipeline on plain lists: what items arrive, in
which order, and which error ends the stream (as a symbol resolved after the run to the very
object user code raised). Where the order depends on timing (merge, unordered map, buffers
that drop) the model gives the set of possible items and errors instead. After every run:

- one error arrives as itself (``raised is original``); several all arrive (guarantee 1);
- ``KeyboardInterrupt`` arrives as itself, never grouped, never dropped (1, 10);
- every producer's ``finally`` ran before the ``async with`` exited, no task and no async
  generator is left (`beluga_trio.testing.no_leaks`), a cleanup error arrives (2);
- a cancelled consumer never sees a clean end (3); an error never ends the loop cleanly;
- nothing lost or duplicated across cancelled ``anext`` calls; polling makes progress (4, 7);
- every user function is called at most once per item, exactly once where lock-step (7);
- an error is a position: the items before it arrive, the items after it never (8);
- a producer's own scopes are its own (9); ``StopIteration`` becomes ``RuntimeError`` (10).

``make test`` runs a modest number of examples; ``BELUGA_ADVERSARY_EXAMPLES=2000`` runs more
(see docs/testing.md).
"""

# ruff: noqa: RUF100, RUF102

from __future__ import annotations

import dataclasses
import os
import signal
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import beluga_trio as bt
from beluga_trio.testing import no_leaks

EXAMPLES = int(os.environ.get("BELUGA_ADVERSARY_EXAMPLES", "300"))
# Shrinking a failure of this size takes minutes: only on request.
SHRINK = os.environ.get("BELUGA_ADVERSARY_SHRINK", "") == "1"
MAX_POLLS = 20_000  # a polling consumer that gets nothing after this many polls is livelocked


class BoomError(Exception):
    """An error user code raises on purpose."""


class CleanupError(Exception):
    """An error a producer's ``finally`` raises on purpose."""


class ConsumerError(Exception):
    """An error the consumer raises on purpose."""


# ---------------------------------------------------------------- symbols for expected errors


@dataclass(frozen=True)
class Err:
    """The very object user code raised under ``key`` (resolved after the run)."""

    key: str


@dataclass(frozen=True)
class Made:
    """An error the library makes: of type ``cls``, whose ``__cause__`` is ``cause`` if set."""

    cls: type[BaseException]
    cause: str | None = None


@dataclass(frozen=True)
class Group:
    """A group whose only member is the object raised under ``key`` (a nursery's error)."""

    key: str


@dataclass(frozen=True)
class Interrupt:
    """The `KeyboardInterrupt` a real SIGINT raised."""


@dataclass(frozen=True)
class Hang:
    """A producer hangs here; a downstream ``timeout`` turns it into `trio.TooSlowError`."""


Sym = Err | Made | Group | Interrupt | Hang


# ---------------------------------------------------------------- the run's event log


@dataclass
class Log:
    """What user code did in one run: calls per user function per item, producer starts and
    cleanups, every error it raised (by key), every SIGINT."""

    calls: Counter[tuple[str, object]] = field(default_factory=Counter[tuple[str, object]])
    entered: Counter[str] = field(default_factory=Counter[str])
    finalized: Counter[str] = field(default_factory=Counter[str])
    errors: dict[str, BaseException] = field(default_factory=dict[str, BaseException])
    interrupts: list[KeyboardInterrupt] = field(default_factory=list[KeyboardInterrupt])
    coroutines: list[Any] = field(default_factory=list[Any])
    channels: list[trio.MemoryReceiveChannel[int]] = field(
        default_factory=list[trio.MemoryReceiveChannel[int]]
    )
    ctrl_c: bool = False  # a Ctrl-C was pressed while trio's own code ran
    # Every object raised under a key: a retry runs the code again (errors holds the last).
    every_error: dict[str, list[BaseException]] = field(
        default_factory=dict[str, list[BaseException]]
    )

    def raise_(self, key: str, exc: BaseException) -> None:
        self.errors[key] = exc
        self.every_error.setdefault(key, []).append(exc)
        raise exc

    def sigint(self) -> None:
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt as exc:
            self.interrupts.append(exc)
            raise
        raise AssertionError("SIGINT did not raise KeyboardInterrupt here")

    def matches(self, raised: BaseException, sym: Sym) -> bool:
        if isinstance(sym, Err):
            return raised is self.errors.get(sym.key)
        if isinstance(sym, Made):
            if type(raised) is not sym.cls:
                return False
            return sym.cause is None or raised.__cause__ is self.errors.get(sym.cause)
        if isinstance(sym, Group):
            return (
                isinstance(raised, BaseExceptionGroup)
                and len(raised.exceptions) == 1  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]
                and raised.exceptions[0] is self.errors.get(sym.key)  # pyright: ignore[reportUnknownMemberType]
            )
        if isinstance(sym, Interrupt):
            return bool(self.interrupts) and raised is self.interrupts[0]
        return False

    def reachable(self, raised: BaseException, sym: Sym) -> bool:
        return any(self.matches(e, sym) for e in _reachable(raised)) or (
            isinstance(sym, Group)
            and any(e is self.errors.get(sym.key) for e in _reachable(raised))
        )


def _reachable(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        current = todo.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        if isinstance(current, BaseExceptionGroup):
            todo.extend(cast("BaseExceptionGroup[BaseException]", current).exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                todo.append(linked)  # noqa: PERF401
    return seen


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        group = cast("BaseExceptionGroup[BaseException]", exc)
        return [leaf for member in group.exceptions for leaf in _leaves(member)]
    return [exc]


# ---------------------------------------------------------------- specs hypothesis draws

SourceMode = Literal[
    "plain",
    "fail",
    "own_timeout",
    "own_timeout_from",
    "scope_across_yield",
    "nursery_child_fails",
    "child_generator_exit",
    "hang",
    "sigint",
]
Cleanup = Literal["none", "await", "await_shielded", "raise", "sigint"]


@dataclass(frozen=True)
class SourceSpec:
    kind: Literal["list", "aiter", "channel", "stream"]
    n: int
    mode: SourceMode = "plain"
    at: int = 0  # the item before which the mode acts
    delay: float = 0.0  # per item
    hold_nursery: bool = False  # the whole body inside an empty nursery
    cleanup: Cleanup = "none"
    child_delay: float = 0.05


Behaviour = Literal[
    "plain", "fail", "stop_iteration", "stop_async_iteration", "late_awaitable", "sigint"
]


@dataclass(frozen=True)
class FnSpec:
    op: Literal["map", "filter"]
    is_async: bool
    behaviour: Behaviour = "plain"
    trigger: int = 0  # index into the values that may reach the function
    delay: float = 0.0
    concurrency: int | None = None
    ordered: bool = True


@dataclass(frozen=True)
class CountSpec:
    op: Literal["take", "skip"]
    n: int


@dataclass(frozen=True)
class BufferSpec:
    capacity: int
    overflow: bt.Overflow = "wait"


@dataclass(frozen=True)
class TimeoutSpec:
    total: float = 30.0


@dataclass(frozen=True)
class BatchSpec:
    size: int
    within: float | None = None


# The operators of issue 15. Their user functions misbehave like map's; their inner and
# chained streams are producers that fail, sleep and await in their finally.
OpBehaviour = Literal["plain", "fail", "stop_iteration", "stop_async_iteration", "sigint"]


@dataclass(frozen=True)
class ScanSpec:
    is_async: bool
    behaviour: OpBehaviour = "plain"
    trigger: int = 0
    delay: float = 0.0


@dataclass(frozen=True)
class DistinctSpec:
    key: bool
    behaviour: OpBehaviour = "plain"
    trigger: int = 0


@dataclass(frozen=True)
class FlatSpec:
    op: Literal["flat_map", "switch_map"]
    concurrency: int = 1
    behaviour: OpBehaviour = "plain"  # of fn, for the trigger item
    inner_fails: bool = False  # the trigger item's inner stream fails after its items
    trigger: int = 0
    inner_kind: Literal["list", "stream"] = "list"
    inner_n: int = 2
    delay: float = 0.0  # per inner item
    cleanup: Literal["none", "await", "await_shielded"] = "none"


@dataclass(frozen=True)
class ZipSpec:
    n: int  # items of the other stream
    first: bool  # this stream is zip's first argument
    delay: float = 0.0  # per item of the other stream (a producer when set)


@dataclass(frozen=True)
class ChainSpec:
    source: SourceSpec  # chained after this stream


@dataclass(frozen=True)
class CatchSpec:
    handler: Literal["fallback", "reraise", "fail", "stop_iteration"]
    n: int = 2  # items of the fallback stream


@dataclass(frozen=True)
class RetrySpec:
    attempts: int
    on_all: bool  # on=Exception (else on=BoomError)


@dataclass(frozen=True)
class RateSpec:
    op: Literal["debounce", "throttle"]
    seconds: float
    keep: Literal["latest", "first"] = "latest"


OpSpec = ScanSpec | DistinctSpec | FlatSpec | ZipSpec | ChainSpec | CatchSpec | RetrySpec | RateSpec
StageSpec = FnSpec | CountSpec | BufferSpec | TimeoutSpec | OpSpec


ConsumerMode = Literal[
    "full", "break", "raise", "cancel", "deadline", "poll", "sigint", "ctrl_c", "drain",
    "buffered",
    "collect", "collect_result", "first", "last", "reduce", "for_each", "fan_out",
]  # fmt: skip
ViewMode = Literal["full", "break", "raise", "sigint"]


@dataclass(frozen=True)
class ConsumerSpec:
    mode: ConsumerMode
    k: int = 1  # items before it acts
    t: float = 0.0  # seconds: per-item work, poll timeout or deadline
    views: tuple[tuple[ViewMode, int], ...] = ()  # fan_out consumers


@dataclass(frozen=True)
class Spec:
    sources: tuple[SourceSpec, ...]
    stages: tuple[StageSpec, ...]
    batch: BatchSpec | None
    consumer: ConsumerSpec


DELAYS = st.sampled_from([0.0, 0.0, 0.01, 0.05, 0.2])


@st.composite
def source_specs(draw: st.DrawFn) -> SourceSpec:
    kinds: list[Literal["list", "aiter", "channel", "stream"]] = [
        "list",
        "aiter",
        "channel",
        "stream",
        "stream",
        "stream",
    ]
    kind = draw(st.sampled_from(kinds))
    n = draw(st.integers(0, 6))
    if kind != "stream":
        return SourceSpec(kind=kind, n=n)
    mode = draw(st.sampled_from(SourceMode.__args__))  # type: ignore[attr-defined]
    cleanup = draw(st.sampled_from(Cleanup.__args__))  # type: ignore[attr-defined]
    if mode == "sigint" and cleanup in ("raise", "sigint"):
        # A finally that raises replaces the KeyboardInterrupt: the user's code did that. (One
        # that awaits while cancelled replaces it with Cancelled: the library must find the
        # interrupt in that Cancelled's context, so that one is drawn.)
        cleanup = "none"
    return SourceSpec(
        kind="stream",
        n=n,
        mode=mode,
        at=draw(st.integers(0, n)),
        delay=draw(DELAYS),
        hold_nursery=draw(st.booleans()),
        cleanup=cleanup,
        child_delay=draw(st.sampled_from([0.05, 0.3, 3.0])),
    )


@st.composite
def fn_specs(draw: st.DrawFn) -> FnSpec:
    ops: list[Literal["map", "filter"]] = ["map", "filter"]
    op = draw(st.sampled_from(ops))
    is_async = draw(st.booleans())
    behaviour = draw(st.sampled_from(Behaviour.__args__))  # type: ignore[attr-defined]
    if behaviour == "late_awaitable":
        is_async = False
    concurrency = None
    if op == "map" and is_async and draw(st.booleans()):
        concurrency = draw(st.integers(1, 3))
    return FnSpec(
        op=op,
        is_async=is_async,
        behaviour=behaviour if draw(st.booleans()) else "plain",
        trigger=draw(st.integers(0, 7)),
        delay=draw(DELAYS) if is_async else 0.0,
        concurrency=concurrency,
        ordered=draw(st.booleans()) if concurrency else True,
    )


# Concurrent ordered maps whose later item fails at once while earlier ones are in flight
# (issue 10, case 7) are rare among all drawn stages: draw them on purpose too.
HOT_FN_SPECS = st.builds(
    FnSpec,
    op=st.just("map"),
    is_async=st.just(True),
    behaviour=st.sampled_from(["fail", "stop_async_iteration", "sigint"]),
    trigger=st.integers(1, 5),
    delay=st.sampled_from([0.05, 0.2]),
    concurrency=st.integers(2, 3),
    ordered=st.booleans(),
)

_OP_BEHAVIOURS: list[OpBehaviour] = ["plain", "plain", "fail", "stop_iteration", "sigint"]
OP_BEHAVIOURS = st.sampled_from(_OP_BEHAVIOURS)
_INNER_KINDS: list[Literal["list", "stream"]] = ["list", "stream", "stream"]


OPERATORS = [
    "zip", "chain", "flat_map", "switch_map", "scan", "distinct", "catch", "retry", "rate",
]  # fmt: skip


@st.composite
def op_specs(draw: st.DrawFn, op: str | None = None) -> OpSpec:
    if op is None:
        op = draw(st.sampled_from(OPERATORS))
    trigger = draw(st.integers(0, 7))
    if op == "scan":
        is_async = draw(st.booleans())
        return ScanSpec(
            is_async=is_async,
            behaviour=draw(st.sampled_from(OpBehaviour.__args__)),  # type: ignore[attr-defined]
            trigger=trigger,
            delay=draw(DELAYS) if is_async else 0.0,
        )
    if op == "distinct":
        key = draw(st.booleans())
        behaviour: OpBehaviour = draw(OP_BEHAVIOURS) if key else "plain"
        return DistinctSpec(key=key, behaviour=behaviour, trigger=trigger)
    if op in ("flat_map", "switch_map"):
        inner_kind = draw(st.sampled_from(_INNER_KINDS))
        return FlatSpec(
            op="flat_map" if op == "flat_map" else "switch_map",
            concurrency=draw(st.sampled_from([1, 1, 2, 3])) if op == "flat_map" else 1,
            behaviour=draw(OP_BEHAVIOURS),
            inner_fails=draw(st.booleans()),
            trigger=trigger,
            inner_kind=inner_kind,
            inner_n=draw(st.integers(0, 3)),
            delay=draw(DELAYS) if inner_kind == "stream" else 0.0,
            cleanup=draw(st.sampled_from(["none", "await", "await_shielded"])),
        )
    if op == "zip":
        return ZipSpec(
            n=draw(st.integers(0, 5)),
            first=draw(st.booleans()),
            delay=draw(st.sampled_from([0.0, 0.0, 0.01, 0.05])),
        )
    if op == "chain":
        source = draw(source_specs())
        if source.mode == "hang":
            source = dataclasses.replace(source, mode="plain")
        if source.kind == "channel":
            # A channel is closed by the opening of its stream: one never opened (the
            # consumer left before the chain reached it) stays open, as it would alone.
            source = dataclasses.replace(source, kind="list")
        return ChainSpec(source)
    if op == "catch":
        return CatchSpec(
            handler=draw(
                st.sampled_from(["fallback", "fallback", "reraise", "fail", "stop_iteration"])
            ),
            n=draw(st.integers(0, 3)),
        )
    if op == "retry":
        return RetrySpec(attempts=draw(st.integers(1, 3)), on_all=draw(st.booleans()))
    return RateSpec(
        op=draw(st.sampled_from(["debounce", "throttle"])),
        seconds=draw(st.sampled_from([0.005, 0.02, 0.1])),
        keep=draw(st.sampled_from(["latest", "first"])),
    )


STAGES = st.one_of(
    op_specs(),  # twice: ten operators in one strategy
    op_specs(),
    fn_specs(),
    HOT_FN_SPECS,
    st.builds(CountSpec, op=st.sampled_from(["take", "skip"]), n=st.integers(0, 4)),
    st.builds(
        BufferSpec,
        capacity=st.integers(1, 3),
        overflow=st.sampled_from(["wait", "wait", "drop_oldest", "drop_newest"]),
    ),
    st.just(TimeoutSpec()),
)


@st.composite
def consumer_specs(draw: st.DrawFn) -> ConsumerSpec:
    mode = draw(st.sampled_from(ConsumerMode.__args__))  # type: ignore[attr-defined]
    views: tuple[tuple[ViewMode, int], ...] = ()
    if mode == "fan_out":
        views = tuple(
            (draw(st.sampled_from(VIEW_MODES)), draw(st.integers(1, 3)))
            for _ in range(draw(st.integers(1, 3)))
        )
    t = draw(st.sampled_from([0.0, 0.01, 0.03, 0.1, 0.5]))
    if mode in ("poll", "deadline", "drain") and t == 0.0:
        t = 0.01
    return ConsumerSpec(mode=mode, k=draw(st.integers(1, 4)), t=t, views=views)


def _reiterable(source: SourceSpec) -> SourceSpec:
    return (
        dataclasses.replace(source, kind="list") if source.kind in ("aiter", "channel") else source
    )


@st.composite
def specs(draw: st.DrawFn, *, operator: str | None = None) -> Spec:
    """A pipeline; with ``operator``, one with that operator of issue 15 at least once, more
    often over one well-behaved source (where the model knows every item and its order)."""
    sources = tuple(draw(st.lists(source_specs(), min_size=1, max_size=2)))
    if operator and draw(st.booleans()):
        sources = (dataclasses.replace(sources[0], mode="plain", cleanup="none"),)
    stages = tuple(draw(st.lists(STAGES, max_size=3 if operator else 4)))
    if operator:
        at = draw(st.integers(0, len(stages)))
        stages = (*stages[:at], draw(op_specs(operator)), *stages[at:])
    if not any(isinstance(s, TimeoutSpec) for s in stages):
        sources = tuple(
            dataclasses.replace(s, mode="plain") if s.mode == "hang" else s for s in sources
        )
    if any(isinstance(s, RetrySpec) for s in stages):
        # A retry re-opens its upstream: a one-shot source (an async iterator, a channel)
        # then raises StreamConsumedError, as documented; the model's sources are re-iterable.
        sources = tuple(_reiterable(s) for s in sources)
        stages = tuple(
            ChainSpec(_reiterable(s.source)) if isinstance(s, ChainSpec) else s for s in stages
        )
    batch = None
    if draw(st.integers(0, 3)) == 0:
        batch = BatchSpec(
            size=draw(st.integers(1, 3)), within=draw(st.sampled_from([None, 0.02, 0.3]))
        )
    return Spec(sources, stages, batch, draw(consumer_specs()))


# ---------------------------------------------------------------- building the real pipeline


def _source(log: Log, spec: SourceSpec, name: str, base: int) -> bt.Stream[int]:
    values = [base + j for j in range(spec.n)]
    if spec.kind == "list":
        return bt.from_iterable(values)
    if spec.kind == "channel":
        # A filled memory channel whose sender is closed; the stream must close the receiver.
        send, receive = trio.open_memory_channel[int](max(1, len(values)))
        for v in values:
            send.send_nowait(v)
        send.close()
        log.channels.append(receive)
        return bt.from_channel(receive)
    if spec.kind == "aiter":

        async def agen() -> AsyncGenerator[int, None]:
            for v in values:
                await trio.lowlevel.checkpoint()
                yield v

        return bt.from_iterable(agen())

    async def child_fails() -> None:
        await trio.sleep(spec.child_delay)
        log.raise_(f"{name}:child", BoomError(f"{name}: nursery child"))

    async def child_generator_exit() -> None:
        try:
            await trio.sleep_forever()
        finally:
            log.raise_(f"{name}:genexit", GeneratorExit())

    async def own_timeout() -> None:
        try:
            with trio.fail_after(0.05):
                await trio.sleep(1)
        except trio.TooSlowError as exc:
            log.errors[f"{name}:timeout"] = exc
            # Every attempt's, as raise_ records them (a retry's failed attempt reports it).
            log.every_error.setdefault(f"{name}:timeout", []).append(exc)
            if spec.mode == "own_timeout_from":
                log.raise_(f"{name}:from", BoomError(f"{name}: stalled"))
            raise

    async def act(j: int) -> None:
        # What the body does before item j (j == n: after the last item).
        if j != spec.at:
            return
        if spec.mode == "fail":
            log.raise_(f"{name}:fail", BoomError(f"{name}: fails before item {j}"))
        elif spec.mode in ("own_timeout", "own_timeout_from"):
            await own_timeout()
        elif spec.mode == "hang":
            await trio.sleep_forever()
        elif spec.mode == "sigint":
            log.sigint()

    @bt.stream
    async def produce() -> AsyncGenerator[int, None]:
        # One flat body (no nested generator): the yields are the body's own, as the
        # contract's example writes them.
        log.entered[name] += 1
        try:
            async with AsyncExitStack() as stack:
                nursery: trio.Nursery | None = None
                if (
                    spec.mode in ("nursery_child_fails", "child_generator_exit")
                    or spec.hold_nursery
                ):
                    nursery = await stack.enter_async_context(trio.open_nursery())
                    if spec.mode == "nursery_child_fails":
                        nursery.start_soon(child_fails)
                    elif spec.mode == "child_generator_exit":
                        nursery.start_soon(child_generator_exit)
                for j, v in enumerate(values):
                    await act(j)
                    if spec.delay:
                        await trio.sleep(spec.delay)
                    if spec.mode == "scope_across_yield" and j == spec.at:
                        with trio.move_on_after(0.1):  # noqa: ASYNC100
                            yield v  # noqa: ASYNC119 - the body's own scope, across yield
                            await trio.sleep_forever()
                    else:
                        yield v  # noqa: ASYNC119
                await act(len(values))
                if nursery is not None and spec.mode == "child_generator_exit":
                    nursery.cancel_scope.cancel()
                if spec.mode == "nursery_child_fails":
                    await trio.sleep_forever()  # until the child fails
        finally:
            log.finalized[name] += 1
            if spec.cleanup == "await":
                await trio.lowlevel.checkpoint()  # noqa: ASYNC102
            elif spec.cleanup == "await_shielded":
                with trio.CancelScope(shield=True):
                    await trio.sleep(0.01)
            elif spec.cleanup == "raise":
                log.raise_(f"{name}:cleanup", CleanupError(f"{name}: finally"))
            elif spec.cleanup == "sigint" and not log.interrupts:
                log.sigint()

    return produce()


def _mapped(x: Any, i: int) -> Any:
    return x * 3 + 1 + i  # injective: values stay unique per item


def _kept(x: Any, i: int) -> bool:
    return bool((x + i) % 3 != 0)


def _fn(log: Log, spec: FnSpec, name: str, i: int, trigger: object) -> Callable[[Any], Any]:
    seen = [0]

    def act(x: Any) -> Any:
        log.calls[(name, x)] += 1
        if x == trigger:
            if spec.behaviour == "fail":
                log.raise_(name, BoomError(f"{name}({x})"))
            elif spec.behaviour == "stop_iteration":
                log.raise_(name, StopIteration())
            elif spec.behaviour == "stop_async_iteration":
                log.raise_(name, StopAsyncIteration())
            elif spec.behaviour == "sigint":
                log.sigint()
        return _mapped(x, i) if spec.op == "map" else _kept(x, i)

    def sync_fn(x: Any) -> Any:
        result = act(x)
        seen[0] += 1
        if spec.behaviour == "late_awaitable" and seen[0] >= 2:
            coro = trio.lowlevel.checkpoint()  # noqa: ASYNC105
            log.coroutines.append(coro)
            return coro
        return result

    async def async_fn(x: Any) -> Any:
        if x == trigger and spec.behaviour == "fail":
            return act(x)  # fails at once: may overtake earlier items still in flight
        if spec.delay:
            # Items take different times, so that concurrent calls finish out of order.
            await trio.sleep(spec.delay * (1 + hash(x) % 3) / 2)
        return act(x)

    async def async_fn_counted_first(x: Any) -> Any:
        # Count before the await too, so that a call cancelled and restarted shows.
        log.calls[(f"{name}:started", x)] += 1
        return await async_fn(x)

    return async_fn_counted_first if spec.is_async else sync_fn


# ---------------------------------------------------------------- the reference model


@dataclass
class Lane:
    """One source's items as they reach the end of the chain, and how that lane ends."""

    items: list[Any]
    end: Sym | None
    cuts: list[Sym] = field(default_factory=list[Sym])  # may end it earlier, at any point


@dataclass
class Model:
    lanes: list[Lane]
    exact: bool = True  # one lane, order and content known
    lossy: bool = False  # a buffer may drop items
    truncated: bool = False  # a take or skip after order became unknown
    always: dict[str, Sym] = field(default_factory=dict[str, Sym])  # source -> must arrive
    possible_errors: list[Sym] = field(default_factory=list[Sym])
    unordered: bool = False  # items of one lane may arrive in another order
    opaque: bool = False  # which items arrive is unknown (a fold over an unknown order)
    # A stage's error ends the lane before the source's end: a source read ahead of that
    # stage may have run to its end (its end-of-body error then a position never reached).
    cut_by_stage: bool = False
    # Cleanup errors a `catch` may have caught (when the source reached its end) or not (when
    # the consumer left first and the source was stopped): either way is right.
    maybe_cleanup: list[Sym] = field(default_factory=list[Sym])
    # A timeout expires on a hang: a later timeout (opened at the same time) expires with it.
    hung: bool = False

    def values(self) -> list[Any]:
        return [x for lane in self.lanes for x in lane.items]


def _model_source(spec: SourceSpec, name: str, base: int) -> tuple[Lane, dict[str, Sym]]:
    items = [base + j for j in range(spec.n)]
    always: dict[str, Sym] = {}
    end: Sym | None = None
    cuts: list[Sym] = []
    if spec.kind == "stream":
        if spec.mode in ("fail", "own_timeout", "own_timeout_from", "hang", "sigint"):
            items = items[: spec.at]
            key = {"fail": "fail", "own_timeout": "timeout", "own_timeout_from": "from"}
            if spec.mode in key:
                # Raised inside the body's own nursery, the nursery groups it (strict groups).
                wrap = Group if spec.hold_nursery else Err
                end = wrap(f"{name}:{key[spec.mode]}")
            else:
                end = Hang() if spec.mode == "hang" else Interrupt()
        elif spec.mode == "nursery_child_fails":
            end = Group(f"{name}:child")
            cuts.append(end)
        elif spec.mode == "child_generator_exit":
            end = Group(f"{name}:genexit")
            always[name] = end
        # Whatever ends the body (even an earlier, timing-dependent cut), its finally raises
        # this instead.
        if spec.cleanup == "raise":
            # A hang ends by a downstream timeout: its TooSlowError and this are two errors.
            end = end if isinstance(end, Hang) else Err(f"{name}:cleanup")
            always[name] = Err(f"{name}:cleanup")
            cuts = [end] if cuts else []
        elif spec.cleanup == "sigint":
            end = Interrupt()
            always[name] = end
            cuts = [end] if cuts else []
    return Lane(items, end, cuts), always


def _model_fn(model: Model, spec: FnSpec, name: str, i: int, trigger: object) -> None:
    errors: dict[str, Sym | None] = {
        "fail": Err(name),
        "stop_iteration": Made(RuntimeError, name),
        "stop_async_iteration": Made(RuntimeError, name),
        "sigint": Interrupt(),
        "plain": None,
        "late_awaitable": None,
    }
    error = errors[spec.behaviour]
    if spec.concurrency is not None and not spec.ordered:
        model.exact = False  # completion order: any item may come before the error
    for lane in model.lanes:
        out: list[Any] = []
        for n, x in enumerate(lane.items):
            if spec.behaviour == "late_awaitable" and n >= 1 and model.exact:
                lane.end, lane.items = Made(TypeError), out
                model.cut_by_stage = True
                break
            if x == trigger and error is not None:
                if model.exact:
                    lane.end, lane.items = error, out
                    model.cut_by_stage = True
                    break
                lane.cuts.append(error)
                continue
            if spec.op == "map":
                out.append(_mapped(x, i))
            elif _kept(x, i):
                out.append(x)
        else:
            lane.items = out
        lane.cuts = list(lane.cuts)
    if spec.behaviour == "late_awaitable":
        model.possible_errors.append(Made(TypeError))
        if not model.exact:
            for lane in model.lanes:
                lane.cuts.append(Made(TypeError))
    if error is not None:
        model.possible_errors.append(error)


def _apply(
    model: Model, stage: StageSpec, log: Log, name: str, i: int
) -> Callable[[bt.Stream[Any]], bt.Stream[Any]]:
    if isinstance(stage, FnSpec):
        values = model.values()
        trigger = values[stage.trigger % len(values)] if values else None
        fn = _fn(log, stage, name, i, trigger)
        _model_fn(model, stage, name, i, trigger)
        if stage.op == "filter":
            return lambda s: s.filter(fn)
        if stage.concurrency is not None:
            c, o = stage.concurrency, stage.ordered
            return lambda s: s.map(fn, concurrency=c, ordered=o)
        return lambda s: s.map(fn)
    if isinstance(stage, CountSpec):
        n = stage.n
        if model.exact:
            lane = model.lanes[0]
            if stage.op == "take":
                if len(lane.items) >= n:
                    lane.items, lane.end = lane.items[:n], None
            else:
                lane.items = lane.items[n:]
        else:
            model.truncated = True
        return (lambda s: s.take(n)) if stage.op == "take" else (lambda s: s.skip(n))
    if isinstance(stage, BufferSpec):
        if stage.overflow != "wait":
            model.lossy = True
            model.exact = False
        cap, overflow = stage.capacity, stage.overflow
        return lambda s: s.buffer(cap, overflow=overflow)
    if not isinstance(stage, TimeoutSpec):
        return _apply_op(model, stage, log, name, i)
    total = stage.total
    for lane in model.lanes:
        if model.hung:
            # An earlier timeout expires on a hang, at the same time as this one (every
            # timeout is opened with the stream): this one's expiry, outside, cancels what the
            # earlier one's led to (its stop, a catch's handler), as nested trio deadlines do.
            lane.cuts.append(Made(trio.TooSlowError))
        if isinstance(lane.end, Hang):
            lane.end = Made(trio.TooSlowError)
            model.hung = True
    model.possible_errors.append(Made(trio.TooSlowError))
    return lambda s: s.timeout(total=total)


# ---------------------------------------------------------------- the operators of issue 15

OP_ERRORS: dict[str, Callable[[str], Sym | None]] = {
    "plain": lambda _: None,
    "fail": Err,
    "stop_iteration": lambda name: Made(RuntimeError, name),
    "stop_async_iteration": lambda name: Made(RuntimeError, name),
    "sigint": lambda _: Interrupt(),
}


def _misbehave(log: Log, behaviour: OpBehaviour, name: str, x: object) -> None:
    if behaviour == "fail":
        log.raise_(name, BoomError(f"{name}({x!r})"))
    elif behaviour == "stop_iteration":
        log.raise_(name, StopIteration())
    elif behaviour == "stop_async_iteration":
        log.raise_(name, StopAsyncIteration())
    elif behaviour == "sigint":
        log.sigint()


def _trigger(model: Model, index: int) -> object:
    values = model.values()
    return values[index % len(values)] if values else None


def _scanned(acc: int, x: int) -> int:
    return acc * 2 + x + 1  # strictly increasing from 0 (items are >= 0): values stay unique


def _distinct_key(x: int) -> int:
    return x // 2


def _identity(x: int) -> int:
    return x


def _inner_values(x: int, spec: FlatSpec) -> list[int]:
    return [x * 10 + j for j in range(spec.inner_n)]


def _cut_all(model: Model, error: Sym | None) -> None:
    """An error that may end any lane at any point (the order is not known)."""
    if error is not None:
        for lane in model.lanes:
            lane.cuts.append(error)
        model.possible_errors.append(error)


def _end_at_trigger(
    model: Model, trigger: object, error: Sym | None, step: Callable[[Lane, Any], list[Any]]
) -> None:
    """Map each lane's items through ``step`` (items out per item in); the trigger item ends
    the lane with ``error`` where the order is known, or may cut it anywhere otherwise."""
    for lane in model.lanes:
        out: list[Any] = []
        for x in lane.items:
            if x == trigger and error is not None:
                if model.exact:
                    lane.items, lane.end = out, error
                    break
                continue
            out.extend(step(lane, x))
        else:
            lane.items = out
    if error is not None:
        if not model.exact:
            _cut_all(model, error)
        else:
            model.possible_errors.append(error)


def _catchable(sym: Sym | None) -> bool:
    if isinstance(sym, Err | Made):
        return not (isinstance(sym, Made) and not issubclass(sym.cls, Exception))
    return isinstance(sym, Group) and not sym.key.endswith(":genexit")


def _apply_op(  # noqa: C901, PLR0912, PLR0915 - one branch per operator, as _apply
    model: Model, stage: OpSpec, log: Log, name: str, i: int
) -> Callable[[bt.Stream[Any]], bt.Stream[Any]]:
    if isinstance(stage, ScanSpec):
        trigger = _trigger(model, stage.trigger)
        spec = stage

        def fold_sync(acc: int, x: int) -> int:
            log.calls[(name, x)] += 1
            if x == trigger:
                _misbehave(log, spec.behaviour, name, x)
            return _scanned(acc, x)

        async def fold_async(acc: int, x: int) -> int:
            if spec.delay:
                await trio.sleep(spec.delay)
            return fold_sync(acc, x)

        error = OP_ERRORS[stage.behaviour](name)
        if model.exact:
            lane = model.lanes[0]
            acc, out = 0, [0]
            for x in lane.items:
                if x == trigger and error is not None:
                    lane.end = error
                    break
                acc = _scanned(acc, x)
                out.append(acc)
            lane.items = out
        else:
            # The running values depend on the order the items arrive in.
            model.opaque = True
            for lane in model.lanes:
                lane.items = []
            _cut_all(model, error)
        if error is not None:
            model.possible_errors.append(error)
        fold = fold_async if stage.is_async else fold_sync
        return lambda s: s.scan(fold, 0)

    if isinstance(stage, DistinctSpec):
        trigger = _trigger(model, stage.trigger)
        spec_d = stage

        def key(x: int) -> int:
            log.calls[(name, x)] += 1
            if x == trigger:
                _misbehave(log, spec_d.behaviour, name, x)
            return _distinct_key(x)

        error = OP_ERRORS[stage.behaviour](name)
        keyed: Callable[[int], int] = _distinct_key if stage.key else _identity
        if not model.exact:
            model.lossy = True  # which items repeat a key depends on the order
        last: list[object] = []

        def kept(lane: Lane, x: Any) -> list[Any]:
            if not model.exact:
                return [x]
            k = keyed(x)
            if last and last[0] == k:
                return []
            last[:] = [k]
            return [x]

        _end_at_trigger(model, trigger, error, kept)
        if not stage.key:
            return lambda s: s.distinct_until_changed()
        return lambda s: s.distinct_until_changed(key=key)

    if isinstance(stage, FlatSpec):
        trigger = _trigger(model, stage.trigger)
        spec_f = stage

        def inner(x: int) -> bt.Stream[int]:
            log.calls[(name, x)] += 1
            fails = spec_f.inner_fails and x == trigger
            if x == trigger and not spec_f.inner_fails:
                _misbehave(log, spec_f.behaviour, name, x)
            values = _inner_values(x, spec_f)
            if spec_f.inner_kind == "list" and not fails:
                return bt.from_iterable(values)
            key = f"{name}:inner{x}"

            @bt.stream
            async def produce() -> AsyncGenerator[int, None]:
                log.entered[key] += 1
                try:
                    for v in values:
                        if spec_f.delay:
                            await trio.sleep(spec_f.delay)
                        yield v
                    if fails:
                        log.raise_(f"{name}:inner", BoomError(f"{key} fails"))
                finally:
                    log.finalized[key] += 1
                    if spec_f.cleanup == "await":
                        await trio.lowlevel.checkpoint()  # noqa: ASYNC102
                    elif spec_f.cleanup == "await_shielded":
                        with trio.CancelScope(shield=True):
                            await trio.sleep(0.01)

            return produce()

        flat_error: Sym | None = (
            Err(f"{name}:inner") if stage.inner_fails else OP_ERRORS[stage.behaviour](name)
        )
        sequential = stage.op == "flat_map" and stage.concurrency == 1
        if not sequential:
            model.exact = False
            if stage.op == "switch_map":
                model.lossy = True  # an inner stream switched away from is cut short
            else:
                model.unordered = True  # arrival order
        for lane in model.lanes:
            flat_out: list[Any] = []
            for x in lane.items:
                if x == trigger and flat_error is not None:
                    if stage.inner_fails:
                        flat_out.extend(_inner_values(x, stage))
                    if model.exact:
                        lane.items, lane.end = flat_out, flat_error
                        break
                    continue
                flat_out.extend(_inner_values(x, stage))
            else:
                lane.items = flat_out
        if flat_error is not None:
            if model.exact:
                model.possible_errors.append(flat_error)
            elif stage.op == "switch_map" and stage.inner_fails:
                _cut_all(model, flat_error)  # switched away from before it fails, or not
            else:
                # The order is unknown: the error may come before any lane's end, an error or
                # an interrupt of its source included (a catch after it then stops the
                # sources before they get there).
                for lane in model.lanes:
                    if trigger is not None:
                        lane.cuts.append(flat_error)
                model.possible_errors.append(flat_error)
        if stage.op == "switch_map":
            return lambda s: s.switch_map(inner)
        c = stage.concurrency
        return lambda s: s.flat_map(inner, concurrency=c)

    if isinstance(stage, ZipSpec):
        m, first, delay = stage.n, stage.first, stage.delay
        others = [2_000_000 + 1000 * i + j for j in range(m)]

        @bt.stream
        async def other_slow() -> AsyncGenerator[int, None]:
            for v in others:
                await trio.sleep(delay)
                yield v

        def other() -> bt.Stream[int]:
            return other_slow() if delay else bt.from_iterable(others)

        if model.exact:
            lane = model.lanes[0]
            if len(lane.items) > m or (not first and len(lane.items) == m):
                lane.items, lane.end = lane.items[:m], None
        else:
            model.truncated = True
        if first:
            return lambda s: bt.zip(s, other()).map(_zipped_first)
        return lambda s: bt.zip(other(), s).map(_zipped_second)

    if isinstance(stage, ChainSpec):
        source_name = f"{name}:src"
        # Powers of ten three decades apart: no chain of maps (x3 each), flat_maps (x10) or
        # other families of values (zip's, catch's) makes one source's item another's.
        base = 10 ** (9 + 3 * i)
        chained = _source(log, stage.source, source_name, base)
        other_lane, other_always = _model_source(stage.source, source_name, base)
        if model.exact:
            lane = model.lanes[0]
            if lane.end is None and not lane.cuts:
                lane.items = [*lane.items, *other_lane.items]
                lane.end, lane.cuts = other_lane.end, other_lane.cuts
            elif lane.cuts:
                model.exact = False
                model.lanes.append(other_lane)
        else:
            model.lanes.append(other_lane)
        model.always.update(other_always)
        model.possible_errors.extend(
            [*([other_lane.end] if other_lane.end else []), *other_lane.cuts]
        )
        return lambda s: bt.chain(s, chained)

    if isinstance(stage, CatchSpec):
        fallback = [3_000_000 + 1000 * i + j for j in range(stage.n)]
        handler_kind = stage.handler

        def handler(exc: Exception) -> bt.Stream[int]:
            log.calls[(name, "handler")] += 1
            if handler_kind == "reraise":
                raise exc
            if handler_kind == "fail":
                log.raise_(name, BoomError(f"{name}: handler"))
            if handler_kind == "stop_iteration":
                log.raise_(name, StopIteration())
            return bt.from_iterable(fallback)

        replaced: Sym | None = {
            "fallback": None,
            "reraise": None,
            "fail": Err(name),
            "stop_iteration": Made(RuntimeError, name),
        }[handler_kind]
        # A cleanup error of a producer upstream may be caught (it ends the stream there).
        for source, sym in list(model.always.items()):
            if _catchable(sym):
                del model.always[source]
                model.possible_errors.append(sym)
                model.maybe_cleanup.append(sym)
        if replaced is not None:
            model.possible_errors.append(replaced)
        lanes_cut = any(lane.cuts for lane in model.lanes)
        if model.exact and not lanes_cut:
            lane = model.lanes[0]
            if _catchable(lane.end):
                if handler_kind == "fallback":
                    lane.items, lane.end = [*lane.items, *fallback], None
                elif replaced is not None:
                    lane.end = replaced
        else:
            model.exact = False
            model.lossy = True
            # The first error caught ends every lane there: the others' ends may never come.
            caught = any(
                _catchable(lane.end) or any(_catchable(c) for c in lane.cuts)
                for lane in model.lanes
            )
            for lane in model.lanes:
                lane.cuts = [c for c in lane.cuts if not _catchable(c)]
                if _catchable(lane.end):
                    lane.end = None
                elif caught and lane.end is not None:
                    lane.cuts.append(lane.end)
                    lane.end = None
            model.lanes.append(Lane(fallback if handler_kind == "fallback" else [], None))
            if replaced is not None:
                model.lanes[-1].cuts.append(replaced)
        return lambda s: s.catch(handler)

    if isinstance(stage, RetrySpec):
        # A deterministic failure before any item fails the same way on every attempt, and
        # the last attempt's error arrives: the items and the error's key are unchanged.
        attempts = stage.attempts
        on: type[Exception] = Exception if stage.on_all else BoomError
        if any(isinstance(e, Made) and e.cls is TypeError for e in model.possible_errors):
            # Except a late awaitable: its function counts calls across attempts, so a later
            # attempt may fail earlier, with the TypeError.
            model.exact = False
            for lane in model.lanes:
                lane.cuts.append(Made(TypeError))
        return lambda s: s.retry(attempts, backoff=0.01, on=on)

    # debounce, throttle: which items pass depends on time; their order does not.
    model.exact = False
    model.lossy = True
    seconds, keep, op = stage.seconds, stage.keep, stage.op
    if op == "debounce":
        return lambda s: s.debounce(seconds)
    return lambda s: s.throttle(seconds, keep=keep)


def _zipped_first(pair: tuple[Any, Any]) -> Any:
    return pair[0]


def _zipped_second(pair: tuple[Any, Any]) -> Any:
    return pair[1]


def build(spec: Spec, log: Log) -> tuple[bt.Stream[Any], Model]:
    streams: list[bt.Stream[int]] = []
    lanes: list[Lane] = []
    always: dict[str, Sym] = {}
    for index, source in enumerate(spec.sources):
        name = f"src{index}"
        streams.append(_source(log, source, name, base=1000 * index))
        lane, lane_always = _model_source(source, name, 1000 * index)
        lanes.append(lane)
        always.update(lane_always)
    stream: bt.Stream[Any] = streams[0] if len(streams) == 1 else bt.merge(*streams)
    model = Model(lanes, exact=len(lanes) == 1, always=always)
    for lane in lanes:
        model.possible_errors.extend([*([lane.end] if lane.end else []), *lane.cuts])
    for i, stage in enumerate(spec.stages):
        stream = _apply(model, stage, log, f"stage{i}", i)(stream)
    if spec.batch is not None:
        stream = stream.batch(spec.batch.size, within=spec.batch.within)
    return stream, model


# ---------------------------------------------------------------- running a consumer


@dataclass
class Outcome:
    delivered: list[Any] = field(default_factory=list[Any])  # batches flattened
    views: list[list[Any]] = field(default_factory=list[list[Any]])
    raised: BaseException | None = None
    after_loop: bool = False  # the code after the `async for` ran
    cancelled_caught: bool = False
    stopped_at: int | None = None  # the consumer stopped on its own after this many items
    own_error: BaseException | None = None
    deadline: float = float("inf")
    deadline_passed: bool = False
    own_errors: list[BaseException] = field(default_factory=list[BaseException])  # fan_out views
    polls: int = 0
    escaped: BaseException | None = None  # raised by trio.run after the consumer finished
    returned: object = None


async def consume(spec: Spec, stream: bt.Stream[Any], log: Log, out: Outcome) -> None:
    c = spec.consumer
    batched = spec.batch is not None

    def got(x: Any) -> None:
        out.delivered.extend(x if batched else [x])

    async def loop(items: AsyncIterator[Any]) -> None:
        count = 0
        async for x in items:
            got(x)
            count += 1
            if c.t and c.mode == "full":
                await trio.sleep(c.t)
            if count == c.k and c.mode in ("break", "raise", "cancel", "sigint"):
                out.stopped_at = count
                if c.mode == "break":
                    break
                if c.mode == "raise":
                    out.own_error = ConsumerError("consumer")
                    raise out.own_error
                if c.mode == "sigint":
                    log.sigint()
                raise _CancelError
            if count == c.k and c.mode == "ctrl_c" and not log.ctrl_c:
                log.ctrl_c = True
                _ctrl_c()  # delivered to this (the main) task at its next checkpoint
        out.after_loop = True

    if c.mode in ("full", "break", "raise", "sigint", "ctrl_c"):
        async with stream.open() as items:
            await loop(items)
    elif c.mode == "cancel":
        with trio.CancelScope() as scope:
            async with stream.open() as items:
                try:
                    await loop(items)
                except _CancelError:
                    scope.cancel()
                    await trio.lowlevel.checkpoint()
                    out.after_loop = True  # must not run: the checkpoint above raises
        out.cancelled_caught = scope.cancelled_caught
    elif c.mode == "deadline":
        out.deadline = trio.current_time() + c.t * 10
        with trio.move_on_after(c.t * 10) as scope:
            async with stream.open() as items:
                async for x in items:
                    got(x)
                    await trio.sleep(c.t)
                out.after_loop = True
        out.cancelled_caught = scope.cancelled_caught
    elif c.mode == "buffered":
        async with bt.BufferedStream(stream, capacity=2) as buffered:
            async for x in buffered:
                got(x)
                if c.t:
                    await trio.sleep(c.t)
            out.after_loop = True
    elif c.mode == "poll":
        async with stream.open() as items:
            while True:
                out.polls += 1
                if out.polls > MAX_POLLS:
                    raise AssertionError(f"livelock: {MAX_POLLS} polls, {len(out.delivered)} items")
                with trio.move_on_after(c.t):
                    try:
                        got(await anext(items))
                    except StopAsyncIteration:
                        break
            out.after_loop = True
    elif c.mode == "drain":
        async with stream.open() as items:
            drain = getattr(items, "drain", None) or getattr(items, "_drain")  # noqa: B009

            def sink(xs: Any) -> None:
                out.delivered.extend(_flat(xs, batched))

            with trio.move_on_after(c.t):
                await drain(sink)
            await loop(items)
    elif c.mode == "collect":
        for x in await stream.collect():
            got(x)
        out.after_loop = True
    elif c.mode == "collect_result":
        result, error = await stream.collect_result()
        for x in result:
            got(x)
        out.after_loop = error is None
        if error is not None:
            raise error
    elif c.mode == "first":
        got(await stream.first())
        out.stopped_at = 1
    elif c.mode == "last":
        last = await stream.last()
        out.returned = last
        out.after_loop = True
    elif c.mode == "reduce":

        def fold(acc: list[Any], x: Any) -> list[Any]:
            return [*acc, x]

        for x in await stream.reduce(fold, []):
            got(x)
        out.after_loop = True
    elif c.mode == "for_each":
        if c.t:

            async def each(x: Any) -> None:
                got(x)
                await trio.sleep(c.t)

            await stream.for_each(each)
        else:
            await stream.for_each(got)
        out.after_loop = True
    else:
        await fan_out(spec, stream, log, out)


def _flat(xs: Any, batched: bool) -> list[Any]:
    return [x for batch in xs for x in batch] if batched else list(xs)


VIEW_MODES: list[ViewMode] = ["full", "full", "break", "raise", "sigint"]


@trio.lowlevel.enable_ki_protection
def _ctrl_c() -> None:
    # SIGINT while KI-protected code runs: trio delivers it to the main task later, at a
    # checkpoint, wherever that task is then (inside a stage's nursery, in a cleanup...).
    signal.raise_signal(signal.SIGINT)


class _CancelError(Exception):
    pass


async def fan_out(spec: Spec, stream: bt.Stream[Any], log: Log, out: Outcome) -> None:
    batched = spec.batch is not None

    def view_consumer(
        index: int, mode: ViewMode, k: int
    ) -> Callable[[bt.Stream[Any]], Awaitable[None]]:
        async def consumer(view: bt.Stream[Any]) -> None:
            seen = out.views[index]
            async with view.open() as items:
                count = 0
                async for x in items:
                    seen.extend(x if batched else [x])
                    count += 1
                    if count == k and mode == "break":
                        break
                    if count == k and mode == "raise":
                        error = ConsumerError(f"view {index}")
                        out.own_errors.append(error)
                        raise error
                    if count == k and mode == "sigint":
                        log.sigint()

        return consumer

    out.views = [[] for _ in spec.consumer.views]
    consumers = [view_consumer(i, m, k) for i, (m, k) in enumerate(spec.consumer.views)]
    await bt.fan_out(stream, *consumers)
    out.after_loop = True


async def run_spec(spec: Spec) -> tuple[Log, Model, Outcome]:
    log = Log()
    stream, model = build(spec, log)
    out = Outcome()
    try:
        with no_leaks():
            await consume(spec, stream, log, out)
    except BaseException as exc:  # noqa: BLE001, ASYNC103 - the outcome under test
        out.raised = exc
    finally:
        out.deadline_passed = trio.current_time() >= out.deadline
        for coro in log.coroutines:
            coro.close()
    return log, model, out


# ---------------------------------------------------------------- the checks


def _is_subsequence(sub: list[Any], seq: list[Any]) -> bool:
    it = iter(seq)
    return all(any(x == y for y in it) for x in sub)


def check(spec: Spec, log: Log, model: Model, out: Outcome) -> None:  # noqa: C901, PLR0912
    raised = out.raised
    if isinstance(raised, AssertionError) and "no_leaks()" in str(raised):
        raise raised
    if isinstance(raised, AssertionError) and "livelock" in str(raised):
        raise raised
    c = spec.consumer

    # Guarantee 2: every producer that started has finished its cleanup; a channel source
    # is closed when its stream is.
    for channel in log.channels:
        assert channel.statistics().open_receive_channels == 0, "from_channel left it open"

    attempts = _attempts(spec)  # a retry re-opens its upstream: once per attempt
    for name, count in log.entered.items():
        assert 1 <= count <= attempts, f"{name} entered {count} times in one opening"
        assert log.finalized[name] == count, f"{name}'s finally did not run before the exit"

    # Guarantee 7: no user function called twice for one item (once per attempt of a retry).
    twice = {key: n for key, n in log.calls.items() if n > attempts}
    assert not twice, f"user function called more than once per item: {twice}"
    # ... and exactly once for every item it produced that reached the consumer.
    _check_called_once(spec, log, out)

    # Guarantees 1 and 10: a KeyboardInterrupt arrives as itself.
    if log.ctrl_c:
        assert type(raised) is KeyboardInterrupt or (
            raised is None and type(out.escaped) is KeyboardInterrupt
        ), f"Ctrl-C (delivered to the main task) is not a bare KeyboardInterrupt: {raised!r}"
        return
    if log.interrupts:
        if _own_nursery_grouped(spec, raised):
            # The body's own nursery grouped it, as trio's nurseries do: the user's doing.
            raised = cast("BaseExceptionGroup[BaseException]", raised).exceptions[0]
        assert type(raised) is KeyboardInterrupt, f"KeyboardInterrupt not bare: {raised!r}"
        assert any(raised is k for k in log.interrupts), "not a KeyboardInterrupt that was raised"
        return
    assert not isinstance(raised, KeyboardInterrupt), (
        f"a KeyboardInterrupt from nowhere: {raised!r}"
    )

    # A finally that awaits unshielded while the consumer's own scope is cancelled raises that
    # Cancelled, which replaces the error in flight (its nursery's group), as in plain trio
    # code: the consumer's scope then catches it, and nothing is left to deliver.
    cancelled = c.mode in ("cancel", "deadline") and (out.cancelled_caught or out.deadline_passed)
    always = [
        sym
        for name, sym in model.always.items()
        if log.entered[name]
        and not (cancelled and isinstance(sym, Group) and _source_of(spec, name).cleanup == "await")
    ]
    # A stage that reads ahead (merge, buffer, batch, concurrent map) may have run a producer
    # to its end, cleanup included, past the point where the consumer stopped or another
    # error ended the stream: that cleanup error is then a position the consumer never
    # reached (guarantee 8). Without read-ahead, a cleanup error always arrives (guarantee 2).
    reads_ahead = _reads_ahead(spec)
    reads_all = c.mode in (
        "full",
        "poll",
        "buffered",
        "collect",
        "collect_result",
        "reduce",
        "for_each",
        "last",
    )
    takes = _stops_upstream(spec)
    for sym in always:
        if reads_ahead and not (reads_all and raised is None and not takes):
            continue
        assert raised is not None and log.reachable(raised, sym), (  # noqa: PT018
            f"a producer's cleanup error was swallowed: expected {sym}, got {raised!r}"
        )
    views = out.views if c.mode == "fan_out" else [out.delivered]
    for delivered in views:
        assert len(set(map(repr, delivered))) == len(delivered), f"an item duplicated: {delivered}"
    possible = {repr(x) for x in model.values()}
    for delivered in [] if model.opaque else views:
        unexpected = [x for x in delivered if repr(x) not in possible]
        assert not unexpected, (
            f"items the model never produces: {unexpected} (model {model.values()})"
        )

    if raised is not None:
        allowed = [*model.possible_errors, *model.always.values()]
        if c.mode in ("first", "last"):
            allowed.append(Made(bt.EmptyStreamError))
        for leaf in _leaves(raised):
            if any(leaf is own for own in [out.own_error, *out.own_errors]):
                continue
            if isinstance(leaf, BaseExceptionGroup):
                continue
            if isinstance(leaf, trio.Cancelled) and any(
                x.mode == "child_generator_exit" for x in spec.sources
            ):
                continue  # the user's nursery groups its child's GeneratorExit with Cancelled
            ok = any(log.matches(leaf, s) or log.reachable(leaf, s) for s in allowed)
            # a nursery's group is a leaf's parent: accept a leaf that is the member
            ok = ok or any(isinstance(s, Group) and leaf is log.errors.get(s.key) for s in allowed)
            # an earlier attempt of a retry raised it (a failed attempt's cleanup error)
            ok = ok or any(
                isinstance(s, Err | Group)
                and any(leaf is e for e in log.every_error.get(s.key, []))
                for s in allowed
            )
            assert ok, f"an error the pipeline never raises: {leaf!r} in {raised!r}"

    if c.mode == "fan_out":
        _check_fan_out(spec, log, model, out, always)
        return
    if c.mode in ("deadline", "cancel"):  # noqa: SIM102
        if out.cancelled_caught:
            assert not out.after_loop, "a cancelled pipeline looked finished (guarantee 3)"
    if not model.exact:
        _check_weak(spec, log, model, out, always)
        return

    lane = model.lanes[0]
    k = 1 if c.mode == "first" else out.stopped_at
    if c.mode == "cancel" and out.cancelled_caught:
        k = len(out.delivered)
    if c.mode == "deadline" and (out.cancelled_caught or out.deadline_passed):
        k = len(out.delivered)
    if spec.batch is not None and k is not None and (c.mode != "first" or out.delivered):
        k = len(out.delivered)  # k counted batches: the items they held
    stops_early = k is not None and (len(lane.items) >= k or c.mode in ("deadline",))
    expected_items = lane.items[:k] if stops_early else lane.items
    primary: Sym | None = None if stops_early else lane.end
    stripped = _without_late_errors(spec, log, model, raised, keep=[primary, *lane.cuts])
    if stripped is None and raised is not None and c.mode in _TERMINAL_MODES:
        # Only such an error came out, from a terminal operation: it returned nothing.
        if spec.batch is None:
            _check_prefix(out.delivered, expected_items)
        return
    raised = stripped
    # Errors that may cut the lane short (timing-dependent).
    if raised is not None and any(log.reachable(raised, s) for s in lane.cuts):
        _check_prefix(out.delivered, expected_items)
        return
    if (
        c.mode in ("cancel", "deadline")
        and stops_early
        and _reads_ahead(spec)
        and raised is not None
        and all(
            any(log.reachable(leaf, s) for s in model.possible_errors) for leaf in _leaves(raised)
        )
    ):
        # A stage reading ahead ran a function that raised once the consumer's own scope was
        # cancelled (its tasks are inside that scope): a cleanup error, raised instead of the
        # Cancelled, as an error from a child of a cancelled nursery is in plain trio.
        _check_prefix(out.delivered, expected_items)
        return
    if c.mode == "first":  # noqa: SIM102
        if not lane.items and not stops_early and primary is None:
            assert (
                isinstance(raised, bt.EmptyStreamError)
                or any(log.reachable(raised, s) for s in always)
                if raised is not None
                else False
            ), f"first() of an empty stream gave {raised!r}"
            return
    if c.mode == "last" and not lane.items and primary is None and not always:
        assert isinstance(raised, bt.EmptyStreamError), f"last() of an empty stream gave {raised!r}"
        return
    if c.mode == "last":
        if spec.batch is None and raised is None and lane.items:
            assert out.returned == lane.items[-1], (
                f"last() gave {out.returned!r}, not {lane.items[-1]!r}"
            )
    elif spec.batch is not None:
        _check_batches(spec, out, expected_items, primary, raised)
    elif raised is None or (
        c.mode not in ("collect", "reduce", "first")
        and not (c.mode == "collect_result" and not isinstance(raised, Exception))
    ):
        assert out.delivered == expected_items, (
            f"delivered {out.delivered}, expected {expected_items} (guarantees 4, 8)"
        )
    required: list[Sym] = [primary] if primary is not None else []
    if stops_early and c.mode == "raise":
        assert out.own_error is not None
    takes = _stops_upstream(spec)
    ended_before = primary is not None and primary not in always  # another error ended it
    if _reads_ahead(spec) and (stops_early or takes or model.cut_by_stage or ended_before):
        # The producer may have run to its end, cleanup included, past where the consumer
        # stopped or another error ended the stream: its cleanup error is then a position
        # never reached (see above).
        if raised is not None and any(log.reachable(raised, s) for s in always):
            return
    else:
        required += [s for s in always if s not in required]
    own = out.own_error if stops_early or c.mode == "drain" else None
    if not required and own is None:
        assert raised is None, f"the stream should end cleanly, got {raised!r}"
    elif len(required) == 1 and own is None:
        assert raised is not None, f"expected {required[0]}, the stream ended cleanly"
        assert log.matches(raised, required[0]), (
            f"expected {required[0]} as itself, got {raised!r} (guarantee 1)"
        )
    else:
        assert raised is not None, f"expected {required} and {own!r}, got nothing"
        for s in required:
            assert log.reachable(raised, s), f"{s} lost in {raised!r}"
        if own is not None:
            assert any(e is own for e in _reachable(raised)), f"consumer's error lost: {raised!r}"
    if primary is not None and not stops_early and c.mode in ("full", "poll", "drain", "buffered"):
        assert not out.after_loop, f"the async for ended cleanly before {primary} (guarantee 3/8)"


# Terminal operations: they return a value at the end (nothing when leaving raises).
_TERMINAL_MODES = ("collect", "collect_result", "first", "last", "reduce")


def _without_late_errors(
    spec: Spec, log: Log, model: Model, raised: BaseException | None, keep: list[Sym | None]
) -> BaseException | None:
    """``raised`` without the errors of the one case the outcome model cannot place
    (docs/errors-and-cancellation.md, "Errors the consumer never reached"): a source read
    ahead raises on its own, its ``finally`` awaits shielded, and the stop comes during that
    await, so the error leaves the body after the stop and is raised as a cleanup error. And
    the cleanup errors a `catch` may or may not have caught (`Model.maybe_cleanup`)."""
    if raised is None:
        return raised
    late = [
        log.errors[s.key]
        for s in model.maybe_cleanup
        if isinstance(s, Err | Group) and s.key in log.errors
    ]
    late += (
        []
        if not _reads_ahead(spec)
        else [
            log.errors[f"{name}:{key}"]
            for name, source in _all_sources(spec)
            if source.kind == "stream" and source.cleanup == "await_shielded"
            for key in ("fail", "timeout", "from")
            if f"{name}:{key}" in log.errors
        ]
    )
    # The same for a flat_map's inner stream that fails, then awaits shielded in its finally.
    late += (
        []
        if not _reads_ahead(spec)
        else [
            log.errors[f"stage{i}:inner"]
            for i, stage in enumerate(spec.stages)
            if isinstance(stage, FlatSpec) and stage.inner_fails
            if stage.cleanup == "await_shielded" and f"stage{i}:inner" in log.errors
        ]
    )
    if not late:
        return raised

    def is_late(leaf: BaseException) -> bool:
        if any(
            s is not None
            and (log.matches(leaf, s) or (isinstance(s, Group) and leaf is log.errors.get(s.key)))
            for s in keep
        ):
            return False  # the very error the consumer reached (or a nursery's group's member)
        if any(leaf is e for e in late):
            # A late error itself, whatever its context: a producer stopped after the error
            # the consumer reached may chain that error (through the stop's Cancelled).
            return True
        if any(s is not None and log.reachable(leaf, s) for s in keep):
            return False  # one that holds or wraps the error reached
        return any(any(e is r for r in _reachable(leaf)) for e in late)

    leaves = _leaves(raised)
    kept = [leaf for leaf in leaves if not is_late(leaf)]
    if len(kept) == len(leaves):
        return raised
    if not kept:
        return None
    if len(kept) == 1:
        return kept[0]
    return raised


def _source_of(spec: Spec, name: str) -> SourceSpec:
    return dict(_all_sources(spec))[name]


def _all_sources(spec: Spec) -> list[tuple[str, SourceSpec]]:
    """Every source by its name: the pipeline's own, then those a ``chain`` stage opens."""
    return [
        *((f"src{index}", source) for index, source in enumerate(spec.sources)),
        *(
            (f"stage{i}:src", stage.source)
            for i, stage in enumerate(spec.stages)
            if isinstance(stage, ChainSpec)
        ),
    ]


def _reads_ahead(spec: Spec) -> bool:
    return (
        len(spec.sources) > 1
        or spec.batch is not None
        or spec.consumer.mode in ("buffered", "fan_out")
        or any(
            isinstance(s, BufferSpec | RateSpec)
            or (isinstance(s, FnSpec) and s.concurrency)
            or (isinstance(s, FlatSpec) and (s.op == "switch_map" or s.concurrency > 1))
            for s in spec.stages
        )
    )


def _stops_upstream(spec: Spec) -> bool:
    """A stage ends its upstream early: a take, a zip whose other stream is shorter, or a
    catch that caught an error (it stops its upstream there, and goes on with the handler's
    stream: an error a read-ahead source raised later is a position never reached)."""
    return any(isinstance(s, ZipSpec | CatchSpec) or _takes(s) for s in spec.stages)


def _takes(stage: StageSpec) -> bool:
    return isinstance(stage, CountSpec) and stage.op == "take"


def _attempts(spec: Spec) -> int:
    """How many times a retry may open the stages before it (1 without a retry)."""
    n = 1
    for s in spec.stages:
        if isinstance(s, RetrySpec):
            n *= s.attempts
    return n


def _own_nursery_grouped(spec: Spec, raised: BaseException | None) -> bool:
    if not isinstance(raised, BaseExceptionGroup):
        return False
    group = cast("BaseExceptionGroup[BaseException]", raised)
    members = group.exceptions
    return (
        str(group).startswith("Exceptions from Trio nursery")
        and len(members) == 1
        and type(members[0]) is KeyboardInterrupt
        and any(s.mode == "sigint" and s.hold_nursery for s in spec.sources)
    )


def _check_called_once(spec: Spec, log: Log, out: Outcome) -> None:
    fns = [(i, st) for i, st in enumerate(spec.stages) if isinstance(st, FnSpec)]
    if not fns or spec.consumer.mode in ("fan_out", "last"):
        return
    i, last = fns[-1]
    if any(
        isinstance(st, ScanSpec | FlatSpec | ChainSpec | CatchSpec) for st in spec.stages[i + 1 :]
    ):
        return  # the items delivered were not made by that function
    attempts = _attempts(spec)
    for y in out.delivered:
        if not isinstance(y, int):
            continue  # a coroutine passed on as an item: another check reports it
        # Undo the last function (map is injective; filter passes its input on).
        x = y if last.op == "filter" else (y - 1 - i) // 3
        calls = log.calls[(f"stage{i}", x)]
        assert 1 <= calls <= attempts, (
            f"stage{i} made {y!r} from {x!r} with {calls} calls (guarantee 7)"
        )


def _check_prefix(delivered: list[Any], items: list[Any]) -> None:
    assert delivered == items[: len(delivered)], f"delivered {delivered}, not a prefix of {items}"


def _check_batches(
    spec: Spec, out: Outcome, expected: list[Any], primary: Sym | None, raised: BaseException | None
) -> None:
    if primary is None and raised is None:
        assert out.delivered == expected, f"batches flatten to {out.delivered}, expected {expected}"
    else:
        _check_prefix(out.delivered, expected)


def _check_weak(spec: Spec, log: Log, model: Model, out: Outcome, always: list[Sym]) -> None:
    c = spec.consumer
    if model.opaque:
        return  # which items arrive is unknown; the checks before this one still hold
    ordered_lanes = not model.unordered and not any(
        isinstance(s, FnSpec) and s.concurrency is not None and not s.ordered for s in spec.stages
    )
    if ordered_lanes:
        for lane in model.lanes:
            mine = [x for x in out.delivered if any(x == y for y in lane.items)]
            assert _is_subsequence(mine, lane.items), f"lane order broken: {mine} vs {lane.items}"
    full = c.mode in (
        "full",
        "poll",
        "buffered",
        "collect",
        "collect_result",
        "reduce",
        "for_each",
        "last",
    )
    no_errors = not model.possible_errors and not model.always
    if full and no_errors and not model.truncated and not model.lossy and model.values():
        assert out.raised is None, f"nothing fails here, yet {out.raised!r}"
        if c.mode != "last":
            assert sorted(map(repr, out.delivered)) == sorted(map(repr, model.values())), (
                f"items lost: delivered {out.delivered}, expected {model.values()}"
            )
    errors = [
        lane.end for lane in model.lanes if lane.end is not None and not isinstance(lane.end, Hang)
    ]
    if full and errors and not model.truncated and out.raised is None:
        raise AssertionError(f"an error ({errors}) never arrived: the stream ended cleanly")


def _check_fan_out(spec: Spec, log: Log, model: Model, out: Outcome, always: list[Sym]) -> None:
    raised = out.raised
    for own in out.own_errors:
        assert raised is not None and any(e is own for e in _reachable(raised)), (  # noqa: PT018
            f"a fan_out consumer's error was lost: {raised!r}"
        )
    if not model.exact:
        return
    lane = model.lanes[0]
    for delivered in out.views:
        _check_prefix(delivered, lane.items)
    reads_all = any(mode == "full" for mode, _ in spec.consumer.views)
    if not out.own_errors and raised is None and reads_all:
        assert lane.end is None, f"fan_out ended cleanly, expected {lane.end}"
        for (mode, k), delivered in zip(spec.consumer.views, out.views, strict=True):
            expected = lane.items if mode == "full" else lane.items[:k]
            if spec.batch is None:
                assert delivered == expected, f"a fan_out view got {delivered}, expected {expected}"
    if not out.own_errors and lane.end is not None and not always and reads_all:
        assert raised is not None, f"fan_out ended cleanly, expected {lane.end}"
        raised = _without_late_errors(spec, log, model, raised, keep=[lane.end, *lane.cuts])
        assert raised is not None, f"fan_out ended with a late error only, expected {lane.end}"
        if not any(log.reachable(raised, s) for s in lane.cuts):
            assert log.matches(raised, lane.end), f"expected {lane.end} as itself, got {raised!r}"


# ---------------------------------------------------------------- the property


def run(spec: Spec) -> tuple[Log, Model, Outcome]:
    result: list[tuple[Log, Model, Outcome]] = []

    async def main() -> None:
        result.append(await run_spec(spec))

    try:
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    except KeyboardInterrupt as exc:
        # A deferred Ctrl-C delivered after the consumer had finished: not lost.
        if not result:
            raise
        result[0][2].escaped = exc
    return result[0]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    phases=[p for p in Phase if SHRINK or p is not Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(specs())
def test_random_pipelines_keep_the_contract(spec: Spec) -> None:
    log, model, out = run(spec)
    check(spec, log, model, out)


@pytest.mark.parametrize("operator", OPERATORS)
def test_random_pipelines_with_an_operator_keep_the_contract(operator: str) -> None:
    """The same, with the operator (zip, chain, flat_map, switch_map, scan,
    distinct_until_changed, catch, retry, debounce or throttle) in every pipeline."""

    @settings(
        max_examples=max(1, EXAMPLES // 5),
        deadline=None,
        phases=[p for p in Phase if SHRINK or p is not Phase.shrink],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(specs(operator=operator))
    def pipelines(spec: Spec) -> None:
        log, model, out = run(spec)
        check(spec, log, model, out)

    pipelines()
