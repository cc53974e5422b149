"""Tests of ``beluga_trio.redis`` (issue 14) against a real ``redis-server`` started on
127.0.0.1 and a free port (skipped, saying how to run them, when it is not installed).

Real sockets, so real time: every wait is bounded with ``fail_after``; nothing measures time.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.lowlevel
from _helpers import Probe
from _redis_server import RedisServer, collect_coredis_garbage, redis_server

import beluga_trio as bt
from beluga_trio.testing import no_leaks

coredis = pytest.importorskip("coredis")

# coredis (6.9) never closes the anyio memory streams of a connection it drops (after a
# cancelled blocking read): when the garbage collector runs during a test, not only in
# `collect_coredis_garbage` after it, that one known warning must not fail the test.
pytestmark = pytest.mark.filterwarnings(r"ignore:Unclosed <MemoryObject:ResourceWarning")
bredis = pytest.importorskip("beluga_trio.redis")

BOUND = 10  # seconds: no test may hang longer than this on any wait


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with redis_server() as running:
        yield running


@pytest.fixture(autouse=True)
def _collect_coredis_connections() -> Iterator[None]:
    yield
    collect_coredis_garbage()


@pytest.fixture
def key(request: pytest.FixtureRequest) -> str:
    return f"beluga:test:{request.node.name}"


@asynccontextmanager
async def connect(server: RedisServer) -> AsyncGenerator[Any]:
    async with coredis.Redis(host="127.0.0.1", port=server.port) as client:
        yield client


class BoomError(Exception):
    pass


def tokens(
    n: int, *, fail: BaseException | None = None, probe: Probe | None = None
) -> bt.Stream[Any]:
    @bt.stream
    async def produce() -> AsyncGenerator[Any, None]:
        if probe is not None:
            probe.entered += 1
        try:
            for i in range(n):
                await trio.lowlevel.checkpoint()
                yield {"i": i, "text": f"tok{i}"}
            if fail is not None:
                raise fail
        finally:
            if probe is not None:
                probe.finalized += 1

    return produce()


# --------------------------------------------------------------------------------------------


async def test_publish_then_subscribe_gets_every_item_and_ends(
    server: RedisServer, key: str
) -> None:
    probe = Probe()
    async with connect(server) as client:
        with trio.fail_after(BOUND):
            end_id = await bredis.publish(tokens(5, probe=probe), client, key)
            got = await bredis.subscribe(client, key).collect()
        assert [item for _, item in got] == [{"i": i, "text": f"tok{i}"} for i in range(5)]
        ids = [entry_id for entry_id, _ in got]
        assert ids == sorted(ids, key=lambda e: tuple(map(int, e.split("-"))))
        assert all(isinstance(e, str) for e in ids)
        assert await client.xlen(key) == 7  # the start entry, five items, the terminal entry
        last = await client.xrevrange(key, count=1)
        assert last[0].identifier.decode() == end_id
        assert (probe.entered, probe.finalized) == (1, 1)


async def test_a_live_subscriber_started_before_the_key_exists_gets_everything(
    server: RedisServer, key: str
) -> None:
    @bt.stream
    async def slow() -> AsyncGenerator[int, None]:
        for i in range(4):
            await trio.sleep(0.01)
            yield i

    got: list[int] = []
    # coredis runs a task per connection in the client's block: count tasks around it.
    with no_leaks():
        async with connect(server) as client, trio.open_nursery() as nursery:
            with trio.fail_after(BOUND):

                async def read() -> None:
                    got.extend(item for _, item in await bredis.subscribe(client, key).collect())

                nursery.start_soon(read)
                await trio.sleep(0.05)  # the subscriber waits in XREAD on a missing key
                await bredis.publish(slow(), client, key)
    assert got == [0, 1, 2, 3]


async def test_after_resumes_right_after_that_entry(server: RedisServer, key: str) -> None:
    async with connect(server) as client:
        with trio.fail_after(BOUND):
            await bredis.publish(bt.from_iterable(range(10)), client, key)
            first: list[tuple[str, int]] = []
            async with bredis.subscribe(client, key).open() as entries:
                async for entry in entries:
                    first.append(entry)
                    if entry[1] == 3:
                        break
            rest = await bredis.subscribe(client, key, after=first[-1][0]).collect()
            as_bytes = await bredis.subscribe(client, key, after=first[-1][0].encode()).collect()
    assert [item for _, item in first + rest] == list(range(10))
    assert as_bytes == rest


async def test_nursery_start_returns_once_the_key_exists(server: RedisServer, key: str) -> None:
    release = trio.Event()

    @bt.stream
    async def waits() -> AsyncGenerator[int, None]:
        await release.wait()
        yield 1

    async with connect(server) as client, trio.open_nursery() as nursery:
        with trio.fail_after(BOUND):
            start_id = await nursery.start(bredis.publish, waits(), client, key)
            # The key exists before the stream's first item: a reader anywhere finds it.
            entries = await client.xrange(key)
            assert [(e.identifier.decode(), dict(e.field_values)) for e in entries] == [
                (start_id, {b"start": b""})
            ]
            release.set()
            got = await bredis.subscribe(client, key).collect()
            assert [item for _, item in got] == [1]  # the start entry is skipped
            assert (await bredis.subscribe(client, key, after=start_id).collect()) == got


async def test_after_an_entry_that_is_not_there_is_a_clear_error(
    server: RedisServer, key: str
) -> None:
    async with connect(server) as client:
        with trio.fail_after(BOUND):
            with pytest.raises(bredis.EntryNotFoundError, match="no such stream") as info:
                await bredis.subscribe(client, key, after="1-0").collect()
            assert (info.value.reason, info.value.key, info.value.oldest) == (
                "no-stream",
                key,
                None,
            )

            await bredis.publish(bt.from_iterable(range(300)), client, key, maxlen=10)
            entries = await client.xrange(key, count=1)
            oldest = entries[0].identifier.decode()
            with pytest.raises(bredis.EntryNotFoundError, match="trimmed") as info:
                await bredis.subscribe(client, key, after="1-0").collect()
            assert (info.value.reason, info.value.oldest, info.value.entry_id) == (
                "trimmed",
                oldest,
                "1-0",
            )
            ms, _, seq = oldest.partition("-")
            beside = f"{ms}-{int(seq) + 1000}"
            with pytest.raises(bredis.EntryNotFoundError, match="has no such entry") as info:
                await bredis.subscribe(client, key, after=beside).collect()
            assert info.value.reason == "unknown"
            assert isinstance(info.value, LookupError)


async def test_after_dollar_reads_only_what_is_appended_after_opening(
    server: RedisServer, key: str
) -> None:
    async with connect(server) as client:
        with trio.fail_after(BOUND):
            await client.xadd(key, {"item": "0"})
            async with bredis.subscribe(client, key, after="$").open() as entries:
                await bredis.publish(bt.from_iterable([1, 2]), client, key)
                got = [item async for _, item in entries]
    assert got == [1, 2]


async def test_a_source_error_becomes_a_terminal_entry_and_a_clear_error(
    server: RedisServer, key: str
) -> None:
    boom = BoomError("the model went away")
    async with connect(server) as client:
        with trio.fail_after(BOUND):
            with pytest.raises(BoomError) as info:
                await bredis.publish(tokens(2, fail=boom), client, key)
            assert info.value is boom  # raised by publish as itself
            items, error = await bredis.subscribe(client, key).collect_result()
    assert [item["i"] for _, item in items] == [0, 1]  # every item before it
    assert isinstance(error, bredis.RemoteStreamError)
    assert (error.type, error.message, error.key) == ("BoomError", "the model went away", key)
    assert str(error) == f"the publisher of {key!r} failed: BoomError: the model went away"


async def test_a_cancelled_publisher_leaves_an_error_entry_so_subscribers_end(
    server: RedisServer, key: str
) -> None:
    @bt.stream
    async def endless() -> AsyncGenerator[int, None]:
        i = 0
        while True:
            yield i
            i += 1
            await trio.sleep(0.01)

    async with connect(server) as client:
        with trio.fail_after(BOUND):
            with trio.move_on_after(0.1):
                await bredis.publish(endless(), client, key)
            with pytest.raises(bredis.RemoteStreamError, match="Cancelled: the publisher was"):
                await bredis.subscribe(client, key).collect()


async def test_codec_maxlen_and_expire(server: RedisServer, key: str) -> None:
    class Upper:
        def encode(self, item: Any, /) -> str:
            return str(item).upper()

        def decode(self, value: bytes | str, /) -> Any:
            return value.decode() if isinstance(value, bytes) else value

    async with connect(server) as client:
        with trio.fail_after(BOUND):
            await bredis.publish(bt.from_iterable(["a", "b"]), client, key, codec=Upper())
            got = await bredis.subscribe(client, key, codec=Upper()).collect()
            assert [item for _, item in got] == ["A", "B"]
            assert await client.pttl(key) == -1  # no expiry asked for

            trimmed = key + ":trimmed"
            await bredis.publish(
                bt.from_iterable(range(400)), client, trimmed, maxlen=10, expire=30
            )
            assert await client.xlen(trimmed) < 250  # trimmed (approximately, as asked)
            assert 0 < await client.pttl(trimmed) <= 30_000
            # The newest entries and the terminal entry are kept: a late reader sees the end.
            tail = await bredis.subscribe(client, trimmed).collect()
            assert tail[-1][1] == 399


async def test_an_item_the_codec_cannot_encode_ends_the_stream_with_that_error(
    server: RedisServer, key: str
) -> None:
    async with connect(server) as client:
        with trio.fail_after(BOUND):
            with pytest.raises(TypeError, match="not JSON serializable"):
                await bredis.publish(bt.from_iterable([1, object()]), client, key)
            items, error = await bredis.subscribe(client, key).collect_result()
    assert [item for _, item in items] == [1]
    assert isinstance(error, bredis.RemoteStreamError)
    assert error.type == "TypeError"


async def test_a_foreign_entry_is_a_clear_error(server: RedisServer, key: str) -> None:
    async with connect(server) as client:
        with trio.fail_after(BOUND):
            await client.xadd(key, {"something": "else"})
            with pytest.raises(ValueError, match=r"not a beluga_trio.redis entry.*'something'"):
                await bredis.subscribe(client, key).collect()


async def test_bad_arguments_are_named(server: RedisServer) -> None:
    async with connect(server) as client:
        with pytest.raises(ValueError, match="entry id such as"):
            bredis.subscribe(client, "k", after="yesterday")
        with pytest.raises(TypeError, match="non-empty str key"):
            bredis.subscribe(client, "")
        with pytest.raises(ValueError, match="block > 0"):
            bredis.subscribe(client, "k", block=0)
        with pytest.raises(TypeError, match="needs a Stream"):
            await bredis.publish([1], client, "k")
        with pytest.raises(ValueError, match="maxlen >= 1, got 0"):
            await bredis.publish(bt.from_iterable([1]), client, "k", maxlen=0)
        with pytest.raises(ValueError, match="expire=None or seconds > 0, got -1"):
            await bredis.publish(bt.from_iterable([1]), client, "k", expire=-1)


# --------------------------------------------------------------------------------------------
# Leaving, cancelling, losing the server
# --------------------------------------------------------------------------------------------


async def test_leaving_a_subscriber_stops_its_blocking_read_at_once(
    server: RedisServer, key: str
) -> None:
    with no_leaks():
        async with connect(server) as client:
            with trio.fail_after(BOUND):
                await client.xadd(key, {"item": "1"})
                # An XREAD blocking for a minute is in flight when the consumer leaves; the
                # fail_after above (a sixth of that) proves that leaving does not wait for it.
                subscription = bredis.subscribe(client, key, block=60)
                async with subscription.open() as entries:
                    async for _, item in entries:
                        assert item == 1
                        with trio.move_on_after(0.05):
                            await entries.__anext__()  # blocked in XREAD, then cancelled
                        break
                # The connection that was blocked was dropped, not left waiting in the server.
                clients = await client.client_list()
                assert not [c for c in clients if c.get("cmd") == "xread"]


async def test_a_cancelled_anext_loses_nothing(server: RedisServer, key: str) -> None:
    got: list[int] = []
    async with connect(server) as client:
        with trio.fail_after(BOUND):
            async with bredis.subscribe(client, key, block=60).open() as entries:
                for i in range(3):
                    with trio.move_on_after(0.02):
                        await entries.__anext__()  # nothing there yet: cancelled in XREAD
                    await client.xadd(key, {"item": str(i)})
                    got.append((await entries.__anext__())[1])
    assert got == [0, 1, 2]


async def test_killing_the_server_mid_stream_is_a_clear_error_not_a_hang() -> None:
    with redis_server() as doomed:
        async with connect(doomed) as client:
            key = "beluga:test:doomed"
            with trio.fail_after(BOUND):
                await client.xadd(key, {"item": "0"})
                with pytest.raises(bredis.ConnectionLostError) as info:  # noqa: PT012
                    async with bredis.subscribe(client, key, block=60).open() as entries:
                        async for _entry_id, item in entries:
                            assert item == 0
                            doomed.kill()  # while the next XREAD blocks, or before it
    error = info.value
    assert error.last_id is not None
    assert f"after entry {error.last_id}; resume with after={error.last_id!r}" in str(error)
    assert isinstance(error.__cause__, coredis.exceptions.ConnectionError | OSError)


async def test_two_subscribers_in_two_tasks_and_a_share_in_front(
    server: RedisServer, key: str
) -> None:
    """A share feeds local subscribers and the publisher from one producer run."""
    probe = Probe()
    async with connect(server) as client:
        with trio.fail_after(BOUND):
            async with (
                bt.share(tokens(6, probe=probe), replay=6, overflow="wait") as shared,
                trio.open_nursery() as nursery,
            ):
                remote: list[list[int]] = []

                async def read_remote() -> None:
                    got = await bredis.subscribe(client, key).collect()
                    remote.append([item["i"] for _, item in got])

                nursery.start_soon(read_remote)
                nursery.start_soon(read_remote)
                local = shared.subscribe().map(lambda pair: pair[1])
                await bredis.publish(local, client, key)
    assert remote == [list(range(6)), list(range(6))]
    assert probe.entered == 1
