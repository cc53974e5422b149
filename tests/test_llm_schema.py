"""`EventType`, `Event` and the schema classes: immutable values with sensible defaults."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs
import pytest

from beluga_trio._events import Event, EventType
from beluga_trio.schema import Message, Role, StreamChunk, ToolCall, Usage

# ----------------------------------------------------------------------------------- events


def test_event_type_is_a_str_enum_with_the_contract_values() -> None:
    assert {t.name: t.value for t in EventType} == {
        "DATA": "data",
        "TOOL_CALL": "tool_call",
        "TOOL_RESULT": "tool_result",
        "HANDOFF": "handoff",
        "DONE": "done",
        "ERROR": "error",
    }
    assert isinstance(EventType.DATA, str)
    done: str = "done"
    assert done == EventType.DONE
    assert f"{EventType.TOOL_CALL}" == "tool_call"
    assert EventType("error") is EventType.ERROR


def test_event_defaults() -> None:
    event = Event(EventType.DATA, "Hel")
    assert event.type is EventType.DATA
    assert event.payload == "Hel"
    assert event.error is None
    assert dict(event.meta) == {}
    assert isinstance(event.meta, Mapping)


def test_event_is_frozen() -> None:
    event = Event(EventType.DATA, "x")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.payload = "y"  # type: ignore[misc]


def test_event_meta_is_a_read_only_copy() -> None:
    source: dict[str, Any] = {"usage": 3}
    event = Event(EventType.DONE, None, meta=source)
    source["usage"] = 4  # the caller's dict changes; the event does not
    assert event.meta["usage"] == 3
    with pytest.raises(TypeError):
        event.meta["usage"] = 5  # type: ignore[index]


def test_event_type_from_a_plain_string_and_unknown_types() -> None:
    assert Event("done", 1).type is EventType.DONE
    with pytest.raises(ValueError, match="unknown event type 'nope'"):
        Event("nope", 1)


def test_event_carries_an_error() -> None:
    error = RuntimeError("boom")
    event: Event[None] = Event(EventType.ERROR, None, error=error)
    assert event.error is error


def test_events_compare_by_value_and_hash_without_meta() -> None:
    a = Event(EventType.DATA, "x", meta={"k": 1})
    b = Event(EventType.DATA, "x", meta={"k": 1})
    assert a == b
    assert hash(a) == hash(b)
    assert a != Event(EventType.DATA, "x", meta={"k": 2})
    assert len({a, b}) == 1


def test_event_is_generic_in_its_payload() -> None:
    event: Event[ToolCall] = Event(EventType.TOOL_CALL, ToolCall(name="f"))
    assert event.payload.name == "f"


# ----------------------------------------------------------------------------------- schema


def test_stream_chunk_defaults() -> None:
    chunk = StreamChunk()
    assert chunk == StreamChunk(
        delta="", tool_calls=(), finish_reason=None, usage=None, reasoning_delta="", model_id=""
    )


def test_stream_chunk_tool_calls_become_a_tuple() -> None:
    chunk = StreamChunk(tool_calls=[ToolCall(0, "c", "f")])
    assert chunk.tool_calls == (ToolCall(0, "c", "f"),)
    with pytest.raises(TypeError, match="ToolCall"):
        StreamChunk(tool_calls=("not a call",))  # type: ignore[arg-type]


def test_schema_classes_are_frozen_and_hashable() -> None:
    values: list[tuple[object, str]] = [
        (StreamChunk("a", (ToolCall(),), "stop", Usage(1, 2)), "delta"),
        (ToolCall(1, "id", "name", "{}"), "name"),
        (Usage(1, 2, 3), "total_tokens"),
        (Message.user("hi"), "content"),
    ]
    for value, name in values:
        hash(value)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            setattr(value, name, None)


def test_usage_total_defaults_to_the_sum_and_adds_up() -> None:
    assert Usage(3, 4).total_tokens == 7
    assert Usage(3, 4, 10).total_tokens == 10
    assert Usage(1, 2) + Usage(10, 20) == Usage(11, 22, 33)
    with pytest.raises(ValueError, match="prompt_tokens"):
        Usage(-1, 0)
    with pytest.raises(TypeError, match="completion_tokens"):
        Usage(0, 1.5)  # type: ignore[arg-type]


def test_tool_call_arguments_parse_as_json() -> None:
    assert ToolCall(arguments='{"city": "Paris"}').parsed_arguments() == {"city": "Paris"}
    assert ToolCall().parsed_arguments() == {}
    with pytest.raises(json.JSONDecodeError):
        ToolCall(arguments='{"city": ').parsed_arguments()
    with pytest.raises(ValueError, match="index"):
        ToolCall(index=-1)


def test_message_constructors_and_roles() -> None:
    assert Message.system("be brief").role is Role.SYSTEM
    assert Message.user("hi") == Message(Role.USER, "hi")
    assert Message("assistant", "ok").role is Role.ASSISTANT
    call = ToolCall(0, "call_1", "f", "{}")
    assert Message.assistant(tool_calls=(call,)).tool_calls == (call,)
    answer = Message.tool("call_1", "42")
    assert (answer.role, answer.tool_call_id, answer.content) == (Role.TOOL, "call_1", "42")
    with pytest.raises(ValueError, match="unknown role 'robot'"):
        Message("robot")


def test_message_defaults() -> None:
    message = Message(Role.ASSISTANT)
    assert message.content == ""
    assert message.tool_calls == ()
    assert message.reasoning == ""
    assert message.finish_reason is None
    assert message.usage is None
    assert message.model_id == ""
    assert message.tool_call_id is None
    assert message.name is None
