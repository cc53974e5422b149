"""`beluga_trio.web.resumable_sse` called as an ASGI application in the test's own trio run,
against a real ``redis-server`` (skipped, saying how to run it, when it is not installed).
The processes-and-sockets version is tests/test_resume_gateways.py."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from _asgi_client import ASGIClient as Client
from _redis_server import RedisServer, collect_coredis_garbage, free_port, redis_server

import beluga_trio as bt
from beluga_trio.testing import no_leaks

coredis = pytest.importorskip("coredis")

# coredis (6.9) never closes the anyio memory streams of a connection it drops (after a
# cancelled blocking read): when the garbage collector runs during a test, not only in
# `collect_coredis_garbage` after it, that one known warning must not fail the test.
pytestmark = pytest.mark.filterwarnings(r"ignore:Unclosed <MemoryObject:ResourceWarning")
bredis = pytest.importorskip("beluga_trio.redis")
web = pytest.importorskip("beluga_trio.web")

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
    return f"beluga:test:web:{request.node.name}"


@asynccontextmanager
async def connect(port: int) -> AsyncGenerator[Any]:
    async with coredis.Redis(host="127.0.0.1", port=port) as client:
        yield client


async def serve(app: Any, client: Client) -> None:
    await client.call(app)


async def test_every_event_has_its_entry_id_then_it_ends(server: RedisServer, key: str) -> None:
    async with connect(server.port) as redis:
        with trio.fail_after(BOUND):
            await bredis.publish(bt.from_iterable(["a", "b\nc"]), redis, key)
            ids = [e.identifier.decode() for e in await redis.xrange(key)][1:-1]
            client = Client()
            app = web.resumable_sse(redis, key, heartbeat=None)
            await serve(app, client)
    assert client.status == 200
    assert client.ended
    assert client.events() == [(ids[0], '"a"'), (ids[1], '"b\\nc"')]
    assert (app.status, app.outcome, app.events) == (200, web.Outcome.END, 2)
    with pytest.raises(RuntimeError, match="serves one request"):
        await serve(app, Client())


async def test_last_event_id_resumes_right_after_it(server: RedisServer, key: str) -> None:
    async with connect(server.port) as redis:
        with trio.fail_after(BOUND):
            await bredis.publish(bt.from_iterable(range(5)), redis, key)
            whole = Client()
            await serve(web.resumable_sse(redis, key), whole)
            for cut in range(5):
                rest = Client(last_event_id=whole.events()[cut][0])
                await serve(web.resumable_sse(redis, key), rest)
                assert rest.events() == whole.events()[cut + 1 :]


@pytest.mark.parametrize(
    "case",
    [
        ("nonsense", 400, "invalid_last_event_id", "got 'nonsense'"),
        ("1-0", 400, "invalid_last_event_id", "has no such entry"),
        ("7", 400, "invalid_last_event_id", "has no such entry"),
        (None, 404, "not_found", "never started, or it has expired"),
    ],
)
async def test_a_bad_last_event_id_or_missing_stream_is_refused_before_streaming(
    server: RedisServer, key: str, case: tuple[str | None, int, str, str]
) -> None:
    last, status, kind, words = case
    async with connect(server.port) as redis:
        with trio.fail_after(BOUND):
            if status != 404:
                await bredis.publish(bt.from_iterable(range(3)), redis, key)
            else:
                await redis.delete([key])
            client = Client(last)
            app = web.resumable_sse(redis, key)
            await serve(app, client)
    assert (client.status, app.status, app.outcome) == (status, status, None)
    error = json.loads(client.body)["error"]
    assert error["type"] == kind
    assert words in error["message"]


async def test_events_trimmed_away_are_gone_not_skipped(server: RedisServer, key: str) -> None:
    async with connect(server.port) as redis:
        with trio.fail_after(BOUND):
            await bredis.publish(bt.from_iterable(range(3)), redis, key)
            first_item = (await redis.xrange(key))[1].identifier.decode()
            await redis.xtrim(key, coredis.PureToken.MAXLEN, 2)  # exact: the last two kept
            client = Client(first_item)
            await serve(web.resumable_sse(redis, key), client)
    assert client.status == 410
    assert "have been trimmed" in client.body.decode()


async def test_unreachable_redis_is_503() -> None:
    port = free_port()  # nothing listens there
    async with coredis.Redis(host="127.0.0.1", port=port) as redis:
        with trio.fail_after(BOUND):
            client = Client()
            await serve(web.resumable_sse(redis, "k"), client)
    assert client.status == 503
    assert "unreachable" in client.body.decode()


async def test_a_failed_stream_ends_with_an_error_event_not_a_clean_end(
    server: RedisServer, key: str
) -> None:
    @bt.stream
    async def fails() -> AsyncGenerator[int]:
        await trio.lowlevel.checkpoint()
        yield 1
        raise ConnectionResetError("secret upstream detail")

    async with connect(server.port) as redis:
        with trio.fail_after(BOUND):
            with pytest.raises(ConnectionResetError):
                await bredis.publish(fails(), redis, key)
            client = Client()
            app = web.resumable_sse(redis, key, error_message="the reply failed")
            await serve(app, client)
    assert client.events()[0][1] == "1"
    assert client.events()[-1] == ("error", '{"message": "the reply failed"}')
    assert "secret" not in client.body.decode()
    assert app.outcome is web.Outcome.ERROR


async def test_leaving_stops_only_the_subscription_never_the_publisher(
    server: RedisServer, key: str
) -> None:
    """Two readers; one leaves mid-way: the publisher and the other reader go on to the end."""
    release = trio.Event()
    finished: list[str] = []

    @bt.stream
    async def paced() -> AsyncGenerator[int]:
        for i in range(6):
            if i == 3:
                await release.wait()  # until the first reader has left
            yield i
        finished.append("source")

    with no_leaks():
        async with connect(server.port) as redis, trio.open_nursery() as nursery:
            with trio.fail_after(BOUND):
                await nursery.start(bredis.publish, paced(), redis, key)
                leaver, stayer = Client(), Client()
                leaving_app = web.resumable_sse(redis, key, block=60)
                left = trio.Event()

                async def leave_in_time() -> None:
                    await serve(leaving_app, leaver)
                    left.set()

                nursery.start_soon(leave_in_time)
                nursery.start_soon(serve, web.resumable_sse(redis, key), stayer)
                while len(leaver.events()) < 3:
                    await leaver.received.wait()
                leaver.leave()  # while its XREAD blocks for up to a minute
                await left.wait()  # the response has returned: its subscription has ended
                release.set()
    assert leaving_app.outcome is web.Outcome.DISCONNECT
    assert [data for _, data in leaver.events()] == ["0", "1", "2"]
    assert [data for _, data in stayer.events()] == [str(i) for i in range(6)]
    assert stayer.ended
    assert finished == ["source"]


def test_bad_arguments_are_named() -> None:
    redis: Any = object()
    with pytest.raises(TypeError, match="non-empty str key, got ''"):
        web.resumable_sse(redis, "")
    with pytest.raises(TypeError, match="encoder must be a function"):
        web.resumable_sse(redis, "k", encoder="json")
    with pytest.raises(ValueError, match="heartbeat must be"):
        web.resumable_sse(redis, "k", heartbeat=-1)
    with pytest.raises(ValueError, match="block > 0"):
        web.resumable_sse(redis, "k", block=0)
