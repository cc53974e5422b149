"""flat_map: a stream per item, flattened; in order, or n at a time."""

from collections.abc import AsyncIterator

import trio

import beluga_trio as bt


def chunks(doc: str) -> bt.Stream[str]:
    @bt.stream
    async def read() -> AsyncIterator[str]:
        for i in range(2):
            await trio.sleep(0.1 if doc == "a" else 0.15)
            yield f"{doc}{i}"

    return read()


async def main() -> None:
    docs = bt.from_iterable(["a", "b"])
    print(await docs.flat_map(chunks).collect())  # each document's chunks in turn
    t0 = trio.current_time()
    both = await docs.flat_map(chunks, concurrency=2).collect()  # interleaved as they come
    print(both, f"in {trio.current_time() - t0:.1f} s")


if __name__ == "__main__":
    trio.run(main)
