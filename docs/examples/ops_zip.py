"""zip: tuples in lock-step; the shortest stream ends it and stops the others at once."""

from collections.abc import AsyncIterator

import trio

import beluga_trio as bt


@bt.stream
async def tokens() -> AsyncIterator[str]:
    try:
        for word in ["Hello", "from", "trio", "and", "more"]:
            await trio.sleep(0.1)
            yield word
    finally:
        print("tokens stopped")


async def main() -> None:
    numbered = bt.zip(bt.from_iterable(range(1, 4)), tokens())
    async with numbered.open() as pairs:
        async for n, word in pairs:
            print(n, word)
    print("done")


if __name__ == "__main__":
    trio.run(main)
