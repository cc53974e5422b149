"""Real servers for the web tests: hypercorn's trio worker on 127.0.0.1, on a free port.

`running_app` serves an ASGI app in a thread of its own with its own ``trio.run`` (real
time, whatever clock the test runs on; its tasks never count among the test's).
`running_command` runs ``python -m beluga_trio serve ...`` or another server script as a
subprocess and reads the URL it prints.
"""

from __future__ import annotations

import functools
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Generator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config

# hypercorn types a WSGI app with a bare dict, which strict pyright reports at the import.
from hypercorn.trio import serve  # pyright: ignore[reportUnknownVariableType]

ROOT = Path(__file__).resolve().parent.parent


class AppServer:
    """An ASGI app served in its own thread; ``url`` is ``http://127.0.0.1:PORT``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.url = ""
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        started: queue.Queue[str | BaseException] = queue.Queue()
        self._thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self._thread.start()
        outcome = started.get(timeout=10)
        if isinstance(outcome, BaseException):
            raise outcome
        self.url = outcome

    def stop(self) -> None:
        assert self._thread is not None
        assert self._token is not None
        stop = self._stop
        assert stop is not None
        # Works from any thread, the test's trio thread included.
        self._token.run_sync_soon(stop.set)
        self._thread.join(timeout=10)
        assert not self._thread.is_alive(), "the server did not stop"

    def _run(self, started: queue.Queue[str | BaseException]) -> None:
        try:
            trio.run(self._serve, started)
        except Exception as exc:
            started.put(exc)
            raise

    async def _serve(self, started: queue.Queue[str | BaseException]) -> None:
        config = Config()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        config.loglevel = "WARNING"
        config.graceful_timeout = 1.0
        self._token = trio.lowlevel.current_trio_token()
        stop = self._stop = trio.Event()
        run = functools.partial(serve, self.app, config, shutdown_trigger=stop.wait)
        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(run)
            started.put(binds[0])


@contextmanager
def running_app(app: Any) -> Generator[AppServer, None, None]:
    server = AppServer(app)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def running_command(
    args: Sequence[str], env: dict[str, str] | None = None
) -> Generator[tuple[subprocess.Popen[str], str], None, None]:
    """Run ``python ARGS`` (it prints a line containing ``http://127.0.0.1:PORT``); yields the
    process and that URL; stops it (SIGINT, then kill) at the end."""
    process = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    try:
        assert process.stdout is not None
        url = ""
        for line in process.stdout:
            if "http://127.0.0.1:" in line:
                url = line[line.index("http://127.0.0.1:") :].split()[0].rstrip("/")
                break
        assert url, f"the server printed no URL (exit status {process.poll()})"
        yield process, url
    finally:
        if process.poll() is None:
            process.send_signal(2)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()


async def eventually(predicate: Callable[[], bool], patience: float = 5.0) -> None:
    """Wait (in a worker thread, polling every millisecond) until ``predicate()`` is true
    about state a server thread writes; fail after ``patience`` seconds."""

    def poll() -> bool:
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.001)
        return False

    assert await trio.to_thread.run_sync(poll), f"not true within {patience} s: {predicate}"
