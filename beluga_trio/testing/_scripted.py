"""`ScriptedProducer`: a fake producer that fails where it is told to and records what
happened to it."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from typing import Generic, TypeVar, final

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
    * ``delay``: seconds of `trio.sleep` per item (0: one checkpoint per item).

    ``error`` and ``cleanup_error`` are exceptions, or callables that make a fresh one per
    raise (an exception object raised again and again grows its traceback).

    ``stream()`` is a cold `Stream` over it, run by beluga_trio like any ``@stream`` body;
    ``generator()`` is one raw async generator over it, for other code.
    """

    __slots__ = (
        "_cleanup_checkpoints",
        "_cleanup_error",
        "_delay",
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
        delay: float = 0.0,
    ) -> None:
        self._items: Sequence[T] = tuple(items)
        for name, value in (("raise_before", raise_before), ("hang_before", hang_before)):
            if value is not None and not 0 <= value <= len(self._items):
                raise ValueError(f"{name} must be between 0 and {len(self._items)}, got {value}")
        if cleanup_checkpoints < 0:
            raise ValueError(f"cleanup_checkpoints must be >= 0, got {cleanup_checkpoints}")
        self._raise_before = raise_before
        self._error: ErrorSpec = (
            error if error is not None else (lambda: ScriptedError("scripted failure"))
        )
        self._hang_before = hang_before
        self._cleanup_error = cleanup_error
        self._cleanup_checkpoints = cleanup_checkpoints
        self._delay = delay
        #: One record per opening, in order.
        self.runs: list[ProducerRun[T]] = []

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
                if self._delay:
                    await trio.sleep(self._delay)
                else:
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
