"""A consumer that polls with timeouts shorter than a call never makes a call run twice."""

import trio

import beluga_trio as bt

calls: list[int] = []


async def call_model(prompt: int) -> str:
    calls.append(prompt)
    await trio.sleep(0.25)  # a slow model call
    return f"reply {prompt}"


async def main() -> None:
    polls = 0
    replies: list[str] = []
    async with bt.from_iterable(range(3)).map(call_model).open() as items:
        while True:
            polls += 1
            with trio.move_on_after(0.1):  # do something else every 100 ms
                try:
                    replies.append(await anext(items))
                except StopAsyncIteration:
                    break
    print(replies)
    print("calls:", calls, "polls:", polls)


if __name__ == "__main__":
    trio.run(main)
