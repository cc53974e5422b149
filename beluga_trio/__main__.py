"""``python -m beluga_trio``: a short, visible demo of streams, early stops and cleanup."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import trio

import beluga_trio as bt

REPLY = (
    "Streams in beluga_trio are cold, typed and scoped: the producer runs in a task owned by "
    "the consumer's async with, so leaving the block stops it before the next line runs."
)


def say(text: str = "", end: str = "\n") -> None:
    sys.stdout.write(text + end)
    sys.stdout.flush()


class Log:
    """What happened to the simulated model, so the demo can show it."""

    def __init__(self) -> None:
        self.tokens_started = 0
        self.cleanups = 0


@bt.stream
async def simulated_model(log: Log, text: str, delay: float) -> AsyncIterator[str]:
    """A stand-in for an LLM streaming endpoint: one word-piece at a time, with latency."""
    try:
        await trio.sleep(delay * 4)  # time to first token
        for word in text.split(" "):
            log.tokens_started += 1
            await trio.sleep(delay)
            yield word + " "
    finally:
        log.cleanups += 1  # closing the HTTP response would go here


async def main(delay: float = 0.03) -> None:
    say("beluga_trio demo: a simulated model streams a reply, token by token.\n")

    say("[1] live: tokens -> map(str.upper) -> filter(no empty tokens), printed as they arrive")
    log = Log()
    pipeline = simulated_model(log, REPLY, delay).map(str.upper).filter(str.strip)
    start = trio.current_time()
    first_at = None
    count = 0
    async with pipeline.open() as tokens:
        async for token in tokens:
            first_at = first_at or trio.current_time() - start
            count += 1
            say(token, end="")
    elapsed = trio.current_time() - start
    say(
        f"\n    {count} tokens, first after {first_at or 0:.2f} s, {count / elapsed:.0f} tokens/s\n"
    )

    say("[2] early stop: the consumer breaks out after 6 tokens")
    log = Log()
    async with simulated_model(log, REPLY, delay).open() as tokens:
        async for token in tokens:
            say(token, end="")
            if log.tokens_started == 6:
                break
    say(
        f"\n    the block has exited: producer cleanup ran {log.cleanups} time(s), "
        f"{log.tokens_started} tokens were started for 6 asked (lock-step)\n"
    )

    say("[3] a deadline cancels the stream mid-reply: never a clean end")
    log = Log()
    finished = False
    with trio.move_on_after(delay * 10) as scope:
        async with simulated_model(log, REPLY, delay).open() as tokens:
            async for token in tokens:
                say(token, end="")
            finished = True  # not reached: a cancelled stream does not look finished
    say(
        f"\n    cancelled: {scope.cancelled_caught}, loop finished normally: {finished}, "
        f"producer cleanup ran: {log.cleanups} time(s)"
    )


if __name__ == "__main__":
    trio.run(main)
