"""catch: go on with another stream after an error (a fallback model)."""

from collections.abc import AsyncIterator

import trio

import beluga_trio as bt


class OverloadedError(Exception):
    pass


@bt.stream
async def primary() -> AsyncIterator[str]:
    await trio.lowlevel.checkpoint()  # a real model awaits its server here
    yield "Once "
    raise OverloadedError("503 from the primary model")


@bt.stream
async def fallback() -> AsyncIterator[str]:
    await trio.lowlevel.checkpoint()
    yield "[fallback] "
    yield "upon a time."


def recover(error: Exception) -> bt.Stream[str]:
    print("recovering from", repr(error))
    if not isinstance(error, OverloadedError):
        raise error  # anything else ends the stream, as itself
    return fallback()


async def main() -> None:
    print(await primary().catch(recover).collect())


if __name__ == "__main__":
    trio.run(main)
