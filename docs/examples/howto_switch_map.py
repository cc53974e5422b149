"""How-to: cancel the previous reply when a new prompt arrives (switch_map)."""

from collections.abc import AsyncIterator

import trio

import beluga_trio as bt


def reply(prompt: str) -> bt.Stream[str]:
    """A stand-in for a streaming model call (any `@bt.stream` or `ChatModel` stream)."""

    @bt.stream
    async def tokens() -> AsyncIterator[str]:
        try:
            for word in f"An answer to {prompt}".split():
                await trio.sleep(0.1)
                yield word
            await trio.sleep(0.1)  # the end of the response
        finally:
            # Runs when the reply is cancelled too: close the HTTP response, log usage...
            print(f"  [reply to {prompt!r} closed]")

    return tokens()


async def main() -> None:
    prompts_tx, prompts_rx = trio.open_memory_channel[str](0)

    async def user() -> None:
        async with prompts_tx:
            await prompts_tx.send("weather?")
            await trio.sleep(0.25)  # changes their mind mid-reply
            await prompts_tx.send("news?")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(user)
        replies = bt.from_channel(prompts_rx).switch_map(reply)
        async with replies.open() as words:
            async for word in words:
                print(word)


if __name__ == "__main__":
    trio.run(main)
