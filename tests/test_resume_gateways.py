"""Beyond one machine, shown with processes (issue 14): one ``redis-server`` and two gateway
processes (``python -m beluga_trio serve --redis ...``) on 127.0.0.1. Process A runs the model
once and publishes the reply to Redis; a client streams it through process B, disconnects
mid-way, reconnects to process A with ``Last-Event-ID`` and receives the rest: no gap, no
duplicate, the model called once.

Real processes and sockets, so real time: every wait is bounded; nothing measures time.
Skipped, saying how to run them, without ``redis-server`` (a failure under
``BELUGA_TRIO_REQUIRE_SERVERS=1``).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
from collections.abc import AsyncGenerator, Iterator
from contextlib import ExitStack, aclosing
from typing import Any

import attrs
import pytest
import trio
from _redis_server import RedisServer, collect_coredis_garbage, redis_server
from web_server import running_command

from beluga_trio.web._serve import REPLY, REPLY_KEY_PREFIX, parse_args

httpx2 = pytest.importorskip("httpx2")
coredis = pytest.importorskip("coredis")

BOUND = 20  # seconds: no test may wait longer than this
PROMPT = "resume me"
WHOLE_REPLY = f'You asked: "{PROMPT}"\n\n' + REPLY


@attrs.frozen
class Gateways:
    redis: RedisServer
    a: str  # process A's URL
    b: str  # process B's URL


@pytest.fixture(scope="module")
def gateways() -> Iterator[Gateways]:
    with ExitStack() as stack:
        redis = stack.enter_context(redis_server())
        command = ["-m", "beluga_trio", "serve", "--port", "0", "--delay", "0.01"]
        command += ["--redis", f"redis://127.0.0.1:{redis.port}", "--expire", "60"]
        _, url_a = stack.enter_context(running_command(command))
        _, url_b = stack.enter_context(running_command(command))
        yield Gateways(redis, url_a, url_b)
    collect_coredis_garbage()


@attrs.frozen
class SSEEvent:
    id: str | None
    event: str
    data: str


async def events(response: Any) -> AsyncGenerator[SSEEvent]:
    """The events of an SSE response, as a browser's ``EventSource`` parses them."""
    fields: dict[str, str] = {}
    lines = response.aiter_lines()
    try:
        async for line in lines:
            if not line:
                if "data" in fields:
                    yield SSEEvent(fields.get("id"), fields.get("event", "message"), fields["data"])
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                fields[name] = fields[name] + "\n" + value if name == "data" in fields else value
    finally:
        # Close the connection (the server sees the client leave), then run httpx2's chain of
        # generators to its end: reading a closed response raises at once.
        with trio.CancelScope(shield=True) as cleanup:
            cleanup.relative_deadline = BOUND
            await response.aclose()
            with contextlib.suppress(StopAsyncIteration, httpx2.HTTPError, httpx2.StreamError):
                while True:
                    await anext(lines)


async def start_reply(client: Any, url: str) -> str:
    response = await client.post(url + "/replies", json={"prompt": PROMPT})
    assert response.status_code == 201, response.text
    reply = response.json()
    assert reply["events"] == f"/replies/{reply['id']}/events"
    path: str = reply["events"]
    return path


async def records(client: Any, url: str) -> list[dict[str, Any]]:
    """The gateway's own record of every model stream it opened."""
    response = await client.get(url + "/demo/records")
    result: list[dict[str, Any]] = response.json()
    return result


async def entry_ids(redis: RedisServer, path: str) -> list[str]:
    """The ids of the reply's item entries in Redis, in order."""
    reply_id = path.split("/")[2]
    async with coredis.Redis(host="127.0.0.1", port=redis.port) as client:
        entries = await client.xrange(REPLY_KEY_PREFIX + reply_id)
    return [e.identifier.decode() for e in entries if b"item" in e.field_values]


async def test_a_client_reconnects_to_the_other_process_and_gets_the_rest_once(
    gateways: Gateways,
) -> None:
    async with httpx2.AsyncClient(timeout=BOUND) as client:
        with trio.fail_after(BOUND):
            path = await start_reply(client, gateways.a)

            # Through process B: five events, then the connection drops.
            before: list[SSEEvent] = []
            async with client.stream("GET", gateways.b + path) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                async with aclosing(events(response)) as stream:
                    async for event in stream:
                        before.append(event)
                        if len(before) == 5:
                            break
            (running,) = await records(client, gateways.a)
            assert running["outcome"] is None  # the model is still generating: mid-way

            # Back to process A, with the id of the last event received.
            last = before[-1].id
            assert last is not None
            after: list[SSEEvent] = []
            async with client.stream(
                "GET", gateways.a + path, headers={"Last-Event-ID": last}
            ) as response:
                assert response.status_code == 200
                after = [event async for event in events(response)]

            (record,) = await records(client, gateways.a)
            assert await records(client, gateways.b) == []  # B never ran the model
            ids = await entry_ids(gateways.redis, path)

    received = before + after
    assert all(event.event == "message" for event in received)
    # No gap, no duplicate: exactly the reply's entries, in order, and its whole text.
    assert [event.id for event in received] == ids
    assert "".join(json.loads(event.data) for event in received) == WHOLE_REPLY
    # The model ran once, in A, to its end: B's client leaving did not stop it.
    # (Its last chunk, which carries only the finish reason, has no text to publish.)
    assert (record["outcome"], record["chunks"]) == ("end", len(ids) + 1)


