"""The demo behind `make demo` runs and shows what it claims."""

from __future__ import annotations

import re
import socket
import sys
from collections.abc import Generator

import pytest
import trio
import trio.testing
from llm_server import StubServer, running_stub

from beluga_trio.__main__ import REPLY, Terminal, cli, main, parse_args


def flat(text: str) -> str:
    """``text`` with every run of whitespace one space: what it says, however it is wrapped."""
    return re.sub(r"\s+", " ", text)


@pytest.fixture(scope="module")
def server() -> Generator[StubServer, None, None]:
    with running_stub() as stub:
        yield stub


async def test_demo_streams_fans_out_stops_early_and_cancels(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await main(width=80) == 0
    text = capsys.readouterr().out
    assert "    Streams in beluga_trio are cold, typed and scoped: the producer runs in a\n" in text
    out = flat(text)
    # [1] the live reply, fanned out to a printer, metrics and a transcript
    assert (
        "[1] live: ScriptedModel(model_id='scripted', delay=0.03) -> to_events -> fan_out(" in out
    )
    assert "metrics: first token after 0.15 s, 34.4 tokens/s, 32 chunks" in out
    assert "usage 11 prompt + 31 completion" in out
    assert "transcript: 32 events kept (31 data, 1 done)" in out
    # [2] the early stop and the cleanup line
    assert "producer cleanup ran 1 time(s), 6 tokens were started for 6 asked" in out
    # [3] a deadline: never a clean end
    assert "STREAMS IN BELUGA_TRIO ARE COLD" in out
    assert "cancelled: True, loop finished normally: False, producer cleanup ran: 1" in out
    # [4] time to first token
    assert "TooSlowError: no item within 0.12 s (to the first item)" in out
    assert "the model's stream was closed after 0.12 s" in out
    assert out.rstrip().endswith(
        "summary: 171 characters streamed live, 4 scripted streams opened, 4 cleaned up, "
        "0 tasks left behind"
    )


async def test_cancel_after_stops_the_live_reply_cleanly(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await main(cancel_after=0.4, width=80) == 0
    text = capsys.readouterr().out
    assert "    Streams in beluga_trio are cold, typed and scoped: the\n" in text
    out = flat(text)
    assert (
        "[cancelled after 0.4 s mid-stream: fan-out finished: False, producer cleanup ran: True]"
        in out
    )
    assert "metrics: first token after 0.15 s, 9 tokens before the stop" in out
    assert "transcript: 9 events kept (9 data)" in out
    assert "4 scripted streams opened, 4 cleaned up, 0 tasks left behind" in out


async def test_the_live_reply_from_a_real_server(
    server: StubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from beluga_trio.llm.openai import OpenAIChatModel  # noqa: PLC0415 - needs the extra

    async with OpenAIChatModel("text", base_url=server.url, api_key="") as model:
        assert await main(delay=0.001, model=model, width=200) == 0
    out = capsys.readouterr().out
    assert f"[1] live: OpenAIChatModel(model='text', url='{server.url}/chat/completions')" in out
    assert "    Hello, w\u00f6rld\n" in out
    assert "usage 9 prompt + 3 completion" in out
    assert "transcript: 4 events kept (3 data, 1 done)" in out


async def test_a_server_error_is_shown_as_an_error_event(
    server: StubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from beluga_trio.llm.openai import OpenAIChatModel  # noqa: PLC0415 - needs the extra

    async with OpenAIChatModel(
        "status_401", base_url=server.url, api_key="sk-demo-secret"
    ) as model:
        assert await main(delay=0.001, model=model, width=200) == 1
    out, err = capsys.readouterr()
    assert "[error: ModelHTTPError: HTTP 401 from" in out
    assert "Incorrect API key provided: [redacted]." in out
    assert "transcript: 1 events kept (1 error)" in out
    assert "[2]" not in out  # the demo stops: the failure is the last thing said
    assert "python -m beluga_trio: the live reply from OpenAIChatModel(" in err
    assert "failed with ModelHTTPError: HTTP 401 from" in err
    assert "sk-demo-secret" not in out + err


def test_command_line() -> None:
    args = parse_args(["--cancel-after", "0.5", "--base-url", "http://h/v1", "--model", "m"])
    assert (args.cancel_after, args.base_url, args.model, args.delay) == (
        0.5,
        "http://h/v1",
        "m",
        0.03,
    )
    for bad in (["--cancel-after", "-1"], ["--cancel-after", "soon"], ["--base-url", "http://h"]):
        with pytest.raises(SystemExit) as exited:
            parse_args(bad)
        assert exited.value.code == 2


def test_model_without_base_url_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    # Not quietly the public OpenAI endpoint: the server is always named.
    with pytest.raises(SystemExit) as exited:
        parse_args(["--model", "gpt-x"])
    assert exited.value.code == 2
    assert "--model needs --base-url" in capsys.readouterr().err


def test_a_model_that_cannot_be_reached_exits_non_zero(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as sock:  # a loopback port on which nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    assert cli(["--base-url", url, "--model", "m", "--delay", "0.001"]) == 1
    out, err = capsys.readouterr()
    assert "[error: ModelConnectionError: cannot reach the model server" in out
    assert "failed with ModelConnectionError: cannot reach the model server at" in err
    assert "tasks left behind" not in out


def test_without_the_http_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delitem(sys.modules, "beluga_trio.llm.openai", raising=False)
    monkeypatch.setitem(sys.modules, "httpx2", None)  # as if it were not installed
    assert cli(["--base-url", "http://h/v1", "--model", "m"]) == 2
    assert "pip install beluga_trio[http]" in capsys.readouterr().err


def test_cli_runs_the_demo(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["--delay", "0.001", "--cancel-after", "0.02"]) == 0
    out = flat(capsys.readouterr().out)
    # A real clock: on a loaded machine the deadline may pass before the model is called.
    assert "[cancelled after 0.02 s mid-stream" in out or (
        "[cancelled after 0.02 s before the model was called" in out
    )
    assert "0 tasks left behind" in out


@pytest.mark.parametrize("width", [40, 80])
async def test_the_demo_wraps_on_word_boundaries_at_the_width(
    width: int, autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await main(width=width) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= width
    # The live reply arrives one word piece at a time; wrapped, every word is still whole.
    section = out.split("[1] live")[1].split("    metrics:")[0]
    reply = [line.strip() for line in section.splitlines() if line.startswith("    ")]
    assert " ".join(reply) == REPLY
    assert len(reply) > 1


def test_the_terminal_never_splits_a_word_that_arrives_in_pieces(
    capsys: pytest.CaptureFixture[str],
) -> None:
    terminal = Terminal(20)
    for piece in ["  ab", "cd", "ef gh", "ij", " klmnop", "q", " r\n", "a-word-longer-than-20 x\n"]:
        terminal.write(piece)
    assert capsys.readouterr().out == "  abcdef ghij\n  klmnopq r\na-word-longer-than-20\nx\n"
