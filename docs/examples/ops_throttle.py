"""throttle: at most one UI update per period; the latest (default) or the first."""

from collections.abc import AsyncIterator

import trio

import beluga_trio as bt


@bt.stream
async def progress() -> AsyncIterator[int]:
    for percent in range(0, 101, 10):
        yield percent
        await trio.sleep(0.04)


async def show(stream: bt.Stream[int]) -> None:
    t0 = trio.current_time()
    async with stream.open() as updates:
        print(" ".join([f"{x}%@{trio.current_time() - t0:.1f}" async for x in updates]))


async def main() -> None:
    await show(progress().throttle(0.1))  # the latest: the final 100% is never lost
    await show(progress().throttle(0.1, keep="first"))


if __name__ == "__main__":
    trio.run(main)
