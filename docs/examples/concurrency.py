"""Buffering, merging, fanning out, parallel calls under a shared limit, batching."""

from collections.abc import AsyncIterator

import trio

import beluga_trio as bt


@bt.stream
async def tokens(name: str, n: int, delay: float) -> AsyncIterator[str]:
    for i in range(n):
        await trio.sleep(delay)
        yield f"{name}{i}"


async def lookup(token: str) -> str:
    await trio.sleep(0.1)  # a tool call, say
    return token.upper()


async def main() -> None:
    # Read ahead in a background task; at most 4 items wait, plus the one in hand.
    async with bt.BufferedStream(tokens("t", 6, 0.01), capacity=4) as buf:
        await trio.sleep(1)  # the consumer is busy; the producer fills the buffer
        print("waiting:", len(buf), "of", buf.capacity)
        print([t async for t in buf])

    # Several sources at once, in arrival order; ends when all end.
    print(await bt.merge(tokens("a", 3, 0.3), tokens("b", 3, 0.2)).collect())

    # Every consumer sees every item; the slowest sets the pace; results in order.
    async def printer(view: bt.Stream[str]) -> int:
        return len(await view.collect())

    async def first_two(view: bt.Stream[str]) -> list[str]:
        return await view.take(2).collect()  # returns early: detached, the others go on

    print(await bt.fan_out(tokens("f", 5, 0.01), printer, first_two))

    # Up to 3 calls at once, shared with any other stage using the same limiter.
    limiter = trio.CapacityLimiter(3)
    start = trio.current_time()
    results = await tokens("c", 6, 0).map(lookup, concurrency=limiter).collect()
    print(results, f"in {trio.current_time() - start:.1f} s")

    # Lists of up to 4, or whatever arrived within 0.25 s of a batch's first item.
    print(await tokens("b", 6, 0.1).batch(4, within=0.25).collect())


if __name__ == "__main__":
    trio.run(main)
