"""`cancel_sweep`: cancel a scenario at every scheduler step, and check what it leaves behind.

How it works (docs/testing.md says it for users):

* Each run starts ``scenario()`` as the root task of a fresh nursery, inside a cancel scope
  of its own, with a `_SweepInstrument` added to the trio run. The instrument follows the
  tasks of the run (the root and every task spawned by them, see `._tracking`) and counts
  their scheduler steps (``before_task_step``): a step is one stretch of a task running
  between two visits to trio's scheduler, and trio can deliver a cancellation only where a
  task enters the scheduler. Right before step k the instrument cancels the run's scope.
* A first run, never cancelled, must complete; then k = 1, 2, ... until a run completes
  before reaching step k. After every run: no task of the run is still alive, nothing but
  the run's own cancellation escaped, no async generator of the run was left to the garbage
  collector or left suspended.
* "Its own cancellation": `trio.Cancelled`, or a group holding only `trio.Cancelled`
  (a nursery's way of passing one on; the cancelled scope catches both). A run that
  returns normally although it was cancelled is fine only if the cancellation was never
  delivered (it came after the scenario's last checkpoint); if a `trio.Cancelled` was
  delivered to one of its tasks and the run still returned normally, something swallowed it.

Delivery is seen without touching trio's internals: trio delivers a cancellation by
rescheduling a task that waits in `trio.lowlevel.wait_task_rescheduled`, either at once when
the scope is cancelled (the instrument watches ``task_scheduled`` during its own
``cancel()`` call) or when a task, already cancelled, enters such a wait (the task is
rescheduled before its step ends; its await chain, public through
`trio.lowlevel.Task.iter_await_frames`, ends in ``wait_task_rescheduled`` rather than in
``cancel_shielded_checkpoint``, the one other way to be rescheduled at once).
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from typing import Final, Literal

import attrs
import trio
from trio.lowlevel import Task

from .._validate import check_count
from ._tracking import Tracker, effectively_cancelled, is_cancellation

__all__ = ["SweepReport", "SweepRun", "cancel_sweep"]

Outcome = Literal["completed", "cancelled", "late"]

_WAIT_CODE: Final = trio.lowlevel.wait_task_rescheduled.__code__
_SHIELDED_CODE: Final = trio.lowlevel.cancel_shielded_checkpoint.__code__


@attrs.frozen
class SweepRun:
    """One run of a sweep, as given to ``cancel_sweep(check=...)``.

    ``cancel_at`` is the step before which the run was cancelled (None: not cancelled).
    ``outcome``: ``"completed"`` (not cancelled, returned normally), ``"cancelled"``
    (raised its `trio.Cancelled`) or ``"late"`` (cancelled after its last checkpoint, so it
    returned normally and no `trio.Cancelled` was delivered). ``steps`` and ``tasks`` count
    the scheduler steps and the tasks of the run, its root task included.
    """

    index: int
    cancel_at: int | None
    outcome: Outcome
    steps: int
    tasks: int


@attrs.frozen
class SweepReport:
    """What a successful `cancel_sweep` exercised.

    * ``cancellation_points``: runs cancelled at a step, one per step k exercised;
    * ``runs``: all runs, the first uncancelled run and the final completed one included;
    * ``steps``: scheduler steps of the scenario's tasks in its final (uncancelled) run;
    * ``total_steps``: steps over all runs, the sweep's cost (about ``steps**2 / 2``);
    * ``tasks``: tasks of the final run, the scenario's own root task included;
    * ``async_generators``: async generators first iterated by the final run;
    * ``cancelled``: cancelled runs that raised their `trio.Cancelled`;
    * ``late``: cancelled runs that returned normally because the cancellation came after
      their last checkpoint (nothing was delivered).
    """

    cancellation_points: int
    runs: int
    steps: int
    total_steps: int
    tasks: int
    async_generators: int
    cancelled: int
    late: int


class _SweepInstrument(Tracker):
    """A `Tracker` that counts the run's steps, cancels the run before step ``cancel_at``
    and notices whether a `trio.Cancelled` was delivered afterwards."""

    def __init__(self, cancel_at: int | None) -> None:
        super().__init__()
        self.cancel_at = cancel_at
        self.scope = trio.CancelScope()
        self.steps = 0
        self.cancel_requested = False
        self.deliveries = 0
        self._expect_root = False
        self._cancelling = False
        self._stepping: Task | None = None
        self._rescheduled = False

    def expect_root(self) -> None:
        """The next task spawned is the run's root."""
        self._expect_root = True

    def _claims_as_root(self, task: Task, spawner: Task | None) -> bool:
        if self._expect_root:
            self._expect_root = False
            return True
        return False

    def before_task_step(self, task: Task) -> None:
        if task not in self.alive:
            return
        self.steps += 1
        self._stepping = task
        self._rescheduled = False
        if self.steps == self.cancel_at:
            self.cancel_requested = True
            self._cancelling = True
            try:
                self.scope.cancel(reason=f"cancel_sweep: before step {self.steps}")
            except BaseException as exc:  # noqa: BLE001, ASYNC103 - an instrument must never raise
                self.internal_errors.append(exc)
            finally:
                self._cancelling = False

    def task_scheduled(self, task: Task) -> None:
        if self._cancelling:
            # Woken by the abort of a wait: a Cancelled is delivered to it.
            if task in self.alive:
                self.deliveries += 1
        elif task is self._stepping:
            self._rescheduled = True  # at the end of its own step: see after_task_step

    def after_task_step(self, task: Task) -> None:
        if task is not self._stepping:
            return
        self._stepping = None
        if not (self.cancel_requested and self._rescheduled and task in self.alive):
            return
        try:
            if effectively_cancelled() and _waits_in_wait_task_rescheduled(task):
                # It entered a cancellable wait while cancelled: trio aborted the wait at
                # once and rescheduled it with a Cancelled.
                self.deliveries += 1
        except BaseException as exc:  # noqa: BLE001, ASYNC103 - an instrument must never raise
            self.internal_errors.append(exc)


