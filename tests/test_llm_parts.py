"""The HTTP model's parts, offline: retry decisions and Retry-After, the chunk parser's fast
path against its validating path, the SSE decoder's event bound, the redactor, and the
`flatten` stage that hands a producer's batches out item by item."""

from __future__ import annotations

import email.utils
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

import beluga_trio as bt
from beluga_trio._stage import SCHEDULE_EVERY
from beluga_trio.llm import (
    IncompleteReplyError,
    MalformedEventError,
    ModelConnectionError,
    ModelHTTPError,
)
from beluga_trio.llm._errors import REDACTED, Redactor, shorten
from beluga_trio.llm._flatten import flatten
from beluga_trio.llm._openai_format import _Parse, parse_chunk, request_body
from beluga_trio.llm._retry import backoff, is_retryable, retry_after
from beluga_trio.llm._sse import SSEDecoder

# ------------------------------------------------------------------------------ retries

NOW = 1_700_000_000.0


def test_retry_after_ms_wins_over_seconds() -> None:
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}, NOW) == 1.5
    assert retry_after({"retry-after": "7"}, NOW) == 7
    assert retry_after({"retry-after": " 2.5 "}, NOW) == 2.5
    assert retry_after({}, NOW) is None


def test_retry_after_as_an_http_date() -> None:
    date = email.utils.formatdate(NOW + 30, usegmt=True)
    assert retry_after({"retry-after": date}, NOW) == pytest.approx(30)
    past = email.utils.formatdate(NOW - 30, usegmt=True)
    assert retry_after({"retry-after": past}, NOW) == 0.0


@pytest.mark.parametrize("value", ["soon", "-3", "inf", "nan", "", "Wed, 99 Foo 2020"])
def test_a_retry_after_that_means_nothing_is_ignored(value: str) -> None:
    assert retry_after({"retry-after": value}, NOW) is None
    assert retry_after({"retry-after-ms": value}, NOW) is None


def test_backoff_grows_with_jitter_up_to_the_cap() -> None:
    def bounds(low: float, high: float) -> float:
        return high if low >= 0 else -1.0

    ceilings = [backoff(a, base=0.5, cap=4.0, server_says=None, jitter=bounds) for a in range(6)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    picks = {backoff(3, base=0.5, cap=60, server_says=None) for _ in range(50)}
    assert all(2.0 <= p <= 4.0 for p in picks if p is not None)
    assert len(picks) > 1  # jittered


def test_backoff_takes_the_servers_figure_unless_it_is_too_long() -> None:
    assert backoff(0, base=0.5, cap=60, server_says=7.0) == 7.0
    assert backoff(5, base=0.5, cap=60, server_says=0.0) == 0.0
    assert backoff(0, base=0.5, cap=60, server_says=61.0) is None


def test_what_is_retryable() -> None:
    def http(status: int, code: str | None = None) -> ModelHTTPError:
        return ModelHTTPError(status, "x", code=code)

    assert is_retryable(http(429, "rate_limit_exceeded"))
    assert not is_retryable(http(429, "insufficient_quota"))
    assert all(is_retryable(http(s)) for s in (408, 409, 500, 502, 503, 504, 529))
    assert not any(is_retryable(http(s)) for s in (400, 401, 403, 404, 422))
    assert is_retryable(ModelConnectionError("refused"))
    assert not is_retryable(IncompleteReplyError("cut short"))
    assert not is_retryable(MalformedEventError("bad", "x"))


# ------------------------------------------------------------------------------ secrets


def test_redactor_replaces_longer_secrets_first_and_ignores_tiny_ones() -> None:
    redact = Redactor(["sk-abcdef", "Bearer sk-abcdef", "ab", ""])
    assert redact("Bearer sk-abcdef and sk-abcdef, ab") == f"{REDACTED} and {REDACTED}, ab"
    assert not Redactor(["", "x"])


def test_shorten_redacts_before_cutting_at_every_position() -> None:
    key = "sk-live-0123456789ABCDEFGHIJ"
    redact = Redactor([key])
    for start in range(0, 40):
        text = "a" * start + key + "b" * 50
        out = shorten(text, limit=30, redact=redact)
        assert key[:4] not in out, (start, out)


# ------------------------------------------------------------------------------ chunks

Strategy = st.SearchStrategy[Any]


def _dicts(required: dict[str, Strategy], optional: dict[str, Strategy]) -> Strategy:
    return st.fixed_dictionaries(required, optional=optional)


_texts: Strategy = st.one_of(st.none(), st.text(max_size=5))
_calls: Strategy = st.lists(
    _dicts(
        {"index": st.integers(0, 2)},
        {"id": _texts, "function": _dicts({}, {"arguments": _texts})},
    ),
    max_size=2,
)
_deltas = _dicts(
    {},
    {
        "role": st.sampled_from(["assistant", None]),
        "content": _texts,
        "refusal": _texts,
        "reasoning_content": _texts,
        "tool_calls": st.one_of(st.none(), _calls),
    },
)
_choices = _dicts(
    {"delta": _deltas},
    {
        "index": st.integers(0, 1),
        "finish_reason": st.sampled_from([None, "stop", "length"]),
        "logprobs": st.none(),
    },
)
_usages: Strategy = st.one_of(
    st.none(),
    _dicts({"prompt_tokens": st.integers(0, 9), "completion_tokens": st.integers(0, 9)}, {}),
)
_events = _dicts(
    {"choices": st.lists(_choices, max_size=2)},
    {
        "model": st.one_of(st.none(), st.text(max_size=3)),
        "object": st.sampled_from(["chat.completion.chunk", "chat.completion"]),
        "usage": _usages,
    },
)


@given(_events)
def test_the_fast_path_agrees_with_the_validating_parser(event: dict[str, Any]) -> None:
    data = json.dumps(event)
    assert parse_chunk(data) == _Parse(data, str).chunk(json.loads(data))


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ('{"id": "x", "object": "keepalive"}', "got an object of type 'keepalive'"),
        ("{}", "with neither choices nor usage"),
        ('{"choices": [{"delta": {"content": [{"type": "image"}]}}]}', "type 'image'"),
        ('{"choices": [{"delta": {"content": [3]}}]}', "each part of delta.content"),
    ],
)
def test_what_is_not_a_chunk_is_named(data: str, problem: str) -> None:
    with pytest.raises(MalformedEventError, match=problem):
        parse_chunk(data)


