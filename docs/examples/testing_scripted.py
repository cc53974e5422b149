"""A scripted fake producer fails where you choose and records what happened to it."""

import trio

from beluga_trio.testing import ScriptedProducer, no_leaks


class RateLimitError(Exception):
    pass


async def main() -> None:
    flaky = ScriptedProducer(["Hello", ", ", "world"], raise_before=2, error=RateLimitError)
    with no_leaks():  # no task left running, no async generator left open
        items, error = await flaky.stream().map(str.upper).collect_result()
    record = flaky.last
    print(items, repr(error), record.exception is error)
    print("started:", record.started, "| yielded:", record.yielded, end=" ")
    print("| cleanup:", record.cleanup_finished)

    stuck = ScriptedProducer(range(10), hang_before=2, cleanup_checkpoints=1)
    with no_leaks(), trio.move_on_after(5):
        async with stuck.stream().open() as numbers:
            async for x in numbers:
                print("got", x)
    run = stuck.last
    print(type(run.exception).__name__, "| cleanup ran:", run.cleanup_started, end=" ")
    print("| its await was cancelled:", run.cleanup_cancelled)


if __name__ == "__main__":
    trio.run(main)
