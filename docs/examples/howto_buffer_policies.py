"""How-to: bound the memory between a fast producer and a slow consumer, and choose what
happens when the buffer is full."""

from collections.abc import AsyncIterator

import trio

import beluga_trio as bt


@bt.stream
async def readings() -> AsyncIterator[int]:
    """A sensor (or a token stream) that produces an item every 10 ms, 20 in all."""
    for i in range(20):
        await trio.sleep(0.01)
        yield i


async def slow_consumer(overflow: bt.Overflow) -> None:
    start = trio.current_time()
    seen: list[int] = []
    async with bt.BufferedStream(readings(), capacity=3, overflow=overflow) as buf:
        async for reading in buf:
            seen.append(reading)
            await trio.sleep(0.1)  # e.g. redrawing a chart
        stats = buf.statistics()
    print(f"{overflow}: saw {len(seen)} readings, {seen}")
    print(f"  peak {stats.peak} of {stats.capacity}, dropped {stats.dropped}", end="")
    print(f", took {trio.current_time() - start:.1f} s")


async def main() -> None:
    # "wait": nothing is lost; the producer is slowed to the consumer's pace.
    # "drop_oldest": the producer never waits; the consumer sees the freshest readings.
    # "drop_newest": the producer never waits; the readings already waiting are kept.
    policies: tuple[bt.Overflow, ...] = ("wait", "drop_oldest", "drop_newest")
    for overflow in policies:
        await slow_consumer(overflow)


if __name__ == "__main__":
    trio.run(main)
