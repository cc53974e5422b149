"""`ScriptedProducer`: a fake producer that fails where it is told to and records what
happened to it."""

from __future__ import annotations

import itertools
import sys
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Sequence
from typing import Generic, TypeVar, cast, final, overload

import attrs
import trio

from .._sources import stream
from .._stream import Stream

__all__ = ["ProducerRun", "ScriptedProducer"]

T = TypeVar("T")

ErrorSpec = BaseException | Callable[[], BaseException]


class ScriptedError(Exception):
    """The error a `ScriptedProducer` raises when it is told to fail but not with what."""


def _make(error: ErrorSpec) -> BaseException:
    return error if isinstance(error, BaseException) else error()


@attrs.define(eq=False)
class ProducerRun(Generic[T]):
    """What happened to one opening of a `ScriptedProducer` (its body ran once).

    * ``started``: items requested and begun, including one that then raised or hung;
    * ``yielded``: the items handed to the consumer, in order;
    * ``finished``: the body produced every item and returned normally;
    * ``exception``: what ended the body other than finishing: `GeneratorExit` (closed at a
      ``yield``), `trio.Cancelled` (cancelled in the middle of an item), its scripted error,
      or anything thrown in; None if it finished;
    * ``cleanup_started`` / ``cleanup_finished``: its ``finally`` was entered / ran to the
      end (the awaits in it were not interrupted); ``cleanup_cancelled``: those awaits were
      cancelled.
    """

    index: int
    started: int = 0
    yielded: list[T] = attrs.field(factory=list[T])
    finished: bool = False
    exception: BaseException | None = None
    cleanup_started: bool = False
    cleanup_finished: bool = False
    cleanup_cancelled: bool = False


