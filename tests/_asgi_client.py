"""`ASGIClient`: one request to an ASGI application called directly in the test's own trio
run (no server, no socket), for tests that need to control the client's disconnect."""

from __future__ import annotations

import json
from typing import Any

import trio


class ASGIClient:
    """One GET request: collects what the app sends; ``leave()`` disconnects."""

    def __init__(self, last_event_id: str | None = None) -> None:
        headers = [] if last_event_id is None else [(b"last-event-id", last_event_id.encode())]
        self.scope = {"type": "http", "method": "GET", "path": "/events", "headers": headers}
        self.status: int | None = None
        self.body = b""
        self.ended = False
        self.received = trio.Event()  # set at every body message
        self._gone = trio.Event()

    async def receive(self) -> dict[str, Any]:
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        else:
            self.body += message.get("body", b"")
            self.ended = not message.get("more_body", False)
            self.received.set()
            self.received = trio.Event()

    def leave(self) -> None:
        self._gone.set()

    async def call(self, app: Any) -> None:
        """Send this request to ``app``; returns when the app does."""
        await app(self.scope, self.receive, self.send)

    def events(self) -> list[tuple[str, str]]:
        """(id, data) of each event; an error event has the id ``"error"``."""
        out: list[tuple[str, str]] = []
        for block in self.body.decode().split("\n\n"):
            fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
            if "data" in fields:
                out.append((fields.get("id", fields.get("event", "")), fields["data"]))
        return out

    def error(self) -> dict[str, str]:
        """The error of a refused request: ``{"message", "type"}``."""
        result: dict[str, str] = json.loads(self.body)["error"]
        return result
