"""debounce: act on an input only once it has settled (a search box)."""

from collections.abc import AsyncIterator

import trio

import beluga_trio as bt


@bt.stream
async def typed() -> AsyncIterator[str]:
    for text, pause in [("t", 0.1), ("tr", 0.1), ("tri", 0.1), ("trio", 0.6), ("trio n", 0.1)]:
        yield text
        await trio.sleep(pause)


async def main() -> None:
    t0 = trio.current_time()
    async with typed().debounce(0.3).open() as settled:
        async for text in settled:
            print(f"{trio.current_time() - t0:.1f} s: search {text!r}")


if __name__ == "__main__":
    trio.run(main)
