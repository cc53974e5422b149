"""switch_map: only the latest item's stream runs; a new item cancels the one before."""

from collections.abc import AsyncIterator

import trio

import beluga_trio as bt


@bt.stream
async def keystrokes() -> AsyncIterator[str]:
    for query, pause in [("t", 0.05), ("tr", 0.05), ("tri", 1.0), ("trio", 0.0)]:
        yield query
        await trio.sleep(pause)


def search(query: str) -> bt.Stream[str]:
    @bt.stream
    async def results() -> AsyncIterator[str]:
        try:
            await trio.sleep(0.2)  # the search takes a while
            yield f"results for {query!r}"
        finally:
            print(f"search {query!r} closed")

    return results()


async def main() -> None:
    print(await keystrokes().switch_map(search).collect())


if __name__ == "__main__":
    trio.run(main)
