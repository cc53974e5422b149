"""Aggregation of a streamed reply (`Aggregator`, `aggregate`) and chunks as events
(`to_events`), including hypothesis: any split of the same reply aggregates to the same
message."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

import beluga_trio as bt
from beluga_trio._events import Event, EventType
from beluga_trio.llm import Aggregator, Fail, Pause, ScriptedModel, aggregate, to_events
from beluga_trio.schema import Message, Role, StreamChunk, ToolCall, Usage
from beluga_trio.testing import no_leaks

# ---------------------------------------------------------------------------- aggregation


def test_text_reasoning_finish_usage_and_model_id() -> None:
    aggregator = Aggregator()
    for chunk in [
        StreamChunk(reasoning_delta="Let me ", model_id="m-1"),
        StreamChunk(reasoning_delta="think.", model_id="m-2"),
        StreamChunk(delta="Hello"),
        StreamChunk(delta=", world", finish_reason="length"),
        StreamChunk(finish_reason="stop"),
        StreamChunk(usage=Usage(5, 2)),
    ]:
        aggregator.add(chunk)
    assert aggregator.chunks == 6
    assert aggregator.message() == Message(
        Role.ASSISTANT,
        "Hello, world",
        reasoning="Let me think.",
        finish_reason="stop",  # the last one
        usage=Usage(5, 2),
        model_id="m-1",  # the first one
    )


def test_tool_calls_are_assembled_from_deltas_by_index() -> None:
    aggregator = Aggregator()
    deltas = [
        ToolCall(1, "call_b", "get_time", ""),
        ToolCall(0, "call_a", "", '{"ci'),
        ToolCall(0, "", "get_weather", 'ty": '),  # the name comes late: first one that has it
        ToolCall(1, "", "", '{"tz": "CET"}'),
        ToolCall(0, "", "", '"Paris"}'),
    ]
    for delta in deltas:
        aggregator.add(StreamChunk(tool_calls=(delta,)))
    assert aggregator.tool_calls() == (
        ToolCall(0, "call_a", "get_weather", '{"city": "Paris"}'),
        ToolCall(1, "call_b", "get_time", '{"tz": "CET"}'),
    )


def test_a_new_id_at_the_same_index_starts_a_new_call() -> None:
    aggregator = Aggregator()
    aggregator.add(
        StreamChunk(tool_calls=(ToolCall(0, "a", "f", "{}"), ToolCall(0, "b", "g", "{")))
    )
    aggregator.add(StreamChunk(tool_calls=(ToolCall(0, "", "", "}"),)))
    assert aggregator.tool_calls() == (ToolCall(0, "a", "f", "{}"), ToolCall(0, "b", "g", "{}"))


def test_the_partial_message_is_available_at_any_time() -> None:
    aggregator = Aggregator()
    assert aggregator.message() == Message(Role.ASSISTANT)
    aggregator.add(StreamChunk(delta="Hal"))
    assert aggregator.message().content == "Hal"
    aggregator.add(StreamChunk(delta="f"))
    assert aggregator.message().content == "Half"


def test_add_refuses_what_is_not_a_chunk() -> None:
    with pytest.raises(TypeError, match="StreamChunk"):
        Aggregator().add("text")  # type: ignore[arg-type]


async def test_aggregate_opens_and_closes_the_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    model = ScriptedModel(["Hel", "lo"], delay=0.5, usage=Usage(1, 2))
    with no_leaks():
        message = await aggregate(model.stream("hi"))
    assert message.content == "Hello"
    assert message.usage == Usage(1, 2)
    assert model.calls[0].closed_at == 1.0


async def test_aggregate_of_an_empty_stream_is_an_empty_reply() -> None:
    assert await aggregate(bt.from_iterable([])) == Message(Role.ASSISTANT)


async def test_aggregate_raises_the_stream_error_as_itself() -> None:
    error = ConnectionResetError("gone")
    with pytest.raises(ConnectionResetError) as caught:
        await aggregate(ScriptedModel(["a", Fail(error)]).stream("hi"))
    assert caught.value is error


# ------------------------------------------------------------ hypothesis: any split, same reply


def pieces(text: str, cuts: list[int]) -> list[str]:
    """``text`` cut at the given positions (empty pieces allowed)."""
    points = sorted(min(c, len(text)) for c in cuts)
    bounds = [0, *points, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


@st.composite
def replies(draw: st.DrawFn) -> tuple[Message, list[list[StreamChunk]]]:
    """A reply, and several different chunkings of it."""
    text = draw(st.text(max_size=40))
    reasoning = draw(st.text(max_size=20))
    calls = [
        ToolCall(i, f"call_{i}", draw(st.sampled_from(["f", "get_weather", "sum"])), args)
        for i, args in enumerate(draw(st.lists(st.text(max_size=30), max_size=3)))
    ]
    usage = draw(st.none() | st.builds(Usage, st.integers(0, 99), st.integers(0, 99)))
    finish = "tool_calls" if calls else "stop"
    expected = Message(
        Role.ASSISTANT,
        text,
        tool_calls=tuple(calls),
        reasoning=reasoning,
        finish_reason=finish,
        usage=usage,
    )
    cut_lists = st.lists(st.integers(0, 40), max_size=6)
    chunkings: list[list[StreamChunk]] = []
    for _ in range(draw(st.integers(1, 3))):
        queues: list[list[StreamChunk]] = [
            [StreamChunk(delta=p) for p in pieces(text, draw(cut_lists))],
            [StreamChunk(reasoning_delta=p) for p in pieces(reasoning, draw(cut_lists))],
        ]
        for call in calls:
            args = pieces(call.arguments, draw(cut_lists))
            first = ToolCall(call.index, call.id, call.name, args[0])
            rest = [ToolCall(call.index, arguments=a) for a in args[1:]]
            queues.append([StreamChunk(tool_calls=(d,)) for d in [first, *rest]])
        # Interleave the queues in a drawn order, each queue keeping its own order.
        chunks: list[StreamChunk] = []
        while any(queues):
            live = [q for q in queues if q]
            chunks.append(live[draw(st.integers(0, len(live) - 1))].pop(0))
        chunks.append(StreamChunk(finish_reason=finish))
        chunks.append(StreamChunk(usage=usage))
        chunkings.append(chunks)
    return expected, chunkings


@given(replies())
def test_any_split_of_the_same_reply_aggregates_to_the_same_message(
    case: tuple[Message, list[list[StreamChunk]]],
) -> None:
    expected, chunkings = case
    for chunks in chunkings:
        aggregator = Aggregator()
        for chunk in chunks:
            aggregator.add(chunk)
        assert aggregator.message() == expected
        assert trio.run(aggregate, bt.from_iterable(chunks)) == expected


@given(st.text(max_size=60), st.lists(st.integers(0, 60), max_size=10))
def test_the_data_events_of_any_split_join_to_the_text(text: str, cuts: list[int]) -> None:
    chunks = [StreamChunk(delta=p) for p in pieces(text, cuts)]

    async def run() -> list[Event[Any]]:
        return await to_events(bt.from_iterable(chunks)).collect()

    events = trio.run(run)
    assert "".join(e.payload for e in events if e.type is EventType.DATA) == text
    assert all(e.payload for e in events if e.type is EventType.DATA)  # no empty deltas
    assert events[-1].type is EventType.DONE
    assert events[-1].payload.content == text


# ----------------------------------------------------------------------------------- events


async def test_to_events_data_tool_calls_then_done_with_usage_and_timing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    model = ScriptedModel(
        ["Hel", "lo", ToolCall(0, "c1", "f", '{"x"'), ToolCall(0, arguments=": 1}")],
        first_delay=0.4,
        delay=0.1,
        usage=Usage(7, 4),
    )
    with no_leaks():
        events = await to_events(model.stream("hi")).collect()
    assert [e.type for e in events] == ["data", "data", "tool_call", "done"]
    assert [e.payload for e in events[:2]] == ["Hel", "lo"]
    assert events[2].payload == ToolCall(0, "c1", "f", '{"x": 1}')
    done = events[3]
    assert done.payload == Message(
        Role.ASSISTANT,
        "Hello",
        tool_calls=(ToolCall(0, "c1", "f", '{"x": 1}'),),
        finish_reason="tool_calls",
        usage=Usage(7, 4),
        model_id="scripted",
    )
    meta = dict(done.meta)
    assert meta["usage"] == Usage(7, 4)
    assert meta["finish_reason"] == "tool_calls"
    assert meta["chunks"] == 5  # four scripted + the final one
    assert meta["time_to_first_chunk"] == pytest.approx(0.4)
    # chunks 2..5 arrive over 0.3 s (the final chunk comes right after the last delta)
    assert meta["chunks_per_second"] == pytest.approx(4 / 0.3)
    assert meta["duration"] == pytest.approx(0.7)


async def test_timing_is_measured_from_the_opening(autojump_clock: trio.testing.MockClock) -> None:
    events = to_events(ScriptedModel(["a"], delay=2).stream("hi"))
    await trio.sleep(50)  # a cold stream: no clock runs before it is opened
    done = (await events.collect())[-1]
    assert done.meta["time_to_first_chunk"] == 2
    assert done.meta["chunks_per_second"] is None  # the final chunk came at the same time
    assert done.meta["duration"] == 2


async def test_an_empty_reply_has_a_done_event_without_timing() -> None:
    (done,) = await to_events(bt.from_iterable([])).collect()
    assert done.type is EventType.DONE
    assert done.meta["chunks"] == 0
    assert done.meta["time_to_first_chunk"] is None
    assert done.meta["chunks_per_second"] is None
    assert done.meta["usage"] is None


async def test_reasoning_events_are_opt_in() -> None:
    chunks = [StreamChunk(reasoning_delta="hmm"), StreamChunk(delta="yes")]
    plain = await to_events(bt.from_iterable(chunks)).collect()
    assert [(e.type, e.payload) for e in plain[:-1]] == [("data", "yes")]
    with_reasoning = await to_events(bt.from_iterable(chunks), reasoning=True).collect()
    assert [(e.payload, dict(e.meta)) for e in with_reasoning[:-1]] == [
        ("hmm", {"reasoning": True}),
        ("yes", {}),
    ]
    assert with_reasoning[-1].payload.reasoning == "hmm"


async def test_errors_are_raised_as_themselves_by_default(
    autojump_clock: trio.testing.MockClock,
) -> None:
    error = ValueError("bad chunk")
    model = ScriptedModel(["a", "b", Fail(error)], delay=1)
    items, raised = await to_events(model.stream("hi")).collect_result()
    assert raised is error
    assert [e.payload for e in items] == ["a", "b"]
    assert model.calls[0].closed_at == 2


async def test_errors_as_an_error_event_with_the_partial_reply(
    autojump_clock: trio.testing.MockClock,
) -> None:
    error = ValueError("bad chunk")
    model = ScriptedModel(["a", "b", Pause(1), Fail(error)], delay=1)
    events = await to_events(model.stream("hi"), errors="event").collect()
    assert [e.type for e in events] == ["data", "data", "error"]
    last = events[-1]
    assert last.error is error
    assert last.payload == Message(Role.ASSISTANT, "ab", model_id="scripted")
    assert last.meta["chunks"] == 2
    assert last.meta["duration"] == 3


async def test_a_timeout_becomes_an_error_event(autojump_clock: trio.testing.MockClock) -> None:
    model = ScriptedModel(["a", Pause(10), "b"], delay=0.1)
    events = await to_events(model.stream("hi").timeout(between=1), errors="event").collect()
    assert isinstance(events[-1].error, trio.TooSlowError)
    assert model.calls[0].closed_at == pytest.approx(1.1)


async def test_cancellation_is_never_an_error_event(autojump_clock: trio.testing.MockClock) -> None:
    model = ScriptedModel(["a", Pause(10), "b"])
    seen: list[Event[Any]] = []
    with trio.move_on_after(1) as scope:
        await to_events(model.stream("hi"), errors="event").for_each(seen.append)
    assert scope.cancelled_caught
    assert [e.type for e in seen] == ["data"]
    assert model.calls[0].closed_at == 1


async def test_leaving_the_events_early_closes_the_model_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    model = ScriptedModel(list("abcdefgh"), delay=1)
    with no_leaks():
        async with to_events(model.stream("hi")).open() as events:
            async for event in events:
                if event.payload == "c":
                    break
    assert model.calls[0].closed_at == 3
    assert model.calls[0].chunks == 3  # lock-step through both layers


def test_errors_option_is_checked() -> None:
    with pytest.raises(ValueError, match="errors"):
        to_events(bt.from_iterable([]), errors="ignore")  # type: ignore[arg-type]


async def test_to_events_accepts_any_chunk_stream() -> None:
    @bt.stream
    async def chunks() -> AsyncIterator[StreamChunk]:
        await trio.sleep(0.01)
        yield StreamChunk(delta="x")
        yield StreamChunk(finish_reason="stop", usage=Usage(1, 1))

    done = (await to_events(chunks()).collect())[-1]
    assert done.meta["usage"] == Usage(1, 1)
    assert done.meta["finish_reason"] == "stop"