def _waits_in_wait_task_rescheduled(task: Task) -> bool:
    """Whether ``task`` is suspended in ``wait_task_rescheduled`` (a cancellable wait) rather
    than in ``cancel_shielded_checkpoint``; unknown counts as not."""
    innermost: bool = False
    for frame, _ in task.iter_await_frames():
        if frame.f_code is _WAIT_CODE:
            innermost = True
        elif frame.f_code is _SHIELDED_CODE:
            innermost = False
    return innermost


@attrs.define
class _RunResult:
    index: int
    cancel_at: int | None
    instrument: _SweepInstrument
    raised: BaseException | None = None


_IN_SWEEP: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "beluga_trio_in_cancel_sweep", default=False
)


async def _run_once(
    scenario: Callable[[], Awaitable[object]], index: int, cancel_at: int | None
) -> _RunResult:
    instrument = _SweepInstrument(cancel_at)
    result = _RunResult(index, cancel_at, instrument)

    async def root() -> None:
        _IN_SWEEP.set(True)  # this task's context, inherited by every task it starts
        with instrument.scope:
            try:
                await scenario()
            except BaseException as exc:  # noqa: BLE001, ASYNC103 - judged by the sweep
                result.raised = exc

    instrument.start(None)
    try:
        async with trio.open_nursery() as nursery:
            instrument.expect_root()
            nursery.start_soon(root, name=f"cancel_sweep scenario (run {index})")
    finally:
        instrument.stop()
    return result


def _header(result: _RunResult) -> str:
    k = result.cancel_at
    if k is None or not result.instrument.cancel_requested:
        return f"cancel_sweep: run {result.index} (not cancelled, {result.instrument.steps} steps)"
    return f"cancel_sweep: run {result.index}, cancelled before step {k}"


def _judge(result: _RunResult) -> tuple[Outcome, list[str], BaseException | None]:
    """The run's outcome, the problems found, and the exception to chain (if any)."""
    instrument = result.instrument
    problems: list[str] = []
    cause: BaseException | None = None
    raised = result.raised
    outcome: Outcome = "completed"
    if instrument.internal_errors:
        cause = instrument.internal_errors[0]
        problems.append(f"the sweep's own instrument failed: {cause!r}")
    if instrument.cancel_requested:
        if raised is None:
            if instrument.deliveries:
                problems.append(
                    f"the scenario returned normally although trio.Cancelled was delivered "
                    f"{instrument.deliveries} time(s) to its tasks: something swallowed the "
                    "cancellation (an `except trio.Cancelled` or `except BaseException` that "
                    "does not re-raise; or an `except` of an error that replaced the "
                    "cancellation: after catching an expected error, "
                    "`await trio.lowlevel.checkpoint()` raises the cancellation again)"
                )
            outcome = "late"
        elif is_cancellation(raised):
            outcome = "cancelled"
        else:
            cause = raised
            problems.append(f"the scenario raised {raised!r} instead of trio.Cancelled")
    elif raised is not None:
        cause = raised
        problems.append(f"the scenario raised {raised!r} although it was not cancelled")
    leaked = instrument.leaked_tasks()
    if leaked:
        problems.append(
            f"{len(leaked)} task(s) started during the run are still alive after it: "
            + "; ".join(leaked)
        )
    agens = instrument.abandoned + instrument.suspended_agens()
    if agens:
        problems.append(
            f"{len(agens)} async generator(s) were not closed by the run (close them with "
            "`async with contextlib.aclosing(...)`): " + "; ".join(agens)
        )
    return outcome, problems, cause


