"""`ScriptedModel`: offline, deterministic, and a `ChatModel` like the HTTP one."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import beluga_trio as bt
from beluga_trio.llm import (
    ChatModel,
    Fail,
    Pause,
    ScriptedModel,
    Step,
    as_messages,
    split_words,
)
from beluga_trio.schema import Message, Role, StreamChunk, ToolCall, Usage
from beluga_trio.testing import no_leaks


def test_split_words_joins_back() -> None:
    assert split_words("Hi there,  you ") == ["Hi", " there,", "  you", " "]
    for text in ["", " ", "a", "  lead", "trail  ", "many  spaces\nand\tlines"]:
        assert "".join(split_words(text)) == text


def test_it_is_a_chat_model() -> None:
    assert isinstance(ScriptedModel([]), ChatModel)


def test_as_messages() -> None:
    assert as_messages("hi") == (Message.user("hi"),)
    conversation = [Message.system("be brief"), Message.user("hi")]
    assert as_messages(conversation) == tuple(conversation)
    with pytest.raises(TypeError, match="Message"):
        as_messages([Message.user("hi"), "oops"])  # type: ignore[list-item]


async def test_chunks_come_with_the_scripted_delays(
    autojump_clock: trio.testing.MockClock,
) -> None:
    model = ScriptedModel(["a", "b", Pause(2), "c"], first_delay=1, delay=0.5, usage=Usage(1, 3))
    arrivals: list[tuple[str, float]] = []
    async with model.stream("hi").open() as chunks:
        async for chunk in chunks:
            arrivals.append((chunk.delta or f"<{chunk.finish_reason}>", trio.current_time()))
            assert chunk.model_id == "scripted"
    assert arrivals == [("a", 1), ("b", 1.5), ("c", 4), ("<stop>", 4)]


async def test_the_final_chunk_carries_finish_reason_and_usage() -> None:
    model = ScriptedModel(["one", " two"])
    chunks = await model.stream([Message.system("x y z"), Message.user("a b")]).collect()
    assert chunks[-1] == StreamChunk(
        finish_reason="stop", usage=Usage(5, 2), model_id="scripted"
    )  # "auto": words of the prompt, chunks sent
    tools = ScriptedModel([ToolCall(0, "c", "f", "{}")], usage=None, model_id="m")
    assert (await tools.stream("hi").collect())[-1] == StreamChunk(
        finish_reason="tool_calls", model_id="m"
    )
    forced = ScriptedModel(["x"], finish_reason="length")
    assert (await forced.invoke("hi")).finish_reason == "length"


async def test_invoke_is_the_aggregate_of_the_stream() -> None:
    model = ScriptedModel(
        [
            StreamChunk(reasoning_delta="thinking"),
            "Sure",
            ToolCall(0, "call_1", "lookup", '{"q": '),
            ToolCall(0, arguments='"trio"}'),
        ]
    )
    reply = await model.invoke("find trio", temperature=0)
    assert reply == Message(
        Role.ASSISTANT,
        "Sure",
        tool_calls=(ToolCall(0, "call_1", "lookup", '{"q": "trio"}'),),
        reasoning="thinking",
        finish_reason="tool_calls",
        usage=Usage(2, 4),  # two words asked, four chunks sent
        model_id="scripted",
    )
    assert dict(model.calls[0].options) == {"temperature": 0}


async def test_a_failure_at_a_chosen_point_raises_the_very_exception(
    autojump_clock: trio.testing.MockClock,
) -> None:
    error = ConnectionResetError("the model went away")
    model = ScriptedModel(["a", "b", Fail(error), "never"], delay=1)
    items, raised = await model.stream("hi").collect_result()
    assert raised is error
    assert [c.delta for c in items] == ["a", "b"]
    assert model.calls[0].closed_at == 2
    # Every opening raises it again.
    with pytest.raises(ConnectionResetError) as again:
        await model.invoke("hi")
    assert again.value is error


async def test_the_stream_is_cold_and_every_opening_is_recorded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    model = ScriptedModel(["x"], delay=1)
    s = model.stream("hello")
    assert model.calls == []
    await s.collect()
    await s.collect()
    assert [(c.started, c.closed_at, c.chunks) for c in model.calls] == [(0, 1, 2), (1, 2, 2)]
    assert model.calls[0].messages == (Message.user("hello"),)


async def test_the_script_may_depend_on_the_conversation() -> None:
    def answer(messages: tuple[Message, ...]) -> list[Step]:
        if messages[-1].role is Role.TOOL:
            return [f"It is {messages[-1].content}."]
        return [ToolCall(0, "call_1", "weather", "{}")]

    model = ScriptedModel(answer)
    first = await model.invoke("weather?")
    assert first.tool_calls[0].name == "weather"
    second = await model.invoke([Message.user("weather?"), first, Message.tool("call_1", "sunny")])
    assert second.content == "It is sunny."


async def test_leaving_early_stops_the_script_lock_step(
    autojump_clock: trio.testing.MockClock,
) -> None:
    model = ScriptedModel(split_words("one two three four five six"), delay=1)
    with no_leaks():
        async with model.stream("hi").open() as chunks:
            async for chunk in chunks:
                if chunk.delta == " two":
                    break
    call = model.calls[0]
    assert call.closed_at == 2
    assert call.chunks == 2  # nothing computed that no one asked for


async def test_cancellation_stops_it_in_a_delay(autojump_clock: trio.testing.MockClock) -> None:
    model = ScriptedModel(["a", Pause(60), "b"])
    with trio.move_on_after(5) as scope:
        await model.invoke("hi")
    assert scope.cancelled_caught
    assert model.calls[0].closed_at == 5


async def test_first_delays_with_a_timeout(autojump_clock: trio.testing.MockClock) -> None:
    model = ScriptedModel(["late"], first_delay=3)
    with pytest.raises(trio.TooSlowError):
        await model.stream("hi").timeout(first=1).collect()
    assert model.calls[0].closed_at == 1


def test_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match="script step"):
        ScriptedModel([42])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="delay"):
        ScriptedModel([], delay=-1)
    with pytest.raises(TypeError, match="first_delay"):
        ScriptedModel([], first_delay="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="usage"):
        ScriptedModel([], usage="none")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seconds"):
        Pause(-1)
    with pytest.raises(TypeError):
        Fail("boom")  # type: ignore[arg-type]


async def test_a_bad_step_from_a_script_function_is_an_error() -> None:
    model = ScriptedModel(lambda messages: ["ok", 3.5])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="script step"):
        await model.invoke("hi")


async def test_pipelines_over_a_model_stream() -> None:
    model = ScriptedModel(split_words("streams are cold"))
    words = model.stream("hi").map(lambda c: c.delta.strip().upper()).filter(bool)
    assert await words.collect() == ["STREAMS", "ARE", "COLD"]
    assert await bt.collect(words) == ["STREAMS", "ARE", "COLD"]


def test_repr() -> None:
    assert repr(ScriptedModel([], delay=0.5)) == "ScriptedModel(model_id='scripted', delay=0.5)"
