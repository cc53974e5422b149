"""The demo page in a real browser: headless Chromium from the distribution, driven by
Playwright (``executable_path``; no browser is ever downloaded) against ``python -m
beluga_trio serve`` on 127.0.0.1."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest
from web_server import running_command

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HOW = (
    "headless Chromium is not installed: run `apt-get update && apt-get install chromium` "
    "(Debian; .ci/run does it when it runs as root), then `make test`"
)
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=HOW)

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

#: Where the test leaves its screenshot (docs/images/web-demo.png is a copy of one).
SCREENSHOT = Path(os.environ.get("BELUGA_SCREENSHOT_DIR", "")) / "web-demo.png"


def test_the_page_streams_and_stop_closes_the_model_stream_at_once(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - a dev-only tool

    server_args = ["-m", "beluga_trio", "serve", "--port", "0", "--delay", "0.05"]
    with running_command(server_args) as (_, url), sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh --user-data-dir
            executable_path=CHROMIUM,
            headless=True,
            args=ARGS,
        )
        try:
            page = context.new_page()
            page.set_default_timeout(10_000)
            page.goto(url + "/")
            page.wait_for_function("document.getElementById('model').textContent === 'scripted'")
            page.fill("#prompt", "Why stop the producer?")
            page.click("#send")

            # The reply grows, live, through at least three states, each extending the last.
            states: list[str] = []
            deadline = time.monotonic() + 10
            # (at least 4 states, and a line's worth of text for the screenshot)
            while (len(states) < 4 or len(states[-1]) < 160) and time.monotonic() < deadline:
                text = page.inner_text("#reply")
                if text and (not states or text != states[-1]):
                    assert not states or text.startswith(states[-1]), (states[-1], text)
                    states.append(text)
                page.wait_for_timeout(40)
            assert len(states) >= 4, states
            assert states[0].startswith('You asked: "Why stop the producer?"'[: len(states[0])])
            assert re.search(
                r"time to first token: \d+ ms · tokens/s: [\d.]+", page.inner_text("#metrics")
            )

            page.click("#stop")
            page.wait_for_function("document.getElementById('record').dataset.closedAfterMs")
            record = page.inner_text("#record")
            closed_after = float(page.get_attribute("#record", "data-closed-after-ms") or "nan")
            assert "server: the model stream was closed" in record
            assert "(stopped," in record  # the model was stopped, not finished
            assert closed_after <= 200, record
            assert page.inner_text("#state") == "stopped"
            # Nothing more arrives after Stop.
            stopped_text = page.inner_text("#reply")
            page.wait_for_timeout(300)
            assert page.inner_text("#reply") == stopped_text
            assert len(stopped_text) < 400  # far from the whole reply: it was cut short
            page.screenshot(path=str(tmp_path / "web-demo.png"), full_page=True)
            if SCREENSHOT.parent != Path():
                shutil.copy(tmp_path / "web-demo.png", SCREENSHOT)
            print(f"\nbrowser: {record}; states seen: {len(states)}")
        finally:
            context.close()
