"""Following the tasks and async generators that belong to one watched region of a trio run.

A `Tracker` is a trio `Instrument`. A task belongs to the region if it is the region's root
task, or if it was spawned while a task of the region was running (the spawner is the task
that called ``start_soon``, ``start`` or ``spawn_system_task``), or into a nursery owned by
a task of the region. So a task that the region starts in a nursery passed in from outside,
or as a system task, still belongs to it: exactly the tasks that can outlive the region.

Async generators are followed through the interpreter's async generator hooks, which trio
installs for the whole run (``sys.set_asyncgen_hooks``): the tracker wraps trio's hooks while
it is active. An async generator records the *finalizer* hook that is installed when it is
first iterated, and the interpreter calls that finalizer when the generator is garbage
collected before it finished (exhausted or closed); so a generator first iterated by a task
of the region calls the tracker's finalizer whenever it is abandoned, even one that dies in a
reference cycle long after. The tracker records it, then hands it to trio's finalizer as trio
would have been called (trio closes it in a system task), without trio's `ResourceWarning`:
the region reports it itself. A generator that is still alive and not finished when the
region ends is reported too, and handed to trio's finalizer the same way, so that it does
not warn later from an unrelated test.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
import weakref
from collections.abc import AsyncGenerator, Callable
from types import AsyncGeneratorType, FrameType
from typing import Any, Final, cast

import trio
from trio.lowlevel import Task

__all__ = ["Tracker", "current_task_or_none", "describe_agen", "describe_task"]

# What the interpreter's hooks receive (typed as the ABC by typeshed) and what they are.
AnyAsyncGenerator = AsyncGenerator[Any, Any]
Agen = AsyncGeneratorType[Any, Any]

_TRIO_DIR: Final = os.path.dirname(trio.__file__)


def current_task_or_none() -> Task | None:
    """The task running now, or None when trio runs its own code between task steps."""
    try:
        return trio.lowlevel.current_task()
    except RuntimeError:
        return None


def _user_frame(task: Task) -> FrameType | None:
    """The innermost frame of ``task``'s await chain that is not trio's own code."""
    found: FrameType | None = None
    for frame, _ in task.iter_await_frames():
        if not frame.f_code.co_filename.startswith(_TRIO_DIR):
            found = frame
    return found


def describe_task(task: Task) -> str:
    """``'name'`` and, if it can be found, where the task is waiting."""
    frame = _user_frame(task)
    if frame is None:
        return repr(task.name)
    return f"{task.name!r} (waiting at {frame.f_code.co_filename}:{frame.f_lineno})"


def describe_agen(agen: AnyAsyncGenerator) -> str:
    """An async generator's qualified name and where its function is defined."""
    if not isinstance(agen, AsyncGeneratorType):
        return repr(agen)
    code = agen.ag_code
    return f"{agen.__qualname__} ({code.co_filename}:{code.co_firstlineno})"


