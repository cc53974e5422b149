"""Leak checks: ``no_leaks()`` for a block, ``RunLeakCheck`` for a whole trio run, and the
pytest fixture ``leak_check`` of ``beluga_trio.testing.pytest_plugin``.

The leaky code below is wrong on purpose; its ``# noqa`` comments say so.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from types import AsyncGeneratorType

import pytest
import trio

import beluga_trio as bt
from beluga_trio.testing import LeakCheck, RunLeakCheck, ScriptedProducer, no_leaks

pytest_plugins = ["pytester", "beluga_trio.testing.pytest_plugin"]


async def numbers() -> AsyncGenerator[int, None]:
    for i in range(3):
        await trio.lowlevel.checkpoint()
        yield i


# ----------------------------------------------------------------------------- no_leaks


async def test_no_leaks_passes_a_pipeline_left_early() -> None:
    fake = ScriptedProducer(range(10))
    with no_leaks() as check:
        async with fake.stream().buffer(2).map(str).open() as items:
            async for _ in items:
                break
    assert isinstance(check, LeakCheck)
    assert check.tasks_started == 2  # the producer and the buffer's pump
    assert check.async_generators == 1
    fake.assert_cleaned_up()


async def test_no_leaks_names_a_task_left_running() -> None:
    async with trio.open_nursery() as outside:

        def leave_a_task() -> None:
            with no_leaks():
                outside.start_soon(trio.sleep_forever, name="left behind")

        with pytest.raises(AssertionError, match=r"1 task\(s\) still alive: 'left behind'"):
            leave_a_task()
        outside.cancel_scope.cancel()


async def abandon_a_generator() -> None:
    with no_leaks():
        async for _ in numbers():  # noqa: ASYNC900 - abandoned on purpose
            break


async def test_no_leaks_names_an_abandoned_async_generator() -> None:
    with pytest.raises(AssertionError, match=r"numbers .*garbage collected"):
        await abandon_a_generator()


async def test_no_leaks_chains_the_blocks_own_error() -> None:
    failure = ValueError("the block failed")

    async def leak_and_fail() -> None:
        with no_leaks():
            trio.lowlevel.spawn_system_task(trio.sleep_forever)
            await trio.lowlevel.checkpoint()
            raise failure

    with pytest.raises(AssertionError) as info:
        await leak_and_fail()
    assert info.value.__cause__ is failure


async def test_no_leaks_lets_the_blocks_error_through_when_nothing_leaked() -> None:
    async def fail() -> None:
        with no_leaks():
            await bt.from_iterable([1]).collect()
            raise KeyError("mine")

    with pytest.raises(KeyError):
        await fail()


async def test_a_leak_check_is_entered_once() -> None:
    check = no_leaks()
    with check:
        await trio.lowlevel.checkpoint()
    with pytest.raises(RuntimeError, match="entered once"):
        check.__enter__()


# ---------------------------------------------------------------------- RunLeakCheck


def test_run_leak_check_passes_a_clean_run() -> None:
    check = RunLeakCheck()

    async def main() -> None:
        await ScriptedProducer(range(3)).stream().buffer(2).collect()

    trio.run(main, instruments=[check])
    check.assert_clean()


def test_run_leak_check_names_a_system_task_still_running_when_main_ends() -> None:
    check = RunLeakCheck()

    async def main() -> None:
        trio.lowlevel.spawn_system_task(trio.sleep_forever, name="orphan")
        await trio.lowlevel.checkpoint()

    trio.run(main, instruments=[check])
    with pytest.raises(AssertionError, match="'orphan'"):
        check.assert_clean()


def test_run_leak_check_names_unclosed_async_generators() -> None:
    check = RunLeakCheck()
    kept: list[AsyncGeneratorType[int, None]] = []

    async def main() -> None:
        agen = numbers()
        assert isinstance(agen, AsyncGeneratorType)
        kept.append(agen)
        await anext(agen)

    trio.run(main, instruments=[check])
    with pytest.raises(AssertionError, match="left suspended"):
        check.assert_clean()
    assert kept[0].ag_frame is None  # trio closed it at the end of the run, as usual


# ---------------------------------------------------------------------- the fixture


async def test_the_fixture_passes_a_clean_test(leak_check: RunLeakCheck) -> None:
    async with ScriptedProducer(range(5)).stream().buffer(2).open() as items:
        async for _ in items:
            break
    assert isinstance(leak_check, RunLeakCheck)


def test_the_fixture_fails_a_leaky_test_at_teardown(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('pytest_plugins = ["beluga_trio.testing.pytest_plugin"]\n')
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    pytester.makepyfile(
        """
        import trio

        async def numbers():
            yield 1
            yield 2

        async def test_clean(leak_check):
            await trio.lowlevel.checkpoint()

        async def test_leaves_a_system_task(leak_check):
            trio.lowlevel.spawn_system_task(trio.sleep_forever, name="orphan")
            await trio.lowlevel.checkpoint()

        async def test_abandons_a_generator(leak_check):
            async for _ in numbers():
                break

        def test_not_a_trio_test(leak_check):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, errors=3)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaves_a_system_task*",
            "*ERROR at teardown of test_abandons_a_generator*",
            "*ERROR at teardown of test_not_a_trio_test*",
        ]
    )
    output = result.stdout.str()
    assert "'orphan'" in output
    assert "numbers" in output
    assert "garbage collected before it was exhausted or closed" in output
    assert "leak_check watches a trio test" in output
