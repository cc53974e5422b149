"""How-to: send one model reply to a live UI and to a logger, reading the model once."""

import trio

import beluga_trio as bt
from beluga_trio.llm import ScriptedModel, split_words
from beluga_trio.schema import StreamChunk

model = ScriptedModel(split_words("Every consumer sees every chunk."), delay=0.05)


async def ui(chunks: bt.Stream[StreamChunk]) -> str:
    """Show the reply as it arrives (a websocket, a terminal...); return what was shown."""
    shown = ""
    async with chunks.open() as items:
        async for chunk in items:
            shown += chunk.delta
            print(chunk.delta, end="")
    print()
    return shown


async def logger(chunks: bt.Stream[StreamChunk]) -> list[str]:
    """Record one log line per chunk, with its time on trio's clock."""
    start = trio.current_time()

    def line(chunk: StreamChunk) -> str:
        return f"{trio.current_time() - start:.2f}s {chunk.delta!r} {chunk.finish_reason or ''}"

    return await chunks.map(line).collect()


async def main() -> None:
    # Both run at once, in tasks owned by this call; the slower one sets the pace, and at most
    # `buffer` chunks wait for either, however long the reply.
    shown, log = await bt.fan_out(model.stream("Explain fan-out"), ui, logger, capacity=64)
    print(f"ui showed {len(shown)} characters; the model was called {len(model.calls)} time")
    for entry in log:
        print(entry.rstrip())


if __name__ == "__main__":
    trio.run(main)
