"""Errors arrive as themselves; collect_result() keeps the items received before an error."""

from collections.abc import AsyncIterator

import trio

import beluga_trio as bt


class RateLimitError(Exception):
    pass


@bt.stream
async def flaky_tokens() -> AsyncIterator[str]:
    for token in ["Hello", ", wor"]:
        await trio.sleep(0.01)  # a network read
        yield token
    raise RateLimitError("429 from the model server")


async def main() -> None:
    try:
        await flaky_tokens().collect()
    except RateLimitError as exc:  # not wrapped in an ExceptionGroup
        print("caught:", exc)

    items, error = await flaky_tokens().collect_result()  # Go's CollectStream
    print("partial:", "".join(items), "| error:", repr(error))

    with trio.move_on_after(0.05) as scope:  # cancellation is never a clean end
        async with bt.from_iterable(iter(int, 1)).open() as forever:  # an endless source
            async for _ in forever:
                pass
        print("not reached")
    print("cancelled:", scope.cancelled_caught)


if __name__ == "__main__":
    trio.run(main)
