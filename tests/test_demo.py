"""The demo behind `make demo` runs and shows what it claims."""

from __future__ import annotations

import pytest

from beluga_trio.__main__ import main


async def test_demo_shows_stream_early_stop_and_cancellation(
    autojump_clock: object, capsys: pytest.CaptureFixture[str]
) -> None:
    await main()
    out = capsys.readouterr().out
    assert "STREAMS IN BELUGA_TRIO ARE COLD" in out
    assert "31 tokens, first after 0.15 s" in out
    assert "producer cleanup ran 1 time(s), 6 tokens were started for 6 asked" in out
    assert "cancelled: True, loop finished normally: False, producer cleanup ran: 1" in out
