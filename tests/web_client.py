"""A small HTTP/1.1 client over a trio socket, for reading event streams line by line
without any library's buffering (and cheap enough for hundreds of clients at once)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import trio


class HTTPStream:
    """One response: ``status``, ``headers``, then the body, de-chunked, line by line."""

    def __init__(self, sock: trio.SocketStream) -> None:
        self.sock = sock
        self.status = 0
        self.headers: dict[str, str] = {}
        self._raw = b""  # received, not yet de-chunked
        self._body = b""  # de-chunked, not yet returned
        self._chunked = False
        self._chunk_left = 0
        self.ended = False

    async def _fill(self) -> bool:
        data = await self.sock.receive_some(65536)
        if not data:
            return False
        self._raw += data
        return True

    async def read_head(self) -> None:
        while b"\r\n\r\n" not in self._raw:
            if not await self._fill():
                raise ConnectionError("the server closed the connection before the head")
        head, _, self._raw = self._raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        for line in lines[1:]:
            key, _, value = line.partition(":")
            self.headers[key.strip().lower()] = value.strip()
        self._chunked = self.headers.get("transfer-encoding", "") == "chunked"

    def _dechunk(self) -> None:
        if not self._chunked:
            self._body += self._raw
            self._raw = b""
            return
        while True:
            if self._chunk_left:
                take = self._raw[: self._chunk_left]
                self._body += take
                self._raw = self._raw[len(take) :]
                self._chunk_left -= len(take)
                if self._chunk_left:
                    return
            if self._raw.startswith(b"\r\n"):
                self._raw = self._raw[2:]
            if b"\r\n" not in self._raw:
                return
            size_line, _, rest = self._raw.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                self.ended = True
                self._raw = b""
                return
            self._raw = rest
            self._chunk_left = size

    async def line(self) -> str | None:
        """The next line of the body (without its newline), or None at the end."""
        while True:
            self._dechunk()
            if b"\n" in self._body:
                line, _, self._body = self._body.partition(b"\n")
                return line.decode()
            if self.ended or not await self._fill():
                return None

    async def read_all(self) -> bytes:
        while not self.ended and await self._fill():
            self._dechunk()
        self._dechunk()
        body, self._body = self._body, b""
        return body


@asynccontextmanager
async def request(
    url: str,
    method: str = "GET",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> AsyncGenerator[HTTPStream, None]:
    """Send one request (``Connection: close``); the response once its head has arrived.
    Leaving the block closes the socket."""
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1"
    sock = await trio.open_tcp_stream("127.0.0.1", parts.port or 80)
    async with sock:
        lines = [f"{method} {parts.path or '/'} HTTP/1.1", f"host: {parts.netloc}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        lines += [f"content-length: {len(body)}", "connection: close", "", ""]
        # The server may answer early (a body too large) and close: then read its answer.
        with contextlib.suppress(trio.BrokenResourceError):
            await sock.send_all("\r\n".join(lines).encode() + body)
        response = HTTPStream(sock)
        await response.read_head()
        yield response
