"""`beluga_trio.web.resumable_sse(shared)`: a `bt.share` of this process served as
server-sent events that resume from ``Last-Event-ID`` (the item's seq), called as an ASGI
application on a virtual clock. (Redis: tests/test_web_resumable.py.)"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import pytest
import trio
import trio.testing
from _asgi_client import ASGIClient as Client

import beluga_trio as bt
from beluga_trio.testing import no_leaks

web = pytest.importorskip("beluga_trio.web")


def ticking(n: int, runs: list[int]) -> bt.Stream[int]:
    """``0 .. n-1``, one per virtual second; counts its runs."""

    @bt.stream
    async def produce() -> AsyncGenerator[int]:
        runs.append(1)
        for i in range(n):
            await trio.sleep(1)
            yield i

    return produce()


async def serve(app: Any, client: Client) -> None:
    await client.call(app)


async def test_ids_are_seqs_and_last_event_id_resumes_right_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runs: list[int] = []
    with no_leaks():
        async with bt.share(ticking(5, runs), replay=5) as shared:
            first = Client()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(serve, web.resumable_sse(shared, heartbeat=None), first)
                await trio.sleep(2.5)
                first.leave()  # after two events, the connection drops
            assert first.events() == [("0", "0"), ("1", "1")]
            rest = Client(last_event_id="1")
            await serve(web.resumable_sse(shared), rest)
    assert rest.status == 200
    assert rest.events() == [("2", "2"), ("3", "3"), ("4", "4")]
    assert runs == [1]


async def test_a_client_leaving_stops_only_its_subscription(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runs: list[int] = []
    with no_leaks():
        async with bt.share(ticking(4, runs)) as shared, trio.open_nursery() as nursery:
            leaver, stayer = Client(), Client()
            leaving = web.resumable_sse(shared)
            nursery.start_soon(serve, leaving, leaver)
            nursery.start_soon(serve, web.resumable_sse(shared), stayer)
            await trio.sleep(1.5)
            leaver.leave()
    assert leaving.outcome is web.Outcome.DISCONNECT
    assert [data for _, data in leaver.events()] == ["0"]
    assert [data for _, data in stayer.events()] == ["0", "1", "2", "3"]
    assert runs == [1]


async def test_a_last_event_id_that_cannot_be_resumed_is_refused_with_a_reason(
    autojump_clock: trio.testing.MockClock,
) -> None:
    refused: dict[str, tuple[int | None, str, str]] = {}
    async with bt.share(ticking(6, []), replay=2) as shared:
        await trio.sleep(4.5)  # items 0..3 produced; 2 and 3 are in the replay window
        for last in ["zero", "-1", "9", "0"]:
            client = Client(last)
            await serve(web.resumable_sse(shared), client)
            refused[last] = (client.status, client.error()["type"], client.error()["message"])
    late = Client()
    await serve(web.resumable_sse(shared), late)
    assert refused["zero"][:2] == (400, "invalid_last_event_id")
    assert "its sequence number" in refused["zero"][2]
    assert refused["-1"][:2] == (400, "invalid_last_event_id")
    assert refused["9"][:2] == (400, "invalid_last_event_id")
    assert "no such item" in refused["9"][2]
    assert refused["0"][:2] == (410, "events_gone")
    assert "no longer in the replay window" in refused["0"][2]
    assert (late.status, late.error()["type"]) == (404, "not_found")


def test_a_key_with_a_share_is_a_clear_error() -> None:
    async def check() -> None:
        async with bt.share(bt.from_iterable([1])) as shared:
            with pytest.raises(TypeError, match="takes no key"):
                web.resumable_sse(shared, "k")

    trio.run(check)