def _fail(result: _RunResult, problems: list[str], cause: BaseException | None) -> AssertionError:
    error = AssertionError(_header(result) + ": " + " | ".join(problems))
    error.__cause__ = cause
    return error


async def cancel_sweep(
    scenario: Callable[[], Awaitable[object]],
    *,
    max_steps: int = 2_000,
    stride: int = 1,
    check: Callable[[SweepRun], object] | None = None,
) -> SweepReport:
    """Run ``scenario()`` again and again, cancelled before its k-th scheduler step for
    k = 1, 2, ..., and check after every run that it left nothing behind.

    Call it from a trio task (a pytest-trio test). The first run is not cancelled and must
    complete; then run k is cancelled, through a cancel scope around the scenario, right
    before the k-th step of the scenario's tasks (the scenario's own task and every task it
    starts), until a run completes before reaching step k. After every run:

    * no task started during the run is still alive (a system task, or a task started in a
      nursery from outside the scenario, outlives it);
    * nothing escaped but the run's own cancellation: a cancelled run raises `trio.Cancelled`
      (or a group of them) or, if the cancellation came after its last checkpoint, returns
      normally; if a `trio.Cancelled` was delivered to one of its tasks and it still returned
      normally, something swallowed it; an uncancelled run returns normally;
    * no async generator first iterated during the run was garbage collected unfinished or
      is still suspended at a ``yield``.

    Then ``check(run)``, if given, is called with a `SweepRun`; it may assert on state the
    scenario recorded. Any failure raises `AssertionError` naming the run and the step, with
    the scenario's exception as ``__cause__``. `KeyboardInterrupt` and `SystemExit` escaping
    the scenario are raised as themselves, and so is a cancellation of the caller.

    ``stride`` cancels only at steps 1, 1 + stride, ...; the sweep stops with an error when
    a run is still cancelled past ``max_steps``. Cost: about ``steps**2 / (2 * stride)``
    scheduler steps. Returns a `SweepReport`.
    """
    if not callable(scenario):
        raise TypeError(f"cancel_sweep() needs scenario to be an async callable, got {scenario!r}")
    check_count("cancel_sweep", "max_steps", max_steps, minimum=1)
    check_count("cancel_sweep", "stride", stride, minimum=1)
    if _IN_SWEEP.get():
        raise RuntimeError(
            "cancel_sweep() was called inside a cancel_sweep() scenario: sweeps do not nest "
            "(the outer sweep already cancels every step of the inner one); sweep the inner "
            "scenario on its own"
        )

    total_steps = 0
    cancelled = late = cancellation_points = 0
    index = 0
    cancel_at: int | None = None  # the first run is not cancelled
    while True:
        result = await _run_once(scenario, index, cancel_at)
        # A cancellation of the caller wins over anything the run did.
        await trio.lowlevel.checkpoint_if_cancelled()
        raised = result.raised
        if isinstance(raised, KeyboardInterrupt | SystemExit):
            raise raised
        instrument = result.instrument
        total_steps += instrument.steps
        outcome, problems, cause = _judge(result)
        if not problems and check is not None:
            run = SweepRun(
                index=index,
                cancel_at=cancel_at if instrument.cancel_requested else None,
                outcome=outcome,
                steps=instrument.steps,
                tasks=instrument.tasks_started,
            )
            try:
                check(run)
            except Exception as exc:  # noqa: BLE001 - reported with the run's step
                problems.append(f"check() failed: {exc!r}")
                cause = exc
        if problems:
            raise _fail(result, problems, cause)
        if instrument.cancel_requested:
            cancellation_points += 1
            cancelled += outcome == "cancelled"
            late += outcome == "late"
        elif cancel_at is not None:
            return SweepReport(
                cancellation_points=cancellation_points,
                runs=index + 1,
                steps=instrument.steps,
                total_steps=total_steps,
                tasks=instrument.tasks_started,
                async_generators=instrument.agens_started,
                cancelled=cancelled,
                late=late,
            )
        elif instrument.steps > max_steps:
            raise AssertionError(
                f"cancel_sweep: the scenario takes {instrument.steps} scheduler steps, more "
                f"than max_steps={max_steps}; a sweep would cost about "
                f"{instrument.steps**2 // (2 * stride)} steps: make the scenario smaller, or "
                "raise max_steps (and perhaps stride)"
            )
        cancel_at = 1 if cancel_at is None else cancel_at + stride
        if cancel_at > max_steps:
            raise AssertionError(
                f"cancel_sweep: run {index} was still cancelled at step {cancel_at - stride}; "
                f"the scenario does not complete within max_steps={max_steps} steps"
            )
        index += 1
