"""pytest support for beluga_trio users: the ``leak_check`` fixture.

Enable it with ``pytest_plugins = ["beluga_trio.testing.pytest_plugin"]`` in a top-level
``conftest.py`` (or through the package's ``pytest11`` entry point, if installed with one).
Requires pytest-trio, which hands every `trio.abc.Instrument` fixture of a test to the test's
``trio.run``.

::

    async def test_my_pipeline(leak_check: RunLeakCheck) -> None:
        async with pipeline.open() as items:
            async for x in items:
                break
        # after the test: no task it started is still running (system tasks included), and
        # every async generator it iterated was exhausted or closed

For a check right after one ``async with`` block, use ``with beluga_trio.testing.no_leaks():``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import RunLeakCheck

__all__ = ["leak_check"]


@pytest.fixture
def leak_check() -> Iterator[RunLeakCheck]:
    """A `RunLeakCheck` installed in the test's ``trio.run`` (by pytest-trio); the test fails
    at teardown if it left a task running or an async generator unclosed."""
    check = RunLeakCheck()
    yield check
    if not check.ran:
        pytest.fail(
            "leak_check watches a trio test: run the test with pytest-trio (trio_mode = true, "
            "or @pytest.mark.trio)",
            pytrace=False,
        )
    check.assert_clean()
