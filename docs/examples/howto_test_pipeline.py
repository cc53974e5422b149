"""How-to: prove that your own pipeline is correct when it is cancelled at any point.

The test below is an ordinary pytest-trio test; `main` runs it for the docs.
"""

import trio

import beluga_trio as bt
from beluga_trio.testing import ScriptedProducer, SweepRun, assert_prefix, cancel_sweep


def word_counts(lines: bt.Stream[str]) -> bt.Stream[list[int]]:
    """The pipeline under test: skip blank lines, count words, in batches of two."""
    return lines.filter(str.strip).map(lambda line: len(line.split())).buffer(2).batch(2)


LINES = ["a b", "", "c d e", "f", "g h i j"]
EXPECTED = [[2, 3], [1, 4]]


async def test_word_counts_survive_cancellation_anywhere() -> None:
    runs: list[tuple[ScriptedProducer[str], list[list[int]]]] = []

    async def scenario() -> None:
        source = ScriptedProducer(LINES)  # fresh for every run; records what happened to it
        got: list[list[int]] = []
        runs.append((source, got))
        await word_counts(source.stream()).for_each(got.append)

    def check(run: SweepRun) -> None:
        source, got = runs[-1]
        source.assert_cleaned_up()  # the producer's `finally` ran, wherever the cancel landed
        source.assert_lock_step()
        assert_prefix(got, EXPECTED)  # nothing lost out of order, nothing duplicated
        if run.outcome != "cancelled":
            assert got == EXPECTED  # a run that was not cancelled got everything

    report = await cancel_sweep(scenario, check=check)
    assert report.cancellation_points >= report.steps
    print("cancelled at every step in turn: no leak, no loss, every cleanup ran")

    # The same pipeline when the source fails: the error arrives as itself, after the batch
    # that came before it.
    failing = ScriptedProducer(LINES, raise_before=3, error=ConnectionResetError("peer left"))
    batches, error = await word_counts(failing.stream()).collect_result()
    print("before the error:", batches, "| error:", repr(error))


async def main() -> None:
    await test_word_counts_survive_cancellation_anywhere()


if __name__ == "__main__":
    trio.run(main)