@final
class ScriptedProducer(Generic[T]):
    """A ``@stream``-style producer of ``items`` that records every opening in `runs`.

    Failures at chosen points (item indexes count from 0):

    * ``raise_before=k``: when item k is requested, raise ``error`` instead of producing it
      (``k == len(items)``: after the last item);
    * ``hang_before=k``: when item k is requested, wait forever (until cancelled);
    * ``cleanup_error``: raised at the end of the ``finally``, after its awaits;
    * ``cleanup_checkpoints``: how many checkpoints the ``finally`` awaits (an awaiting,
      graceful close; each may be cancelled);
    * ``delay``: seconds of `trio.sleep` per item, or one figure per item (0: one checkpoint
      per item);
    * ``checkpoint=False``: no await at all for an item without a delay, like a generator
      over data in memory (a producer that never lets its consumer's scheduler in).

    ``error`` and ``cleanup_error`` are exceptions, or callables that make a fresh one per
    raise (an exception object raised again and again grows its traceback).

    ``stream()`` is a cold `Stream` over it, run by beluga_trio like any ``@stream`` body;
    ``generator()`` is one raw async generator over it, for other code.
    `ScriptedProducer.counting` makes one of ``0, 1, 2, ...``, endless if you like.

    ``opened``, ``started``, ``produced`` and ``cleanups`` add up what happened to every
    opening; the records of each are in `runs`. Each record keeps the items it handed over:
    keep an endless producer's runs to thousands of items, not millions.
    """

    __slots__ = (
        "_checkpoint",
        "_cleanup_checkpoints",
        "_cleanup_error",
        "_delays",
        "_error",
        "_hang_before",
        "_items",
        "_raise_before",
        "runs",
    )

    def __init__(
        self,
        items: Iterable[T],
        *,
        raise_before: int | None = None,
        error: ErrorSpec | None = None,
        hang_before: int | None = None,
        cleanup_error: ErrorSpec | None = None,
        cleanup_checkpoints: int = 1,
        delay: float | Sequence[float] = 0.0,
        checkpoint: bool = True,
    ) -> None:
        # The endless items of `counting` stay as they are; anything else is copied once.
        endless = isinstance(items, _Naturals)
        self._items: Sequence[T] = cast("Sequence[T]", items) if endless else tuple(items)
        for name, value in (("raise_before", raise_before), ("hang_before", hang_before)):
            if value is None:
                continue
            if endless and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
            if not endless and not 0 <= value <= len(self._items):
                raise ValueError(f"{name} must be between 0 and {len(self._items)}, got {value}")
        if cleanup_checkpoints < 0:
            raise ValueError(f"cleanup_checkpoints must be >= 0, got {cleanup_checkpoints}")
        if isinstance(delay, (int, float)):
            if delay < 0:
                raise ValueError(f"delay must be >= 0 seconds, got {delay!r}")
            self._delays: float | Sequence[float] = delay
        else:
            if endless:
                raise ValueError("delay of an endless producer must be one figure, not a list")
            self._delays = tuple(delay)
            if len(self._delays) != len(self._items) or any(d < 0 for d in self._delays):
                raise ValueError(
                    f"delay must be one figure >= 0 per item ({len(self._items)} items), "
                    f"got {list(self._delays)!r}"
                )
        self._checkpoint = checkpoint
        self._raise_before = raise_before
        self._error: ErrorSpec = (
            error if error is not None else (lambda: ScriptedError("scripted failure"))
        )
        self._hang_before = hang_before
        self._cleanup_error = cleanup_error
        self._cleanup_checkpoints = cleanup_checkpoints
        #: One record per opening, in order.
        self.runs: list[ProducerRun[T]] = []

    @staticmethod
    def counting(
        n: int | None = None,
        *,
        raise_before: int | None = None,
        error: ErrorSpec | None = None,
        hang_before: int | None = None,
        cleanup_error: ErrorSpec | None = None,
        cleanup_checkpoints: int = 0,
        delay: float | Sequence[float] = 0.0,
        checkpoint: bool = False,
    ) -> ScriptedProducer[int]:
        """A scripted producer of ``0, 1, ..., n - 1``, or of ``0, 1, 2, ...`` without end
        when ``n`` is None (the consumer decides when it stops).

        The plainest producer there is, a ``for i in range(n): yield i`` body that keeps a
        record: by default it awaits nothing, neither per item (unless ``delay``) nor in its
        cleanup (``checkpoint=True, cleanup_checkpoints=1`` give the constructor's defaults).
        The options are those of `ScriptedProducer`."""
        if n is not None and n < 0:
            raise ValueError(f"n must be >= 0 or None (endless), got {n}")
        return ScriptedProducer(
            _Naturals() if n is None else range(n),
            raise_before=raise_before,
            error=error,
            hang_before=hang_before,
            cleanup_error=cleanup_error,
            cleanup_checkpoints=cleanup_checkpoints,
            delay=delay,
            checkpoint=checkpoint,
        )

    # ----------------------------------------------------------------------- records

    @property
    def last(self) -> ProducerRun[T]:
        """The most recent opening's record."""
        if not self.runs:
            raise AssertionError("the scripted producer was never opened")
        return self.runs[-1]

    @property
    def opened(self) -> int:
        """How many times the body was entered."""
        return len(self.runs)

    @property
    def started(self) -> int:
        """Items requested and begun, over every opening (one that raised or hung included)."""
        return sum(run.started for run in self.runs)

    @property
    def produced(self) -> int:
        """Items handed to the consumer, over every opening."""
        return sum(len(run.yielded) for run in self.runs)

    @property
    def cleanups(self) -> int:
        """Openings whose cleanup ran (their ``finally`` was entered)."""
        return sum(run.cleanup_started for run in self.runs)

    def assert_cleaned_up(self) -> None:
        """Every opening has run its cleanup (entered its ``finally``)."""
        missing = [run.index for run in self.runs if not run.cleanup_started]
        if missing:
            raise AssertionError(f"the cleanup of opening(s) {missing} did not run")

    def assert_lock_step(self) -> None:
        """No opening started more than one item beyond those it yielded."""
        for run in self.runs:
            if run.started > len(run.yielded) + 1:
                raise AssertionError(
                    f"opening {run.index} started {run.started} items but yielded only "
                    f"{len(run.yielded)}: it ran ahead of its consumer"
                )

    # ----------------------------------------------------------------------- the body

    def stream(self) -> Stream[T]:
        """A cold stream: each opening runs the script from the start."""
        return stream(self._body)()

    def generator(self) -> AsyncGenerator[T, None]:
        """One run of the script as a raw async generator; close it (``aclose``) yourself."""
        return self._body()

    async def _body(self) -> AsyncGenerator[T, None]:
        run: ProducerRun[T] = ProducerRun(index=len(self.runs))
        self.runs.append(run)
        try:
            for i, item in enumerate(self._items):
                await self._begin(run, i)
                delay = self._delays if isinstance(self._delays, (int, float)) else self._delays[i]
                if delay:
                    await trio.sleep(delay)
                elif self._checkpoint:
                    await trio.lowlevel.checkpoint()
                run.yielded.append(item)
                yield item
            self._end(run)
        except BaseException as exc:
            run.exception = exc
            raise
        finally:
            run.cleanup_started = True
            await self._cleanup(run)  # noqa: ASYNC102 - an awaiting cleanup, on purpose

    def _end(self, run: ProducerRun[T]) -> None:
        if self._raise_before == len(self._items):
            raise _make(self._error)
        run.finished = True

    async def _begin(self, run: ProducerRun[T], i: int) -> None:
        run.started += 1
        if self._raise_before == i:
            raise _make(self._error)
        if self._hang_before == i:
            await trio.sleep_forever()

    async def _cleanup(self, run: ProducerRun[T]) -> None:
        try:
            for _ in range(self._cleanup_checkpoints):
                await trio.lowlevel.checkpoint()
        except trio.Cancelled:
            run.cleanup_cancelled = True
            raise
        run.cleanup_finished = True
        if self._cleanup_error is not None:
            raise _make(self._cleanup_error)


class _Naturals(Sequence[int]):
    """``0, 1, 2, ...`` without end, as the items of `ScriptedProducer.counting`."""

    __slots__ = ()

    def __len__(self) -> int:
        return sys.maxsize

    @overload
    def __getitem__(self, index: int) -> int: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[int]: ...
    def __getitem__(self, index: int | slice) -> int | Sequence[int]:
        if isinstance(index, slice):
            raise TypeError("an endless sequence cannot be sliced")
        if index < 0:
            raise IndexError(index)
        return index

    def __iter__(self) -> Iterator[int]:
        return itertools.count()
