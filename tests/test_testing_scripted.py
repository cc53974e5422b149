"""``beluga_trio.testing.ScriptedProducer``: it fails where it is told to, and records what
happened to each opening."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
import trio.testing

import beluga_trio as bt
from beluga_trio.testing import ProducerRun, ScriptedError, ScriptedProducer


class BoomError(Exception):
    pass


async def test_a_full_run_is_recorded() -> None:
    fake = ScriptedProducer("abc")
    assert await fake.stream().collect() == ["a", "b", "c"]
    assert fake.opened == 1
    run = fake.last
    assert isinstance(run, ProducerRun)
    assert (run.index, run.started, run.yielded, run.finished) == (0, 3, ["a", "b", "c"], True)
    assert run.exception is None
    assert run.cleanup_started
    assert run.cleanup_finished
    assert not run.cleanup_cancelled
    fake.assert_cleaned_up()
    fake.assert_lock_step()


async def test_every_opening_is_a_new_run() -> None:
    fake = ScriptedProducer(range(3))
    stream = fake.stream()
    assert await stream.first() == 0
    assert await stream.collect() == [0, 1, 2]
    assert [run.index for run in fake.runs] == [0, 1]
    first, second = fake.runs
    # first() closes the producer at its yield: GeneratorExit, after exactly one item.
    assert (first.started, first.yielded, first.finished) == (1, [0], False)
    assert isinstance(first.exception, GeneratorExit)
    assert first.cleanup_finished  # a graceful close: its awaits were not cancelled
    assert second.finished


async def test_raise_before_an_item() -> None:
    fake = ScriptedProducer(range(5), raise_before=2, error=BoomError("at 2"))
    items, error = await fake.stream().collect_result()
    assert items == [0, 1]
    assert isinstance(error, BoomError)
    assert str(error) == "at 2"
    run = fake.last
    assert run.exception is error
    assert (run.started, run.yielded, run.finished) == (3, [0, 1], False)
    assert run.cleanup_finished


async def test_raise_after_the_last_item_and_the_default_error() -> None:
    fake = ScriptedProducer(range(2), raise_before=2)
    items, error = await fake.stream().collect_result()
    assert items == [0, 1]
    assert isinstance(error, ScriptedError)
    assert fake.last.started == 2


async def test_an_error_factory_makes_a_fresh_error_per_opening() -> None:
    fake = ScriptedProducer(range(1), raise_before=0, error=lambda: BoomError("fresh"))
    first = (await fake.stream().collect_result()).error
    second = (await fake.stream().collect_result()).error
    assert isinstance(first, BoomError)
    assert isinstance(second, BoomError)
    assert first is not second


async def test_cleanup_error_is_raised_from_the_block() -> None:
    fake = ScriptedProducer(range(3), cleanup_error=BoomError("in cleanup"))

    async def leave_at_once() -> None:
        async with fake.stream().open() as items:
            async for _ in items:
                break

    with pytest.raises(BoomError, match="in cleanup"):
        await leave_at_once()
    run = fake.last
    assert run.cleanup_started
    assert run.cleanup_finished  # the error comes after the cleanup's awaits
    assert isinstance(run.exception, GeneratorExit)


async def test_hang_waits_until_cancelled(autojump_clock: trio.testing.MockClock) -> None:
    fake = ScriptedProducer(range(5), hang_before=1, cleanup_checkpoints=2)
    got: list[int] = []
    with trio.move_on_after(100) as scope:
        await fake.stream().for_each(got.append)
    assert scope.cancelled_caught
    assert got == [0]
    run = fake.last
    assert run.started == 2
    assert isinstance(run.exception, trio.Cancelled)
    assert run.cleanup_started
    assert run.cleanup_cancelled  # a cancelled producer's awaiting cleanup is interrupted
    assert not run.cleanup_finished
    fake.assert_cleaned_up()


async def test_delay_is_per_item(autojump_clock: trio.testing.MockClock) -> None:
    fake = ScriptedProducer(range(3), delay=2.0)
    start = trio.current_time()
    await fake.stream().collect()
    assert trio.current_time() - start == pytest.approx(6.0)


async def test_a_delay_per_item(autojump_clock: trio.testing.MockClock) -> None:
    fake = ScriptedProducer("ab", delay=[1.0, 3.0])
    async with fake.stream().open() as items:
        assert await anext(items) == "a"
        assert trio.current_time() == pytest.approx(1.0)
        assert await anext(items) == "b"
        assert trio.current_time() == pytest.approx(4.0)


async def test_without_checkpoints_it_never_awaits() -> None:
    # A generator over data in memory: the whole run takes no checkpoint at all, so even a
    # cancelled scope around it cannot interrupt it.
    fake = ScriptedProducer(range(3), checkpoint=False, cleanup_checkpoints=0)
    agen = fake.generator()
    with trio.CancelScope() as scope:
        scope.cancel()
        assert [x async for x in agen] == [0, 1, 2]
    assert fake.last.finished
    checkpointing = ScriptedProducer(range(3), cleanup_checkpoints=0).generator()
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await anext(checkpointing)
    await checkpointing.aclose()


async def test_counting_and_the_totals_over_every_opening() -> None:
    fake = ScriptedProducer.counting(4)
    agen = fake.generator()
    with trio.CancelScope() as scope:
        scope.cancel()  # it awaits nothing: not per item, not in its cleanup
        assert [x async for x in agen] == [0, 1, 2, 3]
    assert fake.last.cleanup_finished
    fake.runs.clear()
    numbers = fake.stream()
    assert await numbers.collect() == [0, 1, 2, 3]
    assert await numbers.take(2).collect() == [0, 1]
    assert (fake.opened, fake.started, fake.produced, fake.cleanups) == (2, 6, 6, 2)
    assert fake.runs[0].finished
    assert not fake.runs[1].finished


async def test_counting_endless_until_the_consumer_stops() -> None:
    fake = ScriptedProducer.counting(raise_before=1000)
    assert await fake.stream().take(500).collect() == list(range(500))
    assert (fake.started, fake.produced, fake.cleanups) == (500, 500, 1)
    items, error = await fake.stream().collect_result()
    assert items == list(range(1000))
    assert isinstance(error, ScriptedError)
    assert fake.last.started == 1001


async def test_the_totals_count_an_item_that_raised_or_hung(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fake = ScriptedProducer.counting(5, hang_before=2)
    with trio.move_on_after(10):
        await fake.stream().collect()
    assert (fake.started, fake.produced, fake.cleanups) == (3, 2, 1)


async def test_generator_is_one_raw_run() -> None:
    fake = ScriptedProducer(range(3), cleanup_checkpoints=0)
    agen = fake.generator()
    assert await anext(agen) == 0
    await agen.aclose()
    assert isinstance(fake.last.exception, GeneratorExit)
    assert fake.last.cleanup_finished


def test_the_asserts_fail_with_clear_messages() -> None:
    fake: ScriptedProducer[int] = ScriptedProducer([1])
    with pytest.raises(AssertionError, match="never opened"):
        _ = fake.last
    fake.runs.append(ProducerRun(index=0, started=3))
    with pytest.raises(AssertionError, match=r"opening\(s\) \[0\] did not run"):
        fake.assert_cleaned_up()
    with pytest.raises(AssertionError, match="ran ahead of its consumer"):
        fake.assert_lock_step()


@pytest.mark.parametrize(
    "make",
    [
        lambda: ScriptedProducer(range(3), raise_before=4),
        lambda: ScriptedProducer(range(3), hang_before=-1),
        lambda: ScriptedProducer(range(3), cleanup_checkpoints=-1),
        lambda: ScriptedProducer(range(3), delay=-1),
        lambda: ScriptedProducer(range(3), delay=[1, 2]),
        lambda: ScriptedProducer(range(2), delay=[1, -2]),
        lambda: ScriptedProducer.counting(-1),
        lambda: ScriptedProducer.counting(hang_before=-1),
        lambda: ScriptedProducer.counting(delay=[1.0]),
    ],
    ids=[
        "raise_before",
        "hang_before",
        "cleanup_checkpoints",
        "negative-delay",
        "delays-too-few",
        "negative-delays",
        "negative-n",
        "endless-hang_before",
        "endless-delays",
    ],
)
def test_script_points_are_validated(make: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match="must be"):
        make()


async def test_it_is_lock_step_under_any_stage() -> None:
    fake = ScriptedProducer(range(10))
    async with fake.stream().buffer(3).open() as items:
        async for x in items:
            if x == 5:
                break
    fake.assert_lock_step()
    fake.assert_cleaned_up()
    assert bt.Stream is type(fake.stream())


async def test_the_docs_totals_example() -> None:
    # docs/testing.md, "A fake producer": the totals of an endless source read by a buffer.
    source = ScriptedProducer.counting()
    assert await source.stream().buffer(4).take(3).collect() == [0, 1, 2]
    assert source.cleanups == 1
    assert 3 <= source.started <= 3 + 4 + 1
