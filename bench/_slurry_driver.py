"""slurry's side of the benchmark, run in slurry's own environment: ``python -I THIS_FILE``.

slurry (1.3.1, its latest release) requires ``trio>=0.21,<0.22`` and beluga_trio requires
``trio>=0.30``, so the two cannot share an interpreter. :mod:`bench._slurry` starts this script
with another interpreter, one that has slurry installed, and talks to it through its standard
input and output, one JSON object per line. The script imports nothing from the benchmark
(that would import beluga_trio): only the standard library, trio and slurry.

The protocol: on start the script writes ``{"ok": true, "python": ..., "trio": ...,
"slurry": ...}``, or ``{"ok": false, "error": ...}`` and exits. Then, for each request
``{"job": NAME, "n": N}``, it runs the job once, measured as the harness measures an
in-process contender: ``gc.collect()`` first, then a fresh ``trio.run`` in which only the job
is timed, with ``time.perf_counter_ns()``; it answers ``{"ok": true, "ns": ELAPSED, "result":
RESULT}`` (the parent checks the result with the scenario's own check) or ``{"ok": false,
"error": ...}``. It exits at the end of its input.

The jobs do the work of the scenarios' in-process contenders, the way slurry's documentation
builds them (a pipeline, its output read through ``tap()``, an unbuffered channel):

- ``map3``: ``Pipeline.create(source, Map(f1), Map(f2), Map(f3))``, one tap, collected;
- ``merge3``: ``Pipeline.create(Merge(a, b, c))`` over three async-generator sources of N/3
  items each, one tap, collected;
- ``fan_out3``: ``Pipeline.create(source)`` with three taps, each summed with ``operator.add``
  by its own consumer task.
"""

from __future__ import annotations

import gc
import importlib
import json
import operator
import platform
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol, cast

import trio

Job = Callable[[int], Awaitable[object]]


def f1(x: int) -> int:
    return x + 1


def f2(x: int) -> int:
    return x * 2


def f3(x: int) -> int:
    return x - 3


class Sources:
    """Async generators that yield ``range(...)`` and never await (as the benchmark's own; a
    class only to keep flake8-async's "could be sync" check off them)."""

    @staticmethod
    async def count(n: int) -> AsyncGenerator[int, None]:
        for i in range(n):
            yield i

    @staticmethod
    async def span(start: int, stop: int) -> AsyncGenerator[int, None]:
        for i in range(start, stop):
            yield i


def split(n: int, parts: int) -> list[range]:
    """``range(n)`` cut into ``parts`` consecutive ranges of (nearly) equal length."""
    bounds = [n * i // parts for i in range(parts + 1)]
    return [range(bounds[i], bounds[i + 1]) for i in range(parts)]


# slurry, seen through the few calls made here (it ships no type information) ----------------


class Pipeline(Protocol):
    def tap(self) -> AsyncIterator[int]:
        """A new output channel (a ``trio.MemoryReceiveChannel``, unbuffered)."""
        ...


class CreatePipeline(Protocol):
    def __call__(self, *sections: object) -> AbstractAsyncContextManager[Pipeline]: ...


class Slurry:
    """``slurry.Pipeline.create`` and the sections ``Map`` and ``Merge``."""

    def __init__(self) -> None:
        slurry = importlib.import_module("slurry")
        sections = importlib.import_module("slurry.sections")
        self.version = str(slurry.__version__)
        self.create = cast(CreatePipeline, slurry.Pipeline.create)
        self.map = cast(Callable[[Callable[[int], int]], object], sections.Map)
        self.merge = cast(Callable[..., object], sections.Merge)


def jobs(slurry: Slurry) -> dict[str, Job]:
    async def map3(n: int) -> list[int]:
        pipeline = slurry.create(Sources.count(n), slurry.map(f1), slurry.map(f2), slurry.map(f3))
        async with pipeline as p:
            return [x async for x in p.tap()]

    async def merge3(n: int) -> list[int]:
        sources = [Sources.span(r.start, r.stop) for r in split(n, 3)]
        async with slurry.create(slurry.merge(*sources)) as p:
            return [x async for x in p.tap()]

    async def fan_out3(n: int) -> list[int]:
        results = [0, 0, 0]

        async def consume(items: AsyncIterator[int], index: int) -> None:
            acc = 0
            async for x in items:
                acc = operator.add(acc, x)
            results[index] = acc

        async with slurry.create(Sources.count(n)) as p:
            taps = [p.tap() for _ in range(3)]  # all three before the pipeline starts
            async with trio.open_nursery() as nursery:
                for index, items in enumerate(taps):
                    nursery.start_soon(consume, items, index)
        return results

    return {"map3": map3, "merge3": merge3, "fan_out3": fan_out3}


# The measurement and the protocol -----------------------------------------------------------


async def _timed(job: Job, n: int) -> tuple[int, object]:
    # Inside the event loop: only the job is timed, not starting or closing the loop.
    start = time.perf_counter_ns()
    result = await job(n)
    return time.perf_counter_ns() - start, result


def _answer(message: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def main() -> int:
    try:
        slurry = Slurry()
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which skips slurry
        _answer({"ok": False, "error": f"cannot import slurry: {_error(exc)}"})
        return 1
    table = jobs(slurry)
    _answer(
        {
            "ok": True,
            "python": platform.python_version(),
            "trio": trio.__version__,
            "slurry": slurry.version,
        }
    )
    for line in sys.stdin:
        try:
            request = json.loads(line)
            job, n = table[str(request["job"])], int(request["n"])
        except (ValueError, KeyError, TypeError) as exc:
            _answer({"ok": False, "error": f"bad request {line.strip()!r}: {_error(exc)}"})
            continue
        gc.collect()
        try:
            elapsed, result = trio.run(_timed, job, n)
        except Exception as exc:  # noqa: BLE001 - reported to the parent as a failure
            _answer({"ok": False, "error": _error(exc)})
            continue
        _answer({"ok": True, "ns": elapsed, "result": result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
