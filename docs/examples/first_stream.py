"""A first stream: a producer, two operators, a terminal operation and scoped iteration."""

from collections.abc import AsyncIterator

import trio

import beluga_trio as bt


@bt.stream
async def tokens(n: int) -> AsyncIterator[str]:
    try:
        for i in range(n):
            await trio.sleep(0.01)  # a network read, say
            yield f"tok{i}"
    finally:
        print("producer cleaned up")


async def main() -> None:
    upper = tokens(5).map(str.upper).filter(lambda t: t != "TOK3")  # cold: nothing runs yet

    print(await upper.collect())  # a terminal operation opens, drains and closes the stream

    async with upper.open() as items:  # item by item, always inside a block
        async for t in items:
            print(t)
            if t == "TOK1":
                break
    print("after the block")  # the producer's `finally` ran before this line


if __name__ == "__main__":
    trio.run(main)
