"""``beluga_trio.testing.cancel_sweep`` itself: what it reports, the bugs it catches (each with a
clear message), and the correct code it must not complain about.

The scenarios under "bugs it catches" are wrong on purpose; their ``# noqa`` comments say so.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import cast

import pytest
import trio
import trio.testing

import beluga_trio as bt
from beluga_trio.testing import (
    ScriptedProducer,
    SweepReport,
    SweepRun,
    assert_prefix,
    cancel_sweep,
)


async def sweep_fails(scenario: Callable[[], Awaitable[object]]) -> AssertionError:
    """Run a sweep that must fail; return its AssertionError."""
    with pytest.raises(AssertionError) as info:
        await cancel_sweep(scenario)
    return info.value


async def numbers() -> AsyncGenerator[int, None]:
    for i in range(3):
        await trio.lowlevel.checkpoint()
        yield i


# ------------------------------------------------------------------------ the report


async def test_a_clean_pipeline_passes_and_the_report_counts_what_was_exercised() -> None:
    async def scenario() -> None:
        got = await ScriptedProducer(range(3)).stream().map(lambda x: x + 1).collect()
        assert got == [1, 2, 3]

    report = await cancel_sweep(scenario)
    assert isinstance(report, SweepReport)
    assert report.steps > 0
    assert report.tasks == 2  # the scenario's own task and the producer's
    assert report.async_generators == 1  # the producer's body
    assert report.runs == report.cancellation_points + 2  # + the first and the final run
    assert report.cancellation_points >= report.steps
    assert report.cancelled + report.late == report.cancellation_points
    assert report.cancelled > 0
    assert report.total_steps >= report.steps * (report.steps + 1) // 2


async def test_check_sees_every_run_in_order() -> None:
    runs: list[SweepRun] = []

    async def scenario() -> None:
        for _ in range(3):
            await trio.lowlevel.checkpoint()

    report = await cancel_sweep(scenario, check=runs.append)
    assert [run.index for run in runs] == list(range(report.runs))
    assert runs[0].cancel_at is None
    assert runs[0].outcome == "completed"
    assert runs[-1].cancel_at is None
    assert runs[-1].outcome == "completed"
    assert [run.cancel_at for run in runs[1:-1]] == list(range(1, report.runs - 1))
    assert all(run.outcome in ("cancelled", "late") for run in runs[1:-1])
    assert all(run.tasks == 1 for run in runs)


async def test_stride_skips_steps() -> None:
    async def scenario() -> None:
        for _ in range(30):
            await trio.lowlevel.checkpoint()

    every = await cancel_sweep(scenario)
    third = await cancel_sweep(scenario, stride=3)
    assert third.cancellation_points == -(-every.cancellation_points // 3)


async def test_a_scenario_too_long_for_max_steps_is_refused_before_the_sweep() -> None:
    async def scenario() -> None:
        for _ in range(50):
            await trio.lowlevel.checkpoint()

    with pytest.raises(AssertionError, match="more than max_steps=10"):
        await cancel_sweep(scenario, max_steps=10)


@pytest.mark.parametrize(("max_steps", "stride"), [(0, 1), (10, 0)])
async def test_arguments_are_validated(max_steps: int, stride: int) -> None:
    with pytest.raises(ValueError, match=r"needs (max_steps|stride) to be an int >= 1"):
        await cancel_sweep(trio.lowlevel.checkpoint, max_steps=max_steps, stride=stride)


async def test_the_scenario_must_be_callable() -> None:
    not_callable = cast("Callable[[], Awaitable[object]]", 42)
    with pytest.raises(TypeError, match="async callable"):
        await cancel_sweep(not_callable)


async def test_async_generator_hooks_are_restored_even_after_a_failure() -> None:
    before = sys.get_asyncgen_hooks()

    async def scenario() -> None:
        async for _ in numbers():  # noqa: ASYNC900 - abandoned on purpose
            break

    await sweep_fails(scenario)
    assert sys.get_asyncgen_hooks() == before
    await cancel_sweep(trio.lowlevel.checkpoint)
    assert sys.get_asyncgen_hooks() == before


# ----------------------------------------------------------------- bugs it catches


async def test_it_catches_a_system_task_left_running() -> None:
    async def scenario() -> None:
        trio.lowlevel.spawn_system_task(trio.sleep_forever, name="the leaked task")
        await trio.lowlevel.checkpoint()

    error = await sweep_fails(scenario)
    message = str(error)
    assert "run 0 (not cancelled" in message
    assert "1 task(s) started during the run are still alive" in message
    assert "'the leaked task'" in message


async def test_it_catches_a_task_left_in_a_nursery_from_outside() -> None:
    async with trio.open_nursery() as outside:

        async def scenario() -> None:
            outside.start_soon(trio.sleep_forever, name="outlives the scenario")
            await trio.lowlevel.checkpoint()

        error = await sweep_fails(scenario)
        outside.cancel_scope.cancel()
    assert "'outlives the scenario'" in str(error)


async def test_it_catches_a_task_leaked_only_when_cancelled() -> None:
    async with trio.open_nursery() as outside:

        async def pump(scope: trio.CancelScope, done: trio.Event) -> None:
            try:
                with scope:
                    await trio.sleep_forever()
            finally:
                done.set()

        async def scenario() -> None:
            scope, done = trio.CancelScope(), trio.Event()
            outside.start_soon(pump, scope, done, name="pump")
            for _ in range(3):
                await trio.lowlevel.checkpoint()
            # Only on the normal path: a cancellation skips the stop.
            scope.cancel()
            with trio.CancelScope(shield=True):
                await done.wait()

        error = await sweep_fails(scenario)
        outside.cancel_scope.cancel()
    message = str(error)
    assert "cancelled before step" in message
    assert "'pump'" in message
    assert "(waiting at " in message  # where the leaked task is stuck


async def test_it_catches_an_async_generator_abandoned_by_break() -> None:
    async def scenario() -> None:
        async for _ in numbers():  # noqa: ASYNC900 - abandoned on purpose
            break

    message = str(await sweep_fails(scenario))
    assert "run 0 (not cancelled" in message
    assert "numbers" in message
    assert "garbage collected before it was exhausted or closed" in message


async def test_it_catches_an_async_generator_abandoned_only_when_cancelled() -> None:
    async def scenario() -> None:
        # Without aclosing(), a cancellation in the loop body abandons the generator.
        async for _ in numbers():  # noqa: ASYNC900 - abandoned on purpose
            await trio.lowlevel.checkpoint()

    message = str(await sweep_fails(scenario))
    assert "cancelled before step" in message
    assert "garbage collected before it was exhausted or closed" in message


async def test_it_catches_an_async_generator_left_suspended() -> None:
    kept: list[AsyncGenerator[int, None]] = []

    async def scenario() -> None:
        agen = numbers()
        kept.append(agen)
        await anext(agen)  # and never closed

    message = str(await sweep_fails(scenario))
    assert "left suspended at a yield, never closed" in message
    await trio.testing.wait_all_tasks_blocked(cushion=0.05)  # trio closes it in a system task
    with pytest.raises(StopAsyncIteration):
        await anext(kept[0])


async def swallows_at_a_sleep() -> None:
    try:
        await trio.sleep(1)
    except trio.Cancelled:  # noqa: ASYNC103 - the bug under test
        return  # noqa: ASYNC104 - the bug under test


async def swallows_at_a_checkpoint() -> None:
    for _ in range(3):
        try:
            await trio.lowlevel.checkpoint()
        except BaseException:  # noqa: ASYNC103, BLE001 - the bug under test
            return  # noqa: ASYNC104 - the bug under test


async def swallows_in_a_child_task() -> None:
    async def child() -> None:
        try:
            await trio.sleep(1)
        except trio.Cancelled:  # noqa: ASYNC103 - the bug under test
            return  # noqa: ASYNC104 - the bug under test

    async with trio.open_nursery() as nursery:  # noqa: ASYNC112 - a child task on purpose
        nursery.start_soon(child)


@pytest.mark.parametrize(
    "scenario",
    [swallows_at_a_sleep, swallows_at_a_checkpoint, swallows_in_a_child_task],
    ids=["sleep", "checkpoint", "child-task"],
)
async def test_it_catches_a_swallowed_cancellation(
    scenario: Callable[[], Awaitable[None]], autojump_clock: trio.testing.MockClock
) -> None:
    message = str(await sweep_fails(scenario))
    assert "cancelled before step" in message
    assert "returned normally although trio.Cancelled was delivered" in message
    assert "swallowed the cancellation" in message


async def test_it_catches_an_error_raised_instead_of_the_cancellation() -> None:
    async def scenario() -> None:
        try:
            await trio.lowlevel.checkpoint()
        except trio.Cancelled:
            raise ValueError("lost the cancellation") from None  # noqa: ASYNC104 - the bug

    error = await sweep_fails(scenario)
    assert "cancelled before step 1:" in str(error)
    assert "raised ValueError('lost the cancellation') instead of trio.Cancelled" in str(error)
    assert isinstance(error.__cause__, ValueError)


async def test_an_uncancelled_run_must_complete() -> None:
    failure = RuntimeError("broken scenario")

    async def scenario() -> None:
        await trio.lowlevel.checkpoint()
        raise failure

    error = await sweep_fails(scenario)
    assert "run 0 (not cancelled" in str(error)
    assert "although it was not cancelled" in str(error)
    assert error.__cause__ is failure


async def test_a_failing_check_names_the_run() -> None:
    async def scenario() -> None:
        await trio.lowlevel.checkpoint()
        await trio.lowlevel.checkpoint()

    def check(run: SweepRun) -> None:
        assert run.cancel_at != 2, "step 2 is forbidden"

    with pytest.raises(AssertionError, match=r"cancelled before step 2: check\(\) failed") as info:
        await cancel_sweep(scenario, check=check)
    assert "step 2 is forbidden" in str(info.value.__cause__)


# ------------------------------------------------ correct code it does not complain about


async def test_a_cancellation_after_the_last_checkpoint_is_late_not_swallowed() -> None:
    async def scenario() -> None:
        await trio.lowlevel.checkpoint()
        # A nursery whose children are done exits through a cancel-shielded checkpoint:
        # cancelled just before that, the scenario still returns normally.
        async with trio.open_nursery() as nursery:  # noqa: ASYNC112 - its exit is the point
            nursery.start_soon(trio.lowlevel.checkpoint)

    report = await cancel_sweep(scenario)
    assert report.late >= 1


async def test_shielded_cleanup_and_its_own_timeouts_are_fine(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def scenario() -> None:
        with trio.move_on_after(1):  # its own timeout, caught by its own scope
            await trio.sleep(2)
        try:
            await trio.sleep(1)
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(1)  # a cleanup that must finish

    report = await cancel_sweep(scenario)
    assert report.cancelled > 0


async def test_a_group_of_cancellations_from_a_nursery_is_the_runs_own() -> None:
    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            nursery.start_soon(trio.sleep_forever)
            await trio.lowlevel.checkpoint()
            nursery.cancel_scope.cancel()

    report = await cancel_sweep(scenario)
    assert report.tasks == 3


async def test_an_expected_error_is_caught_then_a_checkpoint_raises_a_dropped_cancellation() -> (
    None
):
    async def scenario() -> None:
        fake = ScriptedProducer(range(3), raise_before=2, error=LookupError)
        with contextlib.suppress(LookupError):
            await fake.stream().collect()
        await trio.lowlevel.checkpoint()

    await cancel_sweep(scenario)


async def test_keyboard_interrupt_escapes_as_itself() -> None:
    interrupt = KeyboardInterrupt()

    async def scenario() -> None:
        await trio.lowlevel.checkpoint()
        raise interrupt

    with pytest.raises(KeyboardInterrupt) as info:
        await cancel_sweep(scenario)
    assert info.value is interrupt


async def test_a_cancellation_of_the_caller_is_not_reported_as_a_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def scenario() -> None:
        await trio.sleep(10)

    with trio.move_on_after(5) as scope:
        await cancel_sweep(scenario)
    assert scope.cancelled_caught


async def test_a_whole_beluga_pipeline_with_a_consumer_task() -> None:
    async def scenario() -> None:
        got: list[int] = []
        stream = bt.merge(ScriptedProducer([1, 2]).stream(), ScriptedProducer([3]).stream())

        async def consume() -> None:
            got.extend(await stream.buffer(2).collect())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)  # the consumer is a task of its own
            nursery.start_soon(trio.lowlevel.checkpoint)
        assert sorted(got) == [1, 2, 3]

    report = await cancel_sweep(scenario)
    assert report.tasks >= 5


# ---------------------------------------------------------------------- assert_prefix


def test_assert_prefix() -> None:
    assert_prefix([], [1, 2])
    assert_prefix([1], [1, 2])
    assert_prefix([1, 2], [1, 2])
    for wrong in ([2], [1, 1], [1, 2, 3], [2, 1]):
        with pytest.raises(AssertionError, match="not a prefix"):
            assert_prefix(wrong, [1, 2])
