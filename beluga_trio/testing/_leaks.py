"""Leak checks for a block of code (`no_leaks`) and for a whole trio run (`RunLeakCheck`)."""

from __future__ import annotations

from types import TracebackType
from typing import final

import trio
from trio.lowlevel import Task

from ._tracking import Tracker

__all__ = ["LeakCheck", "RunLeakCheck", "no_leaks"]


def _message(what: str, tasks: list[str], agens: list[str]) -> str:
    parts: list[str] = []
    if tasks:
        parts.append(f"{len(tasks)} task(s) still alive: " + "; ".join(tasks))
    if agens:
        parts.append(
            f"{len(agens)} async generator(s) not closed (close them with "
            "`async with contextlib.aclosing(...)`): " + "; ".join(agens)
        )
    return f"{what}: " + " | ".join(parts)


@final
class LeakCheck:
    """A ``with`` block, in a trio task, after which nothing it started may be left.

    On exit it checks that every task started inside the block (by this task, or by the
    tasks it started, in any nursery, system tasks included) has ended, and that every async
    generator first iterated by those tasks was exhausted or closed rather than left
    suspended or to the garbage collector. Otherwise it raises `AssertionError` naming
    them (the block's own exception, if any, is its ``__cause__``). Use `no_leaks` to make
    one. After the block, ``tasks_started`` and ``async_generators`` say what was watched.
    """

    __slots__ = ("_tracker", "async_generators", "tasks_started")

    def __init__(self) -> None:
        self._tracker: Tracker | None = None
        self.tasks_started = 0
        self.async_generators = 0

    def __enter__(self) -> LeakCheck:
        if self._tracker is not None:
            raise RuntimeError("a LeakCheck is entered once; call no_leaks() again")
        self._tracker = Tracker()
        self._tracker.start(trio.lowlevel.current_task())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tracker = self._tracker
        assert tracker is not None, "__exit__ without __enter__"
        tracker.stop()
        self.tasks_started = tracker.tasks_started - 1  # not the block's own task
        self.async_generators = tracker.agens_started
        tasks = tracker.leaked_tasks()
        agens = tracker.abandoned + tracker.suspended_agens()
        if tracker.internal_errors:
            raise AssertionError(
                f"no_leaks(): the leak check itself failed: {tracker.internal_errors[0]!r}"
            ) from tracker.internal_errors[0]
        if tasks or agens:
            raise AssertionError(_message("no_leaks()", tasks, agens)) from exc


def no_leaks() -> LeakCheck:
    """``with no_leaks(): ...`` in a trio task: fail if the block leaves a task running or an
    async generator unclosed. See `LeakCheck`."""
    return LeakCheck()


@final
class RunLeakCheck(trio.abc.Instrument):
    """An instrument for a whole ``trio.run`` (``trio.run(main, instruments=[check])``;
    the pytest fixture ``leak_check`` installs one in the test's run).

    When the run's main task ends, every task started by it or its descendants must have
    ended (only system tasks can still be running then), and every async generator they
    first iterated must be exhausted or closed. trio would close the latter at the end of the
    run, without a word (or with a `ResourceWarning` if the garbage collector found them
    first). After the run, `assert_clean` raises `AssertionError` naming what was left.
    """

    def __init__(self) -> None:
        super().__init__()
        self._tracker = _RunTracker()
        self.ran = False
        self.leaked_tasks: list[str] = []
        self.unclosed_async_generators: list[str] = []

    def before_run(self) -> None:
        self.ran = True
        self._tracker.start_for_run()

    def task_spawned(self, task: Task) -> None:
        self._tracker.task_spawned(task)

    def task_exited(self, task: Task) -> None:
        tracker = self._tracker
        if task is tracker.root:
            self.leaked_tasks = tracker.leaked_tasks()
            # trio closes the suspended ones at the end of the run, as it always does.
            self.unclosed_async_generators = [
                *tracker.abandoned,
                *tracker.suspended_agens(close=False),
            ]
        tracker.task_exited(task)

    def after_run(self) -> None:
        # trio restored the interpreter's async generator hooks just before this call.
        self._tracker.forget_hooks()
        self.unclosed_async_generators = [
            *self.unclosed_async_generators,
            *(a for a in self._tracker.abandoned if a not in self.unclosed_async_generators),
        ]

    def assert_clean(self) -> None:
        """Raise `AssertionError` if the run left a task or an async generator behind."""
        if self._tracker.internal_errors:
            raise AssertionError(
                f"leak check: the check itself failed: {self._tracker.internal_errors[0]!r}"
            ) from self._tracker.internal_errors[0]
        if self.leaked_tasks or self.unclosed_async_generators:
            raise AssertionError(
                _message(
                    "leak check of the trio run",
                    self.leaked_tasks,
                    self.unclosed_async_generators,
                )
            )


class _RunTracker(Tracker):
    """A tracker whose root is the run's main task (the first task the root task spawns)."""

    def start_for_run(self) -> None:
        # Called from before_run: trio has installed its hooks; the instrument is already
        # part of the run, so only the async generator hooks need wrapping.
        self._install_asyncgen_hooks()

    def forget_hooks(self) -> None:
        self._active = False
        self._previous_hooks = None

    def _claims_as_root(self, task: Task, spawner: Task | None) -> bool:
        if self.root is not None or spawner is None:
            return False
        return spawner is trio.lowlevel.current_root_task()
