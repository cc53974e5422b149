"""``python -m beluga_trio serve``: the gateway demo's command, page and records (the page in
a real browser is tests/test_web_browser.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
from web_client import request
from web_server import ROOT, running_command

from beluga_trio.__main__ import cli
from beluga_trio.web._serve import parse_args


async def test_serve_serves_the_page_the_api_and_records_then_stops_on_ctrl_c() -> None:
    with running_command(["-m", "beluga_trio", "serve", "--port", "0", "--delay", "0.001"]) as (
        process,
        url,
    ):
        async with request(url + "/") as response:
            assert response.status == 200
            assert response.headers["content-type"] == "text/html; charset=utf-8"
            page = (await response.read_all()).decode()
        assert '<button id="stop" disabled>Stop</button>' in page
        async with request(url + "/v1/models") as response:
            assert json.loads(await response.read_all())["data"][0]["id"] == "scripted"
        body = json.dumps({"model": "scripted", "messages": [{"role": "user", "content": "Hi"}]})
        headers = {"x-request-id": "r1", "content-type": "application/json"}
        async with request(
            url + "/v1/chat/completions", "POST", body.encode(), headers
        ) as response:
            reply = json.loads(await response.read_all())
        assert reply["choices"][0]["message"]["content"].startswith('You asked: "Hi"')
        async with request(url + "/demo/record/r1") as response:
            record = json.loads(await response.read_all())
        assert (record["id"], record["outcome"]) == ("r1", "end")
        assert record["closed_at_ms"] >= record["opened_at_ms"]
        async with request(url + "/demo/record/nope") as response:
            assert response.status == 404
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0  # a graceful stop, no traceback
        assert process.stdout is not None
        assert process.stdout.read() == "stopped\n"


def test_serve_arguments() -> None:
    args = parse_args(["--port", "0", "--base-url", "http://h/v1", "--model", "m"])
    assert (args.port, args.base_url, args.model, args.delay) == (0, "http://h/v1", "m", 0.05)
    for bad in (["--port", "70000"], ["--base-url", "http://h"], ["--delay", "0"]):
        with pytest.raises(SystemExit) as exited:
            parse_args(bad)
        assert exited.value.code == 2


def test_serve_without_the_web_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [m for m in sys.modules if m.startswith("beluga_trio.web")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "starlette", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "starlette.responses", None)
    assert cli(["serve"]) == 2
    assert "pip install beluga_trio[web]" in capsys.readouterr().err


def test_make_demo_mentions_make_serve() -> None:
    out = subprocess.run(
        ["make", "-n", "demo"], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert "make serve" in out
