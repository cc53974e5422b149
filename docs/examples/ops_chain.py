"""chain: one stream after another; each is opened only when the one before has ended."""

from collections.abc import AsyncIterator

import trio

import beluga_trio as bt


def page(n: int) -> bt.Stream[str]:
    @bt.stream
    async def fetch() -> AsyncIterator[str]:
        print(f"fetching page {n}")
        try:
            await trio.sleep(0.1)
            for i in range(2):
                yield f"p{n}-item{i}"
        finally:
            print(f"page {n} closed")

    return fetch()


async def main() -> None:
    print(await bt.chain(page(1), page(2)).collect())


if __name__ == "__main__":
    trio.run(main)
