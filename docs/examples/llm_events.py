"""A model's reply as events: data, tool calls, and a last DONE event with usage and timing."""

import trio

from beluga_trio.llm import Fail, ScriptedModel, to_events
from beluga_trio.schema import ToolCall, Usage

model = ScriptedModel(
    ["Let me ", "check.", ToolCall(0, "call_1", "search", '{"q": "trio"}')],
    first_delay=0.2,
    delay=0.1,
    usage=Usage(prompt_tokens=12, completion_tokens=3),
)


async def main() -> None:
    async with to_events(model.stream("Find trio")).open() as events:
        async for event in events:
            if event.type == "data":  # EventType is a str enum
                print("data:", repr(event.payload))
            elif event.type == "tool_call":
                print("tool call:", event.payload.name, event.payload.arguments)
            elif event.type == "done":
                meta = event.meta
                print(f"done: {meta['finish_reason']}, {meta['usage']}")
                print(
                    f"      first chunk after {meta['time_to_first_chunk']:.1f} s, "
                    f"{meta['chunks_per_second']:.0f} chunks/s"
                )

    # errors="event": a failure ends the stream with an ERROR event holding the partial reply.
    failing = ScriptedModel(["Half a ", Fail(ConnectionResetError("peer went away"))])
    *_, last = await to_events(failing.stream("Hi"), errors="event").collect()
    print(last.type.value, repr(last.error), "partial:", repr(last.payload.content))


if __name__ == "__main__":
    trio.run(main)
