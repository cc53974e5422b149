"""``python -m beluga_trio serve``: the gateway demo. `openai_app` over a `ScriptedModel` (or,
with ``--base-url``/``--model``, over an `OpenAIChatModel` proxying a real server), under
hypercorn's trio worker on 127.0.0.1, with a small web page: a prompt box, the reply streamed
live, a Stop button, time to first token and tokens/s, and the server's own record of when
the model's stream was closed after Stop."""

from __future__ import annotations

import argparse
import functools
import importlib.resources
import math
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from ..llm import ChatModel, ScriptedModel, split_words
from ..schema import Message
from ._asgi import Receive, Scope, Send, header, json_response, lifespan
from ._openai import OpenAIApp
from ._recording import REQUEST_ID, RecordingModel

__all__ = ["DemoApp", "cli", "demo_model", "serve"]

REPLY = (
    "Leaving a stream should stop its producer because nobody else will. In beluga_trio the "
    "consumer's async with owns every task of the stream, so when the block is left, by the "
    "end, a break, an error or a cancellation, each stage is stopped and each producer's "
    "finally has run before the next line. Served over HTTP, the response is that consumer: "
    "when the browser goes away, the server sees the disconnect, leaves the block, and the "
    "model's stream is closed at once, instead of generating tokens that no one will read. "
    "An upstream model behind this gateway gets its request closed the same moment, so it "
    "stops spending compute too. Press Stop at any time to see the server's own record of "
    "how many milliseconds that took."
)


def demo_model(delay: float = 0.05) -> ScriptedModel:
    """The stand-in model: it repeats the question, then explains, a word piece at a time."""

    def script(messages: tuple[Message, ...]) -> list[str]:
        question = messages[-1].content.strip() if messages else ""
        opening = f'You asked: "{question}"\n\n' if question else ""
        return split_words(opening + REPLY)

    return ScriptedModel(script, delay=delay, first_delay=delay * 4, model_id="scripted")


class DemoApp:
    """The demo's ASGI app: the page at ``/``, the record of a stream at
    ``/demo/record/<id>``, and the OpenAI-compatible API for everything else. A request's
    ``X-Request-Id`` header names its stream's record."""

    def __init__(self, model: ChatModel, *, model_name: str | None = None) -> None:
        self.model = RecordingModel(model)
        self.api = OpenAIApp(self.model, model_name=model_name or self.model.model_id)
        self._page = importlib.resources.files("beluga_trio.web").joinpath("demo.html").read_bytes()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        path: str = scope.get("path", "")
        if path == "/" and scope.get("method") == "GET":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/html; charset=utf-8"),
                        (b"content-length", str(len(self._page)).encode()),
                        (b"cache-control", b"no-store"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": self._page})
            return
        if path.startswith("/demo/record/"):
            record = self.model.records.get(path.removeprefix("/demo/record/"))
            if record is None:
                await json_response(send, 404, {"error": {"message": "no such stream"}})
            else:
                await json_response(send, 200, record.as_json())
            return
        token = REQUEST_ID.set(header(scope, b"x-request-id"))
        try:
            await self.api(scope, receive, send)
        finally:
            REQUEST_ID.reset(token)


async def serve(
    app: Callable[[Scope, Receive, Send], Awaitable[None]],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    ready: Callable[[str], None] | None = None,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` with hypercorn's trio worker until cancelled, or until
    ``shutdown_trigger()`` returns (then gracefully); ``ready(url)`` is called (and
    ``task_status.started(url)``) once it listens. Needs the ``web`` extra."""
    from hypercorn.config import Config  # noqa: PLC0415 - the web extra, imported on use
    from hypercorn.trio import serve as hypercorn_serve  # noqa: PLC0415  # pyright: ignore[reportUnknownVariableType]

    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.loglevel = "WARNING"
    config.graceful_timeout = 1.0
    framework: Any = app  # hypercorn types ASGI messages as TypedDicts
    async with trio.open_nursery() as nursery:
        run = functools.partial(
            hypercorn_serve, framework, config, shutdown_trigger=shutdown_trigger
        )
        binds: list[str] = await nursery.start(run)
        url = binds[0]
        if ready is not None:
            ready(url)
        task_status.started(url)


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"needs a number of seconds > 0, got {text}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m beluga_trio serve",
        description="The gateway demo: an OpenAI-compatible API and a web page, on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=8000, help="the port (0: any free one)")
    parser.add_argument(
        "--base-url",
        metavar="URL",
        help="proxy this OpenAI-compatible API root, e.g. http://localhost:8080/v1 "
        "(API key from OPENAI_API_KEY); default: a scripted model",
    )
    parser.add_argument("--model", metavar="NAME", help="the upstream model (with --base-url)")
    parser.add_argument(
        "--delay", type=_seconds, default=0.05, metavar="SECONDS", help="the scripted model's pace"
    )
    args = parser.parse_args(argv)
    if args.base_url is not None and args.model is None:
        parser.error("--base-url needs --model")
    if not 0 <= args.port < 65536:
        parser.error(f"--port needs a port number from 0 to 65535, got {args.port}")
    return args


def cli(argv: Sequence[str] | None = None) -> int:
    """Run the gateway demo until Ctrl+C; the exit status."""
    args = parse_args(argv)
    model: ChatModel
    if args.model is not None:
        try:
            from beluga_trio.llm.openai import DEFAULT_BASE_URL, OpenAIChatModel  # noqa: PLC0415
        except ImportError as exc:
            sys.stderr.write(f"{exc}\n")
            return 2
        model = OpenAIChatModel(args.model, base_url=args.base_url or DEFAULT_BASE_URL)
    else:
        model = demo_model(args.delay)
    app = DemoApp(model)

    def ready(url: str) -> None:
        sys.stdout.write(
            f"beluga_trio gateway serving {app.api.model_name!r}: open {url}/ "
            f"(OpenAI API at {url}/v1); Ctrl+C stops\n"
        )
        sys.stdout.flush()

    trio.run(
        functools.partial(serve, app, port=args.port, ready=ready, shutdown_trigger=interrupted)
    )
    sys.stdout.write("stopped\n")
    return 0


async def interrupted() -> None:
    """Returns at Ctrl+C (SIGINT) or SIGTERM: the server then shuts down gracefully."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return
