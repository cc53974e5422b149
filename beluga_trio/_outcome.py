"""The outcome model: how an error is classified when it happens, and what leaving raises.

Every exception that crosses from a task or a cleanup to the consumer is classified here, from
*state* at the moment it happens, never from the exception's history (``__context__``):

* `Kind.FATAL`: `KeyboardInterrupt` or `SystemExit` (alone or inside a group). It ends the whole
  opening at once and leaving raises it as itself, whatever else happened.
* `Kind.CANCELLED`: a `trio.Cancelled` (or a group of nothing else).
* `Kind.CLEANUP`: any other error raised while the task was being stopped: this opening asked it
  to stop (``stopping``), or a cancel scope around it is cancelled (the consumer's own, normally).
  It is reported when the consumer leaves, never dropped.
* `Kind.ERROR`: any other error. It is the stream's content: raised by the consumer's pull at its
  position in the stream, after the items before it.

`exit_error` is the one function that decides what leaving an opening raises.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from typing import NoReturn, cast

import trio

__all__ = [
    "Kind",
    "being_stopped",
    "classify",
    "exit_error",
    "fatal_of",
    "find_fatal",
    "is_cancellation",
    "raise_fatal",
    "without",
]


class Kind(enum.Enum):
    """How an exception raised by a task or a cleanup is treated; see the module docstring."""

    FATAL = "fatal"
    CANCELLED = "cancelled"
    CLEANUP = "cleanup"
    ERROR = "error"


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        group = cast("BaseExceptionGroup[BaseException]", exc)  # isinstance loses the arg
        return [leaf for e in group.exceptions for leaf in _leaves(e)]
    return [exc]


def find_fatal(exc: BaseException) -> BaseException | None:
    """The first `KeyboardInterrupt` or `SystemExit` in ``exc``: itself, inside a group, or,
    for a cancellation, in its context. A cleanup that awaits while its task is cancelled (a
    ``finally`` with a checkpoint) replaces an interrupt passing through it with a `Cancelled`,
    which its cancel scope then catches: the interrupt survives only as the cancellation's
    ``__context__``, and must not be dropped there."""
    leaves = _leaves(exc)
    for leaf in leaves:
        if isinstance(leaf, KeyboardInterrupt | SystemExit):
            return leaf
    for leaf in leaves:
        if not isinstance(leaf, trio.Cancelled):
            continue
        context, depth = leaf.__context__, 0
        while context is not None and depth < 32:
            for inner in _leaves(context):
                if isinstance(inner, KeyboardInterrupt | SystemExit):
                    return inner
            context, depth = context.__context__, depth + 1
    return None


def is_cancellation(exc: BaseException) -> bool:
    """A `trio.Cancelled`, or a group of nothing else (a nursery's way of passing one on)."""
    return all(isinstance(leaf, trio.Cancelled) for leaf in _leaves(exc))


def without(exc: BaseException, leaf: BaseException) -> BaseException | None:
    """``exc`` without the very exception ``leaf`` (itself, or a leaf of a group): what is
    left of it, or ``None`` if nothing is."""
    if exc is leaf:
        return None
    if isinstance(exc, BaseExceptionGroup):
        group = cast("BaseExceptionGroup[BaseException]", exc)
        return group.split(lambda e: e is leaf)[1]
    return exc


def fatal_of(exc: BaseException) -> BaseException:
    """The `KeyboardInterrupt`/`SystemExit` to raise for ``exc``, which `classify` found
    `Kind.FATAL`: ``exc`` itself when it holds one, else the interrupt a cleanup replaced."""
    if not is_cancellation(exc):
        return exc  # itself, or a group holding it: raised as it is, unwrapped by exit_error
    fatal = find_fatal(exc)
    assert fatal is not None, "fatal_of() of an exception that holds no interrupt"
    return fatal


def raise_fatal(exc: BaseException) -> NoReturn:
    """Raise `fatal_of` ``exc`` (into the opening's nursery, which ends the opening at once)."""
    raise fatal_of(exc)


def being_stopped() -> bool:
    """Whether a cancel scope around the calling task is cancelled (this opening stopping it,
    or the consumer's own scope): `trio.current_effective_deadline` is ``-inf`` exactly then."""
    return trio.current_effective_deadline() == -math.inf


def classify(exc: BaseException, *, stopping: bool) -> Kind:
    """Classify ``exc``, raised by a task's code, from the state of that task now.

    Call it where the exception was caught, in the task that raised it: ``stopping`` says whether
    this opening asked the task to stop; whether a cancel scope around the task is cancelled is
    read from trio (`trio.current_effective_deadline` is ``-inf`` exactly then).
    """
    if find_fatal(exc) is not None:
        return Kind.FATAL
    if is_cancellation(exc):
        return Kind.CANCELLED
    if stopping or being_stopped():
        return Kind.CLEANUP
    return Kind.ERROR


def _without_cancelled(exc: BaseException) -> BaseException:
    """A cleanup error without the `trio.Cancelled` members a nursery grouped with it: a body's
    nursery passes the stop's cancellation on when an outer scope (this opening's, the
    consumer's) is cancelled too, as trio's own scopes do, and the outer scope that would have
    caught it is ours. A cancellation alone stays one (`exit_error` drops it)."""
    leaves = _leaves(exc)
    if not any(isinstance(leaf, trio.Cancelled) for leaf in leaves) or is_cancellation(exc):
        return exc  # the very object (`split` would copy it)
    group = cast("BaseExceptionGroup[BaseException]", exc)  # a Cancelled and more: a group
    rest = group.split(trio.Cancelled)[1]
    return exc if rest is None else rest


def exit_error(body: BaseException | None, errors: Sequence[BaseException]) -> BaseException | None:
    """What leaving an opening raises: the consumer's own exception ``body`` (``None`` if its
    block ended normally) and the ``errors`` of the opening (cleanup errors, errors that ended the
    whole opening, fatal errors from its tasks). Returns ``None`` when leaving raises nothing new
    (``body``, if any, goes on as itself).

    * `KeyboardInterrupt`/`SystemExit`, from anywhere: raised as itself, never in a group; the
      other errors are chained to it as its ``__cause__``.
    * Otherwise no error: ``body`` goes on. A `trio.Cancelled` seen during cleanup is no error.
    * Otherwise one error: itself. A consumer's `trio.Cancelled` gives way to the error raised
      while the stream was being cancelled, as an error raised in a ``finally`` replaces it.
    * Otherwise several: one `BaseExceptionGroup` of all of them, the consumer's first.
    """
    # An interrupt that a cleanup replaced with a Cancelled is the interrupt.
    errors = [fatal_of(e) if find_fatal(e) is not None else _without_cancelled(e) for e in errors]
    if body is not None and find_fatal(body) is not None:
        body_fatal = fatal_of(body)
        if body_fatal is not body:
            errors.insert(0, body_fatal)
    real = [e for e in errors if not is_cancellation(e)]
    everything: list[BaseException] = list(real)
    if body is not None and not (real and is_cancellation(body)):
        everything.insert(0, body)
    for error in everything:
        fatal = find_fatal(error)
        if fatal is None:
            continue
        others: list[BaseException] = []
        for other in everything:
            rest = without(other, fatal) if other is error else other
            if rest is not None and not is_cancellation(rest):
                others.append(rest)
        if others and fatal.__cause__ is None:
            fatal.__cause__ = (
                others[0]
                if len(others) == 1
                else BaseExceptionGroup("other errors while leaving a beluga_trio stream", others)
            )
        return None if fatal is body else fatal
    if not real:
        return None
    if len(everything) == 1:
        return None if everything[0] is body else everything[0]
    return BaseExceptionGroup("errors while leaving a beluga_trio stream", everything)
