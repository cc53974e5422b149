"""Tools to prove that a pipeline is correct under cancellation.

* `cancel_sweep`: run a scenario cancelled at every scheduler step in turn, and check after
  each run that no task outlived it, that only its own cancellation escaped, and that no async
  generator was left to the garbage collector. Returns a `SweepReport`.
* `ScriptedProducer`: a fake producer that fails where it is told to (raise before item k, in
  its cleanup, hang) and records every opening in a `ProducerRun`.
* `no_leaks` (a `LeakCheck`) for a block, `RunLeakCheck` for a whole ``trio.run``, and
  `assert_prefix` for "nothing lost out of order, nothing duplicated".
* ``beluga_trio.testing.pytest_plugin``: the pytest fixture ``leak_check``.

Runtime dependencies are trio and attrs only; pytest is imported by the plugin module alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from ._leaks import LeakCheck, RunLeakCheck, no_leaks
from ._scripted import ProducerRun, ScriptedError, ScriptedProducer
from ._sweep import SweepReport, SweepRun, cancel_sweep

__all__ = [
    "LeakCheck",
    "ProducerRun",
    "RunLeakCheck",
    "ScriptedError",
    "ScriptedProducer",
    "SweepReport",
    "SweepRun",
    "assert_prefix",
    "cancel_sweep",
    "no_leaks",
]

T = TypeVar("T")


def assert_prefix(delivered: Sequence[T], expected: Sequence[T]) -> None:
    """Assert that ``delivered`` is ``expected[:len(delivered)]``: nothing lost before the
    last delivered item, nothing duplicated, nothing out of order."""
    head = list(expected[: len(delivered)])
    if len(delivered) > len(expected) or list(delivered) != head:
        raise AssertionError(
            f"delivered items are not a prefix of the expected ones: delivered "
            f"{list(delivered)!r}, expected a prefix of {list(expected)!r}"
        )


def _fix_module_names() -> None:
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith("beluga_trio.testing._"):
            obj.__module__ = __name__


_fix_module_names()
