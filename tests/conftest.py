"""Shared test configuration.

Leak checks are explicit (``beluga_trio.testing.no_leaks()``) and placed right around the
``async with`` they guard. Inside one trio test, nurseries already guarantee that every
task a test started has ended when the test ends, so the only leak worth looking for is a task
that outlives the stream's own block, and only a check right after that block can see it. (An
autouse trio fixture would not work anyway: pytest-trio runs only the trio fixtures a test
names in its arguments.)
"""

from __future__ import annotations

import pytest
from hypothesis import settings

# No per-example deadline: CI machines are shared and noisy.
settings.register_profile("default", deadline=None, print_blob=True)
# `make check`, the edit loop: every property still runs, on fewer examples (`make test` and
# CI run the full number).
settings.register_profile("quick", parent=settings.get_profile("default"), max_examples=10)
settings.load_profile("default")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The soak runs for minutes by design: it gets an hour instead of the per-test timeout
    (pyproject.toml), which is there to turn a hang into a failure with stacks."""
    for item in items:
        if item.get_closest_marker("soak") is not None:
            item.add_marker(pytest.mark.timeout(3600))
