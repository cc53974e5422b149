"""A minimal OpenAI-compatible streaming server for the "LLM stream" scenario, run in a
process of its own (``python -m bench._llm_server``) so that its CPU time is not the
benchmark's.

It answers every ``POST .../chat/completions`` whose JSON ``model`` is ``"chunks-N"`` with N
``chat.completion.chunk`` events (a role chunk first, text deltas ``"t0 "``, ``"t1 "``...,
a finish chunk, a usage chunk, ``data: [DONE]``), each event written to the socket on its
own, as HTTP/1.1 chunked transfer encoding, the way ASGI servers stream. Connections are
kept alive. It prints ``PORT <n>`` once it listens on 127.0.0.1, and runs until its standard
input closes.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from functools import cache

MODEL = "gpt-4o-mini-2024-07-18"


def _event(obj: object) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _chunk(delta: dict[str, str], finish: str | None = None) -> dict[str, object]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": MODEL,
        "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def token(i: int) -> str:
    """The text delta of the i-th content chunk."""
    return f"t{i} "


@cache
def events(n: int) -> tuple[bytes, ...]:
    """The body of a reply with ``n`` text chunks, one HTTP chunk per event."""
    usage: dict[str, object] = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": MODEL,
        "choices": [],
        "usage": {"prompt_tokens": 5, "completion_tokens": n, "total_tokens": n + 5},
    }
    out = [_event(_chunk({"role": "assistant", "content": ""}))]
    out += [_event(_chunk({"content": token(i)})) for i in range(n)]
    out += [_event(_chunk({}, "stop")), _event(usage), b"data: [DONE]\n\n"]
    return tuple(b"%x\r\n%s\r\n" % (len(e), e) for e in out)


HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
)


def _read_request(conn: socket.socket, pending: bytearray) -> bytes | None:
    """One request's body, or None when the client closed the connection."""
    while b"\r\n\r\n" not in pending:
        data = conn.recv(65536)
        if not data:
            return None
        pending += data
    head, _, rest = bytes(pending).partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = bytearray(rest)
    while len(body) < length:
        data = conn.recv(65536)
        if not data:
            return None
        body += data
    pending[:] = body[length:]
    return bytes(body[:length])


def _serve(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    pending = bytearray()
    try:
        while (body := _read_request(conn, pending)) is not None:
            model = str(json.loads(body).get("model", ""))
            n = int(model.removeprefix("chunks-")) if model.startswith("chunks-") else 3
            conn.sendall(HEAD)
            for piece in events(n):
                conn.sendall(piece)
            conn.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the client went away
    finally:
        conn.close()


def main() -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)

    def accept() -> None:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=_serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    print(f"PORT {listener.getsockname()[1]}", flush=True)
    sys.stdin.read()  # until the benchmark closes our standard input


if __name__ == "__main__":
    main()
