"""distinct_until_changed: drop repeats of the item just delivered."""

import trio

import beluga_trio as bt


async def main() -> None:
    statuses = bt.from_iterable(["idle", "idle", "busy", "busy", "busy", "idle"])
    print(await statuses.distinct_until_changed().collect())
    words = bt.from_iterable(["Trio", "trio", "TRIO", "asyncio", "Trio"])
    print(await words.distinct_until_changed(key=str.lower).collect())


if __name__ == "__main__":
    trio.run(main)
