"""scan: a running fold; the reply so far, after each token."""

import trio

import beluga_trio as bt


async def main() -> None:
    tokens = bt.from_iterable(["The ", "answer ", "is ", "42."])
    async with tokens.scan(lambda text, token: text + token, "").open() as replies:
        async for text in replies:
            print(repr(text))


if __name__ == "__main__":
    trio.run(main)