class Tracker(trio.abc.Instrument):
    """Follows the tasks and the async generators of one region; see the module docstring.

    Install it with `start` (in a trio task) and remove it with `stop`, in that order and in
    the same run. Its hooks never raise: trio would silently remove an instrument that did,
    so an unexpected error is kept in `internal_errors` and reported as a failure.
    """

    def __init__(self) -> None:
        super().__init__()
        self.alive: dict[Task, str] = {}  # living tasks of the region -> who spawned them
        self.tasks_started = 0
        self.agens_started = 0
        self.abandoned: list[str] = []  # async generators finalized by the garbage collector
        self.internal_errors: list[BaseException] = []
        self.root: Task | None = None
        self._active = False
        self._agen_ids: set[int] = set()  # ids of this region's generators (see firstiter)
        self._agens: weakref.WeakSet[Agen] = weakref.WeakSet()
        self._agen_origin: weakref.WeakKeyDictionary[Agen, str] = weakref.WeakKeyDictionary()
        self._previous_hooks: Any = None
        # trio's finalizer (or the one installed before ours): it outlives the hooks' window.
        self._trio_finalizer: Callable[[AnyAsyncGenerator], object] | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self, root: Task | None) -> None:
        """Start watching, with ``root`` as the region's first task (if known now)."""
        if root is not None:
            self.add_root(root)
        self._install_asyncgen_hooks()
        trio.lowlevel.add_instrument(self)

    def stop(self) -> None:
        """Stop watching: remove the instrument and restore the async generator hooks."""
        self._active = False
        try:
            trio.lowlevel.remove_instrument(self)
        except KeyError:  # pragma: no cover - trio removed it after a hook raised
            self.internal_errors.append(RuntimeError("the instrument was removed by trio"))
        self._restore_asyncgen_hooks()

    def add_root(self, task: Task) -> None:
        self.root = task
        self.alive[task] = "<root>"
        self.tasks_started += 1

    def is_tracked(self, task: Task | None) -> bool:
        return task is not None and task in self.alive

    # ------------------------------------------------------------------ task hooks

    def task_spawned(self, task: Task) -> None:
        try:
            spawner = current_task_or_none()
            nursery = task.parent_nursery
            owner = nursery.parent_task if nursery is not None else None
            if self._claims_as_root(task, spawner):
                self.add_root(task)
            elif self.is_tracked(spawner) or self.is_tracked(owner):
                self.alive[task] = spawner.name if spawner is not None else "<trio>"
                self.tasks_started += 1
        except BaseException as exc:  # noqa: BLE001, ASYNC103 - an instrument must never raise
            self.internal_errors.append(exc)

    def _claims_as_root(self, task: Task, spawner: Task | None) -> bool:
        """Whether ``task`` becomes the root when no root is known yet (subclasses)."""
        return False

    def task_exited(self, task: Task) -> None:
        self.alive.pop(task, None)

    # -------------------------------------------------------- async generator hooks

    def _install_asyncgen_hooks(self) -> None:
        previous = sys.get_asyncgen_hooks()
        self._previous_hooks = previous
        previous_firstiter: Callable[[AnyAsyncGenerator], object] | None = previous.firstiter
        previous_finalizer: Callable[[AnyAsyncGenerator], object] | None = previous.finalizer
        self._trio_finalizer = previous_finalizer

        def firstiter(agen: AnyAsyncGenerator) -> None:
            if previous_firstiter is not None:
                previous_firstiter(agen)
            try:
                task = current_task_or_none()
                if (
                    self._active
                    and task is not None
                    and self.is_tracked(task)
                    and isinstance(agen, AsyncGeneratorType)
                ):
                    self._agen_ids.add(id(agen))
                    self._agens.add(agen)
                    self._agen_origin[agen] = task.name
                    self.agens_started += 1
                else:
                    # An id is reused once its generator is gone: forget it, so that this
                    # generator (not ours, but carrying our finalizer) is not taken for one.
                    self._agen_ids.discard(id(agen))
            except BaseException as exc:  # noqa: BLE001, ASYNC103 - a hook must never raise
                self.internal_errors.append(exc)

        def finalizer(agen: AnyAsyncGenerator) -> None:
            # Called by the garbage collector for an unfinished generator first iterated
            # while this hook was installed. Its weak references are already cleared, so
            # the id set says whether it is ours.
            if self._active and id(agen) in self._agen_ids:
                self._agen_ids.discard(id(agen))
                try:
                    self.abandoned.append(
                        f"{describe_agen(agen)}: garbage collected before it was exhausted "
                        "or closed"
                    )
                except BaseException as exc:  # noqa: BLE001, ASYNC103 - a hook must never raise
                    self.internal_errors.append(exc)
                _hand_to_trio(previous_finalizer, agen)
            elif previous_finalizer is not None:
                previous_finalizer(agen)

        self._active = True
        sys.set_asyncgen_hooks(firstiter=firstiter, finalizer=finalizer)

    def _restore_asyncgen_hooks(self) -> None:
        previous = self._previous_hooks
        if previous is not None:
            sys.set_asyncgen_hooks(firstiter=previous.firstiter, finalizer=previous.finalizer)
            self._previous_hooks = None

    # -------------------------------------------------------------------- findings

    def suspended_agens(self, *, close: bool = True) -> list[str]:
        """This region's async generators that are alive and unfinished: left open.

        With ``close``, each is handed to trio's finalizer (closed in a trio system task, no
        warning), so that it does not warn later, far from here; one that a task is
        iterating right now is left alone (that task is reported as a leak).
        """
        found: list[str] = []
        for agen in list(self._agens):
            if agen.ag_frame is None:
                continue  # exhausted or closed
            origin = self._agen_origin.get(agen, "?")
            if agen.ag_running:
                found.append(f"{describe_agen(agen)}: still being iterated")
                continue
            found.append(
                f"{describe_agen(agen)}: left suspended at a yield, never closed "
                f"(first iterated in task {origin!r})"
            )
            if close:
                self._agen_ids.discard(id(agen))
                _hand_to_trio(self._trio_finalizer, agen)
        return found

    def leaked_tasks(self) -> list[str]:
        """The region's tasks (other than its root) that are still alive."""
        return [
            f"{describe_task(task)}, spawned by {spawner!r}"
            for task, spawner in self.alive.items()
            if task is not self.root
        ]


def _hand_to_trio(finalizer: Callable[[AnyAsyncGenerator], object] | None, agen: Any) -> None:
    """Let trio's finalizer close ``agen`` (in a system task) without its ResourceWarning."""
    if finalizer is None:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        finalizer(agen)


def is_cancellation(exc: BaseException) -> bool:
    """A `trio.Cancelled`, or a group holding nothing else (a nursery's way of passing one)."""
    if isinstance(exc, BaseExceptionGroup):
        group = cast("BaseExceptionGroup[BaseException]", exc)  # isinstance loses the arg
        return all(is_cancellation(e) for e in group.exceptions)
    return isinstance(exc, trio.Cancelled)


def effectively_cancelled() -> bool:
    """Whether the task running now would get `trio.Cancelled` at a checkpoint."""
    return trio.current_effective_deadline() == -math.inf
