"""A model's reply as a stream: printed live under time limits, taken whole, tool calls."""

import trio

from beluga_trio.llm import ScriptedModel, split_words
from beluga_trio.schema import Message, ToolCall

# An offline model: the reply word by word, 0.3 s to the first word, then 0.05 s per word.
model = ScriptedModel(
    split_words("Leaving the block stops the model."), first_delay=0.3, delay=0.05
)


async def main() -> None:
    # Live: at most 1 s to the first token and 0.5 s between tokens.
    async with model.stream("Why scopes?").timeout(first=1, between=0.5).open() as chunks:
        async for chunk in chunks:
            print(chunk.delta, end="")
    print()

    # Whole: "Invoke from Stream" aggregates the chunks into one Message.
    reply = await model.invoke([Message.system("Be brief."), Message.user("Why scopes?")])
    print(repr(reply.content), reply.finish_reason, reply.usage)

    # Tool calls arrive as deltas; the reply holds them assembled.
    weather = ScriptedModel(
        [ToolCall(0, "call_1", "get_weather", '{"city": '), ToolCall(0, arguments='"Paris"}')]
    )
    (call,) = (await weather.invoke("Weather in Paris?")).tool_calls
    print(call.name, call.parsed_arguments())

    # A model that thinks too long: the stream is stopped at the limit.
    slow = ScriptedModel(["late"], first_delay=5)
    try:
        await slow.stream("Hi").timeout(first=1).collect()
    except trio.TooSlowError as exc:
        opened = slow.calls[0]
        assert opened.closed_at is not None
        print(f"TooSlowError: {exc}; stopped after {opened.closed_at - opened.started} s")


if __name__ == "__main__":
    trio.run(main)
