"""A real ``redis-server`` (the distribution's package) on 127.0.0.1 and a free port, started
and stopped by the tests. Without it the tests that need it are skipped, saying how to run them.
"""

from __future__ import annotations

import gc
import os
import shutil
import socket
import subprocess
import time
import warnings
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

HOW_TO_RUN = (
    "redis-server is not installed: `apt-get install redis-server` (Debian), or run .ci/run, "
    "which installs it, to run the Redis tests"
)


def collect_coredis_garbage() -> None:
    """coredis (6.9) never closes the three anyio memory streams each connection makes, so
    every connection it drops (after a cancelled blocking read, a lost server, or at exit)
    warns when it is collected: collect them where that one known warning is expected,
    instead of letting the garbage collector attribute it to whichever test runs next."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=r"Unclosed <MemoryObject(Send|Receive)Stream",
            category=ResourceWarning,
        )
        gc.collect()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


@contextmanager
def redis_server() -> Generator[RedisServer]:
    """Start a throw-away server (no persistence) and stop it at the end; bounded waits."""
    executable = shutil.which("redis-server")
    if executable is None:
        if os.environ.get("BELUGA_TRIO_REQUIRE_SERVERS"):  # set by .ci/run
            pytest.fail(HOW_TO_RUN)
        pytest.skip(HOW_TO_RUN)
    port = free_port()
    process = subprocess.Popen(
        [
            executable,
            *("--bind", "127.0.0.1", "--port", str(port)),
            *("--save", "", "--appendonly", "no", "--protected-mode", "yes"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on 127.0.0.1:{port}")
            time.sleep(0.02)
        yield RedisServer(port, process)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                process.kill()
                process.wait(timeout=10)
