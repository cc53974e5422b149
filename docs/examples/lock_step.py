"""A @stream producer computes an item only when the consumer asks for one."""

from collections.abc import AsyncIterator

import trio

import beluga_trio as bt

started: list[int] = []


@bt.stream
async def expensive() -> AsyncIterator[int]:
    for i in range(100):
        started.append(i)  # the costly part: an API call, a model step...
        await trio.sleep(1)
        yield i


async def main() -> None:
    async with expensive().open() as items:
        print(await anext(items), await anext(items))
        await trio.sleep(10)  # the consumer is busy: the producer waits, it does not run ahead
        print("started while the consumer was busy:", started)

        with trio.move_on_after(0.5):  # a request given up by a timeout...
            await anext(items)
        print("after a cancelled request:", started)  # ...leaves no credit behind
        print("the item in flight is not lost:", await anext(items))


if __name__ == "__main__":
    trio.run(main)
