"""Scenario "SSE server": the server's CPU per event, streaming N server-sent events to one
client over loopback, under hypercorn's trio worker.

beluga: ``beluga_trio.web.sse_response`` with its defaults (JSON encoding, an ``id:`` per
event, the disconnect watcher, the heartbeat task) over a ``@bt.stream`` generator (whose
producer runs in a task of its own: a task switch each way per item), and over a sync source
read in the response's task (the serving layer alone). Reference: a hand-written Starlette
``StreamingResponse`` over a plain async generator yielding the same bytes. The floor of any
strictly lock-step producer task: the same Starlette response over a hand-written lock-step
hand-off from a task running that generator (`bench._sse_server.LockStep`: two task switches
per item, nothing else). hypercorn's ``send`` takes two scheduler passes per event, a lock-step
hand-off two more, which no serving code can overlap without asking for an item before the
previous one was sent; so "beluga sse_response" is to be read against both rows. All run in one
server process (:mod:`bench._sse_server`); the figure is that process's CPU time
(``time.process_time_ns()`` before and after, read over HTTP) per event, not wall time: the
client (a raw socket reading to the end, in the benchmark's process) is not counted.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import trio

from bench._harness import Contender, ExternalJob, Scenario

SERVER = Path(__file__).resolve().parent.parent / "_sse_server.py"


class _Server:
    """The one server process both contenders use, started on first use."""

    process: subprocess.Popen[str] | None = None
    port = 0
    users = 0

    @classmethod
    def acquire(cls) -> int:
        if cls.process is None:
            cls.process = subprocess.Popen(
                [sys.executable, str(SERVER)], stdout=subprocess.PIPE, text=True
            )
            assert cls.process.stdout is not None
            url = cls.process.stdout.readline().strip()
            if not url.startswith("http://127.0.0.1:"):
                cls.process.kill()
                cls.process.wait()
                cls.process = None
                raise RuntimeError(f"the SSE server did not start (it printed {url!r})")
            cls.port = int(url.rsplit(":", 1)[1])
        cls.users += 1
        return cls.port

    @classmethod
    def release(cls) -> None:
        cls.users -= 1
        if cls.users == 0 and cls.process is not None:
            cls.process.send_signal(2)
            try:
                cls.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                cls.process.kill()
                cls.process.wait()
            if cls.process.stdout is not None:
                cls.process.stdout.close()
            cls.process = None


async def _get(port: int, target: str) -> bytes:
    """``GET target``; the raw response, read to its end (the server closes the connection
    after a response with a length; a chunked one ends with its last, empty chunk)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        head = f"GET {target} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"
        await stream.send_all(head.encode())
        parts: list[bytes] = []
        tail = b""
        while data := await stream.receive_some(1 << 16):
            parts.append(data)
            tail = (tail + data)[-16:]  # the last chunk may come in a piece of its own
            if tail.endswith(b"\r\n0\r\n\r\n"):
                break
    return b"".join(parts)


async def _job(port: int, path: str, n: int) -> tuple[int, int]:
    before = int((await _get(port, "/cpu")).partition(b"\r\n\r\n")[2])
    body = await _get(port, f"{path}?n={n}")
    after = int((await _get(port, "/cpu")).partition(b"\r\n\r\n")[2])
    return after - before, body.count(b"\ndata: ")


class _ServerCPU(ExternalJob):
    def __init__(self, path: str) -> None:
        self._path = path
        self._port = _Server.acquire()

    @property
    def note(self) -> str:
        return "server CPU, hypercorn trio worker"

    def measure(self, n: int) -> tuple[int, object]:
        return trio.run(_job, self._port, self._path, n)

    def close(self) -> None:
        _Server.release()


def load_reference() -> ExternalJob:
    return _ServerCPU("/starlette")


def load_lockstep_floor() -> ExternalJob:
    return _ServerCPU("/starlette-lockstep")


def load_beluga() -> ExternalJob:
    return _ServerCPU("/beluga")


def load_beluga_sync() -> ExternalJob:
    return _ServerCPU("/beluga-sync")


SCENARIO = Scenario(
    name="SSE server",
    description="server CPU per event: N server-sent events to one client over loopback",
    items=20_000,
    smoke_items=200,
    reference="Starlette StreamingResponse",
    contenders=(
        Contender(
            "Starlette StreamingResponse",
            load_reference,
            note="hand-written: a plain async generator",
        ),
        Contender(
            "Starlette over a lock-step task",
            load_lockstep_floor,
            note="hand-written floor of a producer task: two task switches per item",
        ),
        Contender("beluga sse_response", load_beluga, goal=1.1, note="over a @bt.stream generator"),
        Contender(
            "beluga sse_response (sync)",
            load_beluga_sync,
            goal=1.1,
            note="over from_iterable(range).map",
        ),
    ),
    expected=lambda n: n,
    unit="us/item",
)