async def test_a_reconnect_may_go_to_any_process_any_number_of_times(
    gateways: Gateways,
) -> None:
    """Hop between the two processes every three events; each hop resumes right after."""
    got: list[SSEEvent] = []
    async with httpx2.AsyncClient(timeout=BOUND) as client:
        with trio.fail_after(BOUND):
            path = await start_reply(client, gateways.b)
            urls = [gateways.a, gateways.b]
            ended = False
            while not ended:
                headers = {} if not got else {"Last-Event-ID": str(got[-1].id)}
                url = urls[len(got) // 3 % 2]
                async with client.stream("GET", url + path, headers=headers) as response:
                    assert response.status_code == 200
                    ended = True
                    async with aclosing(events(response)) as stream:
                        async for event in stream:
                            got.append(event)
                            if len(got) % 3 == 0:
                                ended = False
                                break
            ids = await entry_ids(gateways.redis, path)
            assert len(await records(client, gateways.b)) == 1
    assert [event.id for event in got] == ids
    assert "".join(json.loads(event.data) for event in got) == WHOLE_REPLY


async def test_bad_and_unknown_last_event_ids_are_refused_with_a_reason(
    gateways: Gateways,
) -> None:
    async with httpx2.AsyncClient(timeout=BOUND) as client:
        with trio.fail_after(BOUND):
            path = await start_reply(client, gateways.a)
            cases = {
                "yesterday": (400, "invalid_last_event_id", "got 'yesterday'"),
                "1-0": (400, "invalid_last_event_id", "has no such entry"),
                "99999999999999-0": (400, "invalid_last_event_id", "has no such entry"),
            }
            for last, (status, kind, words) in cases.items():
                response = await client.get(gateways.b + path, headers={"Last-Event-ID": last})
                assert response.status_code == status, (last, response.text)
                error = response.json()["error"]
                assert error["type"] == kind
                assert words in error["message"]
            missing = await client.get(gateways.b + "/replies/0123abcd/events")
            assert missing.status_code == 404
            assert "never started, or it has expired" in missing.json()["error"]["message"]
            gone = await client.get(
                gateways.b + "/replies/0123abcd/events", headers={"Last-Event-ID": "1-0"}
            )
            assert gone.status_code == 404
            assert "no such stream" in gone.json()["error"]["message"]


async def test_when_the_owner_stops_every_reader_ends_with_an_error_not_a_clean_end(
    gateways: Gateways,
) -> None:
    """The gateway that runs the model shuts down mid-reply (Ctrl+C): its reply stops, and a
    client reading through the other process gets an error event, not a hang or a clean end."""
    command = ["-m", "beluga_trio", "serve", "--port", "0", "--delay", "0.05"]
    command += ["--redis", f"redis://127.0.0.1:{gateways.redis.port}"]
    got: list[SSEEvent] = []
    async with httpx2.AsyncClient(timeout=BOUND) as client:
        with trio.fail_after(BOUND), running_command(command) as (owner, url):
            path = await start_reply(client, url)
            async with (
                client.stream("GET", gateways.b + path) as response,
                aclosing(events(response)) as stream,
            ):
                async for event in stream:
                    got.append(event)
                    if len(got) == 2:
                        owner.send_signal(signal.SIGINT)  # the owner stops
    assert [event.event for event in got[:-1]] == ["message"] * (len(got) - 1)
    assert got[-1].event == "error"
    assert json.loads(got[-1].data) == {"message": "the stream failed on the server"}
    assert len(got) < len(WHOLE_REPLY.split())  # stopped mid-reply


def test_the_redis_option_needs_a_url() -> None:
    assert parse_args(["--redis", "redis://127.0.0.1:6379"]).redis == "redis://127.0.0.1:6379"
    with pytest.raises(SystemExit):
        parse_args(["--redis", "127.0.0.1:6379"])


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_resumes_through_the_other_process(gateways: Gateways) -> None:
    async with httpx2.AsyncClient(timeout=BOUND) as client:
        with trio.fail_after(BOUND):
            path = await start_reply(client, gateways.a)
            async with client.stream("GET", gateways.a + path) as response:
                first = [event async for event in events(response)]
            middle = first[len(first) // 2]
            assert middle.id is not None
            done = await trio.run_process(
                [
                    *("curl", "-sSN", "--max-time", str(BOUND)),
                    *("-H", f"Last-Event-ID: {middle.id}", gateways.b + path),
                ],
                capture_stdout=True,
            )
    text = done.stdout.decode()
    rest = [block for block in text.split("\n\n") if block.startswith("id: ")]
    assert [block.split("\n")[0].removeprefix("id: ") for block in rest] == [
        event.id for event in first[len(first) // 2 + 1 :]
    ]
