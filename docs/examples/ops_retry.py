"""retry: re-open a stream that failed before its first item, with backoff."""

from collections.abc import AsyncIterator

import trio

import beluga_trio as bt

attempts = 0


@bt.stream
async def model_reply() -> AsyncIterator[str]:
    global attempts  # noqa: PLW0603 - a counter for the demonstration
    attempts += 1
    await trio.lowlevel.checkpoint()  # a real model connects here
    if attempts < 3:
        raise ConnectionError(f"connection reset (attempt {attempts})")
    for token in ["Hi", " there"]:
        yield token
    raise ConnectionError("reset after the first token")


async def main() -> None:
    t0 = trio.current_time()
    reply = model_reply().retry(5, backoff=lambda n: 0.5 * 2 ** (n - 1), on=ConnectionError)
    items, error = await reply.collect_result()
    print(items, f"after {attempts} attempts and {trio.current_time() - t0:.1f} s of backoff")
    print("then, not retried:", repr(error))


if __name__ == "__main__":
    trio.run(main)
