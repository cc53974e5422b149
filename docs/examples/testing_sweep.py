"""Prove a pipeline correct when it is cancelled at any point, and watch the sweep catch bugs."""

from collections.abc import AsyncIterator

import trio

from beluga_trio.testing import ScriptedProducer, SweepRun, assert_prefix, cancel_sweep

EXPECTED = [0, 10, 20, 30]
runs: list[tuple[ScriptedProducer[int], list[int]]] = []  # one entry per run of the scenario


async def scenario() -> None:
    source = ScriptedProducer(range(4))  # fresh state for every run
    got: list[int] = []
    runs.append((source, got))
    await source.stream().map(lambda x: x * 10).buffer(2).for_each(got.append)


def check(run: SweepRun) -> None:
    source, got = runs[-1]
    source.assert_cleaned_up()  # the producer's `finally` ran, whatever the step
    assert_prefix(got, EXPECTED)  # nothing lost before the last item, nothing duplicated
    if run.outcome != "cancelled":  # the code after the loop ran: it got every item
        assert got == EXPECTED


async def numbers() -> AsyncIterator[int]:
    for i in range(3):
        await trio.lowlevel.checkpoint()
        yield i


async def abandons_a_generator() -> None:
    async for _ in numbers():  # noqa: ASYNC900 - a raw async generator, never closed
        await trio.lowlevel.checkpoint()  # cancelled here, `numbers()` is abandoned


async def swallows_the_cancellation() -> None:
    try:
        await trio.sleep(1)
    except trio.Cancelled:  # noqa: ASYNC103 - the bug: the cancellation is lost...
        return  # noqa: ASYNC104 - ...here


async def main() -> None:
    report = await cancel_sweep(scenario, check=check)
    print("cancelled at every step:", report.cancellation_points >= report.steps)
    print("runs:", report.runs == report.cancellation_points + 2, "| tasks:", report.tasks)

    for bug in (abandons_a_generator, swallows_the_cancellation):
        try:
            await cancel_sweep(bug)
        except AssertionError as failure:
            message = str(failure).removeprefix("cancel_sweep: ")
            where, _, problem = message.partition(": ")
            print(f"{bug.__name__}: {where}:")
            print("   ", problem.split(" (")[0].split(": ")[0])


if __name__ == "__main__":
    trio.run(main)
