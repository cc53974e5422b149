"""Load on loopback against a server in its own process: 500 concurrent streaming clients
each get every event in order; a client that stops reading stops the stream (memory stays
bounded); the memory of an idle open connection, reported."""

from __future__ import annotations

import json
from collections.abc import Callable, Generator

import pytest
import trio
from web_client import request
from web_server import running_command

CLIENTS = 500
EVENTS = 20


@pytest.fixture(scope="module")
def load_server() -> Generator[str, None, None]:
    with running_command(["tests/web_load_app.py"]) as (_, url):
        yield url


async def stats(url: str) -> dict[str, int]:
    async with request(url + "/stats") as response:
        result: dict[str, int] = json.loads(await response.read_all())
        return result


async def until(url: str, condition: Callable[[dict[str, int]], bool]) -> None:
    """Poll the server's stats (another process: no event to wait for) until ``condition``."""
    for _ in range(1000):
        if condition(await stats(url)):
            return
        await trio.sleep(0.01)
    raise AssertionError(f"the server's stats never met the condition: {await stats(url)}")


async def test_500_concurrent_clients_each_get_every_event_in_order(load_server: str) -> None:
    received: dict[int, list[tuple[int, int]]] = {}

    async def client(k: int) -> None:
        events: list[tuple[int, int]] = []
        async with request(f"{load_server}/events?n={EVENTS}") as response:
            assert response.status == 200
            event_id = -1
            while (line := await response.line()) is not None:
                if line.startswith("id: "):
                    event_id = int(line[4:])
                elif line.startswith("data: "):
                    events.append((event_id, json.loads(line[6:])["i"]))
        received[k] = events

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for k in range(CLIENTS):
                nursery.start_soon(client, k)
    expected = [(i + 1, i) for i in range(EVENTS)]
    assert len(received) == CLIENTS
    assert all(events == expected for events in received.values())
    assert (await stats(load_server))["open"] == 0


#: The stated bound: a client that stops reading never grows the server's memory by more
#: than this (the kernel's socket buffers fill, then the stream is not pulled any more).
STALLED_CLIENT_BOUND = 16 * 1024 * 1024


async def test_a_client_that_stops_reading_stops_the_stream_and_memory_stays_bounded(
    load_server: str,
) -> None:
    before = await stats(load_server)
    async with request(f"{load_server}/flood") as response:
        assert response.status == 200
        # Never read: the socket buffers fill, then hypercorn's send waits, and the stream
        # is not pulled again.
        await trio.sleep(1.0)
        first = await stats(load_server)
        await trio.sleep(2.0)
        second = await stats(load_server)
    produced = second["flood_produced"] - before["flood_produced"]
    grown = second["rss"] - before["rss"]
    print(
        f"\nstalled client: {produced} events of 1 KiB produced, then none "
        f"(server RSS +{grown / 2**20:.1f} MiB)"
    )
    assert second["flood_produced"] == first["flood_produced"]  # the stream waits
    assert produced < 20_000  # a few MiB of socket buffers, not an endless pile
    assert grown < STALLED_CLIENT_BOUND
    # The client left: the stream is closed.
    await until(load_server, lambda s: s["open"] == 0)


async def test_memory_per_idle_open_connection() -> None:
    with running_command(["tests/web_load_app.py"]) as (_, url):  # a fresh process
        await measure_idle_connections(url, 500)


async def measure_idle_connections(load_server: str, n: int) -> None:
    opened = trio.Event()
    count = 0

    async def idle_client(done: trio.Event) -> None:
        nonlocal count
        async with request(f"{load_server}/idle") as response:
            assert response.status == 200
            count += 1
            if count == n:
                opened.set()
            await done.wait()

    before = await stats(load_server)
    done = trio.Event()
    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(idle_client, done)
        with trio.fail_after(60):
            await opened.wait()
        await until(load_server, lambda s: s["open"] == n)
        during = await stats(load_server)
        done.set()
    per_connection = (during["rss"] - before["rss"]) / n
    print(
        f"\nmemory per idle open SSE connection: {per_connection / 1024:.1f} KiB "
        f"(server RSS {before['rss'] / 2**20:.1f} -> {during['rss'] / 2**20:.1f} MiB, n={n})"
    )
    assert per_connection < 256 * 1024
