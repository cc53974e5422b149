"""The server-sent events decoder and the OpenAI chunk format, offline (no httpx needed)."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from beluga_trio.llm import MalformedEventError, ModelError
from beluga_trio.llm._openai_format import (
    error_report,
    message_to_json,
    parse_chunk,
    request_body,
)
from beluga_trio.llm._sse import MAX_LINE, SSEDecoder, SSEEvent
from beluga_trio.schema import Message, StreamChunk, ToolCall, Usage


def error_message(content: bytes) -> str:
    return error_report(content).message


def decode(*parts: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for part in parts:
        events.extend(decoder.feed(part))
    events.extend(decoder.end())
    return events


# -------------------------------------------------------------------------------------- SSE


def test_data_lines_and_blank_line_dispatch() -> None:
    assert decode(b"data: one\n\ndata: two\ndata: lines\n\n") == [
        SSEEvent("one"),
        SSEEvent("two\nlines"),
    ]


def test_line_endings_comments_fields_and_bom() -> None:
    stream = (
        b"\xef\xbb\xbf: a comment\r\n"
        b"event: update\r\n"
        b"id: 7\r"
        b"retry: 1500\n"
        b"data:no space\r\n"
        b"data\n"
        b"ignored: field\n"
        b"\r\n"
        b"data: after\n\n"
    )
    assert decode(stream) == [
        SSEEvent("no space\n", "update", "7", 1500),
        SSEEvent("after", "message", "7", 1500),
    ]


def test_events_without_data_are_not_dispatched() -> None:
    assert decode(b"event: ping\n\n: keep-alive\n\n\n\n") == []


def test_an_incomplete_event_at_the_end_is_dropped_but_a_last_line_counts() -> None:
    assert decode(b"data: complete\n\ndata: cut off") == [SSEEvent("complete")]
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\n") == []
    assert decoder.end() == []


def test_a_cr_split_from_its_lf_is_one_line_ending() -> None:
    assert decode(b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n") == [SSEEvent("a"), SSEEvent("b")]


def test_utf8_split_across_feeds() -> None:
    data = "data: w\u00f6rld \u2603\n\n".encode()
    assert decode(*[data[i : i + 1] for i in range(len(data))]) == [SSEEvent("w\u00f6rld \u2603")]


def test_a_line_without_end_is_bounded() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: " + b"x" * 1000)
    with pytest.raises(MalformedEventError, match="longer than") as caught:
        decoder.feed(b"x" * MAX_LINE)
    assert len(caught.value.data) < 1000  # the message quotes the start only


SSE_TEXT = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"), max_size=20
)


@given(
    st.lists(st.lists(SSE_TEXT, min_size=1, max_size=3), max_size=6),
    st.sampled_from([b"\n", b"\r\n", b"\r"]),
    st.lists(st.integers(0, 400), max_size=12),
)
def test_any_split_of_the_bytes_gives_the_same_events(
    events: list[list[str]], newline: bytes, cuts: list[int]
) -> None:
    stream = b"".join(
        b"".join(b"data: " + line.encode() + newline for line in lines) + newline
        for lines in events
    )
    points = sorted({min(c, len(stream)) for c in cuts})
    bounds = [0, *points, len(stream)]
    parts = [stream[a:b] for a, b in itertools.pairwise(bounds)]
    assert decode(*parts) == [SSEEvent("\n".join(lines)) for lines in events]


# ---------------------------------------------------------------------------- chunk format


def test_a_text_chunk() -> None:
    data = json.dumps(
        {"model": "m", "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]}
    )
    assert parse_chunk(data) == StreamChunk(delta="Hi", model_id="m")


def test_the_role_only_chunk_carries_nothing() -> None:
    data = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
    assert parse_chunk(json.dumps(data)) is None


def test_tool_call_deltas_finish_and_usage() -> None:
    delta = {
        "tool_calls": [
            {"index": 1, "id": "c", "type": "function", "function": {"name": "f", "arguments": "{"}}
        ]
    }
    data = {
        "choices": [{"index": 0, "delta": delta, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }
    assert parse_chunk(json.dumps(data)) == StreamChunk(
        tool_calls=(ToolCall(1, "c", "f", "{"),), finish_reason="tool_calls", usage=Usage(3, 4, 7)
    )


def test_usage_only_chunk_and_reasoning_variants() -> None:
    assert parse_chunk('{"choices": [], "usage": {"prompt_tokens": 1}}') == StreamChunk(
        usage=Usage(1, 0, 1)
    )
    for key in ["reasoning_content", "reasoning"]:
        data = {"choices": [{"delta": {key: "hmm"}}]}
        assert parse_chunk(json.dumps(data)) == StreamChunk(reasoning_delta="hmm")


def test_only_the_first_choice_is_read() -> None:
    data = {
        "choices": [
            {"index": 1, "delta": {"content": "other"}},
            {"index": 0, "delta": {"content": "mine"}},
        ]
    }
    assert parse_chunk(json.dumps(data)) == StreamChunk(delta="mine")


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ('{"choices": [', "not valid JSON"),
        ("[1, 2]", "a chunk should be a JSON object"),
        ('{"choices": "nope"}', "chunk.choices should be a list"),
        ('{"choices": [3]}', "each of choices should be a JSON object"),
        ('{"choices": [{"delta": {"content": 5}}]}', "delta.content should be a string"),
        ('{"choices": [{"delta": {"tool_calls": {}}}]}', "delta.tool_calls should be a list"),
        ('{"choices": [{"delta": {"tool_calls": [{"index": -1}]}}]}', "index should be an int"),
        ('{"choices": [], "usage": {"prompt_tokens": "3"}}', "usage.prompt_tokens"),
        ('{"choices": [], "usage": 3}', "chunk.usage should be a JSON object"),
    ],
)
def test_malformed_chunks_name_the_problem_and_the_data(data: str, problem: str) -> None:
    with pytest.raises(MalformedEventError) as caught:
        parse_chunk(data)
    assert problem in str(caught.value)
    assert repr(data) in str(caught.value)
    assert caught.value.data == data


def test_malformed_data_is_quoted_truncated() -> None:
    data = '{"choices": "' + "x" * 5000 + '"}'
    with pytest.raises(MalformedEventError) as caught:
        parse_chunk(data)
    assert len(str(caught.value)) < 500
    assert "more characters" in str(caught.value)


def test_an_error_inside_the_stream() -> None:
    with pytest.raises(ModelError, match="overloaded"):
        parse_chunk('{"error": {"message": "overloaded", "type": "server_error"}}')


def test_error_messages_from_error_bodies() -> None:
    assert error_message(b'{"error": {"message": "bad key", "code": 1}}') == "bad key"
    assert error_message(b'{"error": "quota"}') == "quota"
    assert error_message(b'{"detail": "not found"}') == "not found"
    assert error_message(b"  upstream crashed \n") == "upstream crashed"
    assert error_message(b"") == "(no explanation in the response)"
    assert "more characters" in error_message(b"x" * 2000)


def test_messages_and_request_body() -> None:
    call = ToolCall(0, "call_1", "f", '{"a": 1}')
    messages = (
        Message.system("be brief"),
        Message.user("hi"),
        Message.assistant(tool_calls=(call,)),
        Message.tool("call_1", "42"),
    )
    body = request_body("m", messages, {"temperature": 0, "stream": False})
    assert body == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"a": 1}'},
                    }
                ],
            },
            {"role": "tool", "content": "42", "tool_call_id": "call_1"},
        ],
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    named = message_to_json(Message("user", "x", name="ann"))
    assert named["name"] == "ann"
    merged = request_body("m", (), {"stream_options": {"other": 1}})
    assert merged["stream_options"] == {"other": 1, "include_usage": True}