def test_content_parts_and_a_plain_thinking_string() -> None:
    data = json.dumps(
        {
            "choices": [
                {
                    "delta": {
                        "content": [
                            {"type": "thinking", "thinking": "hm"},
                            {"type": "text", "text": "A"},
                            {"type": "refusal", "refusal": "no"},
                        ]
                    }
                }
            ]
        }
    )
    chunk = parse_chunk(data)
    assert chunk is not None
    assert (chunk.delta, chunk.reasoning_delta, chunk.refusal) == ("A", "hm", "no")


def test_stream_options() -> None:
    assert request_body("m", (), {})["stream_options"] == {"include_usage": True}
    assert "stream_options" not in request_body("m", (), {"stream_options": None})
    given_options = request_body("m", (), {"stream_options": {"include_usage": False}})
    assert given_options["stream_options"] == {"include_usage": False}
    with pytest.raises(TypeError, match="stream_options"):
        request_body("m", (), {"stream_options": "yes"})


# ------------------------------------------------------------------------------ SSE bound


def test_an_event_is_bounded_as_well_as_a_line() -> None:
    decoder = SSEDecoder(max_line=100, max_event=250)
    assert decoder.feed(b"data: " + b"x" * 90 + b"\n") == []
    assert decoder.feed(b"data: " + b"y" * 90 + b"\n") == []
    with pytest.raises(MalformedEventError, match="more than 250 characters") as caught:
        decoder.feed(b"data: " + b"z" * 90 + b"\n")
    assert caught.value.data.startswith("x")
    fresh = SSEDecoder(max_line=100, max_event=250)
    assert [e.data for e in fresh.feed(b"data: a\n\n" * 5)] == ["a"] * 5  # reset per event
    with pytest.raises(MalformedEventError, match="line is longer than 100"):
        SSEDecoder(max_line=100).feed(b"data: " + b"x" * 200)
    with pytest.raises(ValueError, match="max_line"):
        SSEDecoder(max_line=0)


# ------------------------------------------------------------------------------ flatten


@bt.stream
async def batches(  # noqa: ASYNC124 - a @stream body is an async generator
    sizes: list[int], log: list[str]
) -> AsyncIterator[list[int]]:
    start = 0
    for size in sizes:
        log.append(f"batch {start}")
        yield list(range(start, start + size))
        start += size


async def test_flatten_hands_out_every_item_in_order() -> None:
    log: list[str] = []
    sizes = [3, 0, 1, 5, 0]
    assert await flatten(batches(sizes, log)).collect() == list(range(9))
    async with flatten(batches(sizes, log)).open() as items:
        assert [x async for x in items] == list(range(9))
    assert await flatten(batches(sizes, log)).take(4).collect() == [0, 1, 2, 3]


async def test_flatten_asks_for_a_batch_only_when_its_items_are_taken() -> None:
    log: list[str] = []
    async with flatten(batches([2, 2], log)).open() as items:
        assert await anext(items) == 0
        assert log == ["batch 0"]
        assert await anext(items) == 1
        assert log == ["batch 0"]  # lock-step: the next batch is not read ahead
        assert await anext(items) == 2
        assert log == ["batch 0", "batch 2"]


async def test_flatten_is_cancel_safe(autojump_clock: trio.testing.MockClock) -> None:
    @bt.stream
    async def slow() -> AsyncIterator[list[int]]:
        await trio.sleep(1)
        yield [0, 1]
        await trio.sleep(1)
        yield [2]

    got: list[int] = []
    async with flatten(slow()).open() as items:
        while len(got) < 3:
            with trio.move_on_after(0.3):
                got.append(await anext(items))
    assert got == [0, 1, 2]  # cancelled requests lost nothing


async def test_flatten_takes_a_schedule_point_every_few_hundred_items() -> None:
    @bt.stream
    async def one_big_batch() -> AsyncIterator[list[int]]:  # noqa: ASYNC124 - a @stream body
        yield list(range(20 * SCHEDULE_EVERY))

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        before = ticks
        got = await flatten(one_big_batch()).map(lambda x: x).collect()
        nursery.cancel_scope.cancel()
    assert got == list(range(20 * SCHEDULE_EVERY))
    # About 5 passes come from opening the stream and asking the producer (a batch, then the
    # end); one every SCHEDULE_EVERY items while the held batch is handed out makes ~20 more.
    assert ticks - before >= 15
