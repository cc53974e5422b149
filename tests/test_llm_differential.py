"""Differential tests: the official ``openai`` SDK and `OpenAIChatModel` read the same bytes
from the loopback server (`llm_server`), and beluga's aggregated reply must agree with the
SDK's wherever the SDK is right. Where it is not (a field it does not know, an error object
it drops), the test says so and checks beluga's answer against the provider's docs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest
from llm_server import StubServer, running_stub

from beluga_trio.llm import ModelStreamError
from beluga_trio.llm.openai import OpenAIChatModel
from beluga_trio.schema import ToolCall, Usage

KEY = "sk-test-differential-0123456789"

# The SDK breaks out of its event generators (and httpx2's byte generators under them) at
# [DONE] without closing them; trio warns when the garbage collector finds them, which this
# suite turns into errors. Not beluga's to fix; beluga's own leak checks are in the other
# test files (the same httpx2 generators, closed by beluga, are checked there).
pytestmark = pytest.mark.filterwarnings(
    r"ignore:Async generator '(openai|httpx2|httpcore2)\.:ResourceWarning"
)


@pytest.fixture(scope="module")
def server() -> Iterator[StubServer]:
    with running_stub() as stub:
        yield stub


@pytest.fixture
async def sdk(server: StubServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=server.url, api_key=KEY, max_retries=0) as client:
        yield client


async def sdk_reply(client: openai.AsyncOpenAI, scenario: str, test_id: str) -> dict[str, Any]:
    """The SDK's chunks, aggregated the way its docs describe (``ChatCompletionStreamState``
    does the same): text and refusal joined, tool calls by index, the last finish reason and
    usage, the first model."""
    reply = await client.chat.completions.create(
        model=scenario,
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"X-Test-Id": test_id},
    )
    text: list[str] = []
    refusal: list[str] = []
    calls: dict[int, dict[str, str]] = {}
    finish: str | None = None
    usage: Any = None
    model = ""
    while True:
        # anext, not `async for`: AsyncStream.__aiter__ is an async generator of its own.
        try:
            chunk = await anext(reply)
        except StopAsyncIteration:
            break
        model = model or chunk.model
        usage = chunk.usage or usage
        for choice in chunk.choices or ():  # None for a non-chunk object (see below)
            if choice.index != 0:
                continue
            delta = choice.delta
            text.append(delta.content or "")
            refusal.append(delta.refusal or "")
            for call in delta.tool_calls or []:
                entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] = entry["id"] or (call.id or "")
                if call.function is not None:
                    entry["name"] = entry["name"] or (call.function.name or "")
                    entry["arguments"] += call.function.arguments or ""
            finish = choice.finish_reason or finish
    return {
        "content": "".join(text),
        "refusal": "".join(refusal),
        "tool_calls": tuple(
            ToolCall(i, c["id"], c["name"], c["arguments"]) for i, c in sorted(calls.items())
        ),
        "finish_reason": finish,
        "usage": usage,
        "model_id": model,
    }


def usage_of(sdk_usage: Any) -> Usage | None:
    if sdk_usage is None:
        return None
    prompt = sdk_usage.prompt_tokens_details
    completion = sdk_usage.completion_tokens_details
    return Usage(
        sdk_usage.prompt_tokens,
        sdk_usage.completion_tokens,
        sdk_usage.total_tokens,
        (prompt.cached_tokens or 0) if prompt is not None else 0,
        (completion.reasoning_tokens or 0) if completion is not None else 0,
    )


@pytest.mark.parametrize("scenario", ["text", "tools", "reasoning", "refusal", "usage_details"])
async def test_beluga_agrees_with_the_sdk(
    server: StubServer, sdk: openai.AsyncOpenAI, scenario: str, request: pytest.FixtureRequest
) -> None:
    test_id = str(request.node.name)
    expected = await sdk_reply(sdk, scenario, test_id)
    async with OpenAIChatModel(
        scenario, base_url=server.url, api_key=KEY, headers={"X-Test-Id": test_id}
    ) as model:
        reply = await model.invoke("hi")
    assert reply.content == expected["content"]
    assert reply.refusal == expected["refusal"]
    assert reply.tool_calls == expected["tool_calls"]
    assert reply.finish_reason == expected["finish_reason"]
    assert reply.usage == usage_of(expected["usage"])
    assert reply.model_id == expected["model_id"]
    # Both read the same bytes: one request each.
    assert len(server.records(test_id)) == 2


async def test_reasoning_the_sdk_does_not_model(
    server: StubServer, sdk: openai.AsyncOpenAI, request: pytest.FixtureRequest
) -> None:
    # `reasoning_content` (DeepSeek, vLLM) is not a field of the SDK's delta: the SDK keeps
    # the text and drops the reasoning; beluga keeps both.
    test_id = str(request.node.name)
    expected = await sdk_reply(sdk, "reasoning", test_id)
    async with OpenAIChatModel(
        "reasoning", base_url=server.url, api_key=KEY, headers={"X-Test-Id": test_id}
    ) as model:
        reply = await model.invoke("hi")
    assert reply.content == expected["content"] == "Done."
    assert reply.reasoning == "Thinking."


async def test_an_error_object_the_sdk_drops(
    server: StubServer, sdk: openai.AsyncOpenAI, request: pytest.FixtureRequest
) -> None:
    # vLLM's flat {"object": "error", ...} in the stream: the SDK hands it over as a chunk
    # whose `choices` is None (a plain `for choice in chunk.choices` fails with TypeError),
    # and a loop that guards against that ends with the partial text and no finish reason,
    # as if all were well. beluga raises the server's error.
    test_id = str(request.node.name)
    expected = await sdk_reply(sdk, "vllm_error", test_id)
    assert (expected["content"], expected["finish_reason"]) == ("Hel", None)
    async with OpenAIChatModel(
        "vllm_error", base_url=server.url, api_key=KEY, headers={"X-Test-Id": test_id}
    ) as model:
        with pytest.raises(ModelStreamError, match="CUDA out of memory"):
            await model.invoke("hi")
