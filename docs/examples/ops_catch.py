"""catch: go on with another stream after an error (a fallback model)."""

from collections.abc import AsyncIterator

import trio

import beluga_trio as bt


class Overloaded(Exception):
    pass


@bt.stream
async def primary() -> AsyncIterator[str]:
    yield "Once "
    raise Overloaded("503 from the primary model")


@bt.stream
async def fallback() -> AsyncIterator[str]:
    yield "[fallback] "
    yield "upon a time."


def recover(error: Exception) -> bt.Stream[str]:
    print("recovering from", repr(error))
    if not isinstance(error, Overloaded):
        raise error  # anything else ends the stream, as itself
    return fallback()


async def main() -> None:
    print(await primary().catch(recover).collect())


if __name__ == "__main__":
    trio.run(main)
