"""Scenario "redis publish->subscribe", and the per-event latency Redis adds (issue 14).

A publisher appends N small JSON items to a Redis stream while a subscriber in another task of
the same process reads them back with blocking ``XREAD``, on loopback, to the terminal entry.
The reference is the same job written by hand on coredis: an ``XADD`` loop and an ``XREAD``
loop with ``json.dumps``/``json.loads``. The contenders need ``redis-server`` (the Debian
package) and coredis (the ``redis`` extra); without them they are skipped. The server is
started once, on 127.0.0.1 and a free port, and stopped when the benchmark exits.

:func:`latency_report` then measures, outside the timing harness, how long one event takes
from the publisher's hands to the subscriber's (p50 and p99 over paced events), for both.
"""

from __future__ import annotations

import atexit
import functools
import importlib
import json
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import trio

import beluga_trio as bt
from bench._harness import Contender, Job, Scenario, SkipContenderError

_server: dict[str, int] = {}  # "port", once the benchmark's server runs


def _server_port() -> int:
    """The port of the benchmark's redis-server, started on first use."""
    if "port" in _server:
        return _server["port"]
    executable = shutil.which("redis-server")
    if executable is None:
        raise SkipContenderError("redis-server not installed (apt-get install redis-server)")
    try:
        importlib.import_module("coredis")
    except ImportError as exc:
        raise SkipContenderError("coredis not installed (pip install -e '.[redis]')") from exc
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    process = subprocess.Popen(
        [
            executable,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    atexit.register(_stop, process)
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise SkipContenderError("redis-server did not start") from None
            time.sleep(0.02)
    _server["port"] = port
    return port


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=10)


_keys = iter(range(10**9))


def _key() -> str:
    return f"bench:redis:{next(_keys)}"


def expected(n: int) -> list[int]:
    return list(range(n))


def _client(port: int) -> Any:
    coredis: Any = importlib.import_module("coredis")
    return coredis.Redis(host="127.0.0.1", port=port)


# ---------------------------------------------------------------------- the two contenders


async def _hand_publish(client: Any, key: str, items: AsyncIterator[int] | range) -> None:
    dumps = json.dumps
    if isinstance(items, range):
        for i in items:
            await client.xadd(key, {"item": dumps(i)})
    else:
        async for i in items:
            await client.xadd(key, {"item": dumps(i)})
    await client.xadd(key, {"end": "ok"})


async def _hand_subscribe(client: Any, key: str, sink: Callable[[int], object]) -> None:
    last = "0-0"
    loads = json.loads
    while True:
        reply = await client.xread({key: last}, count=256, block=10_000)
        if not reply:
            continue
        for entries in reply.values():
            for entry in entries:
                fields = entry.field_values
                value = fields.get(b"item")
                if value is None:
                    return
                sink(loads(value))
            last = entries[-1].identifier


def load_reference() -> Job:
    port = _server_port()

    async def job(n: int) -> list[int]:
        got: list[int] = []
        key = _key()
        async with _client(port) as client, trio.open_nursery() as nursery:
            nursery.start_soon(_hand_subscribe, client, key, got.append)
            await _hand_publish(client, key, range(n))
        await _delete(port, key)
        return got

    return job


def load_beluga() -> Job:
    port = _server_port()
    bredis: Any = importlib.import_module("beluga_trio.redis")

    async def job(n: int) -> list[int]:
        got: list[int] = []
        key = _key()
        async with _client(port) as client, trio.open_nursery() as nursery:

            async def read() -> None:
                async with bredis.subscribe(client, key).open() as entries:
                    async for _, item in entries:
                        got.append(item)

            nursery.start_soon(read)
            await bredis.publish(bt.from_iterable(range(n)), client, key)
        await _delete(port, key)
        return got

    return job


async def _delete(port: int, key: str) -> None:
    async with _client(port) as client:
        await client.delete([key])


REFERENCE = "hand-written coredis XADD/XREAD"

SCENARIO = Scenario(
    name="redis publish->subscribe",
    description=(
        "N small JSON items through a Redis stream on loopback (publisher and subscriber in"
        " one process, blocking XREAD); reference: a hand-written coredis XADD loop and XREAD"
        " loop"
    ),
    items=3_000,
    smoke_items=50,
    reference=REFERENCE,
    contenders=(
        Contender(REFERENCE, load_reference),
        Contender("beluga redis.publish + redis.subscribe", load_beluga, goal=1.2),
    ),
    expected=expected,
    unit="us/item",
)


# --------------------------------------------------------------------------------- latency


async def _paced(n: int, gap: float, stamps: list[int]) -> AsyncIterator[int]:
    for i in range(n):
        await trio.sleep(gap)
        stamps.append(time.perf_counter_ns())
        yield i


async def _latencies(port: int, n: int, *, beluga: bool) -> list[float]:
    """One event every millisecond; microseconds from handing it over to receiving it."""
    sent: list[int] = []
    received: list[int] = []
    key = _key()

    def arrived(_: int) -> None:
        received.append(time.perf_counter_ns())

    async with _client(port) as client, trio.open_nursery() as nursery:
        if beluga:
            bredis: Any = importlib.import_module("beluga_trio.redis")

            async def read() -> None:
                async with bredis.subscribe(client, key).open() as entries:
                    async for _, item in entries:
                        arrived(item)

            nursery.start_soon(read)
            await trio.sleep(0.05)  # the reader is waiting in XREAD
            paced = bt.stream(_paced)
            await bredis.publish(paced(n, 0.001, sent), client, key)
        else:
            nursery.start_soon(_hand_subscribe, client, key, arrived)
            await trio.sleep(0.05)
            await _hand_publish(client, key, _paced(n, 0.001, sent))
    await _delete(port, key)
    return [(r - s) / 1000 for s, r in zip(sent, received, strict=True)]


def latency_report(events: int) -> list[str]:
    """p50 and p99 of the per-event latency through Redis, beluga and hand-written."""
    try:
        port = _server_port()
    except SkipContenderError as exc:
        return [f"redis latency: skipped ({exc})"]
    lines = [f"redis latency per event ({events:,} events, one per ms, loopback, us):"]
    for label, beluga in (("hand-written coredis XADD/XREAD", False), ("beluga redis", True)):
        runner = functools.partial(_latencies, port, events, beluga=beluga)
        samples = sorted(trio.run(runner))
        p50 = statistics.median(samples)
        p99 = samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))]
        lines.append(f"  {label:<34} p50 {p50:8.1f}   p99 {p99:8.1f}")
    return lines
