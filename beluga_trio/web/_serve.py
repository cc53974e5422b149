"""``python -m beluga_trio serve``: the gateway demo. `openai_app` over a `ScriptedModel` (or,
with ``--base-url``/``--model``, over an `OpenAIChatModel` proxying a real server), under
hypercorn's trio worker on 127.0.0.1, with a small web page: a prompt box, the reply streamed
live, a Stop button, time to first token and tokens/s, and the server's own record of when
the model's stream was closed after Stop.

With ``--redis URL``, it also serves replies that survive a dropped connection and may be read
through any gateway process sharing that Redis: ``POST /replies`` (``{"prompt": ...}``) starts
the model once, publishing the reply's text to Redis, and answers ``{"id", "events"}``;
``GET /replies/<id>/events`` streams it as server-sent events from any process, resuming from
``Last-Event-ID`` (`resumable_sse`)."""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.resources
import importlib.util
import json
import math
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import trio

from .._stream import Stream
from ..llm import ChatModel, ScriptedModel, split_words
from ..schema import Message
from ._asgi import Receive, Scope, Send, header, json_response, lifespan
from ._openai import OpenAIApp
from ._pump import log
from ._recording import REQUEST_ID, RecordingModel
from ._resumable import resumable_sse

if TYPE_CHECKING:
    import coredis

__all__ = ["REPLY_KEY_PREFIX", "DemoApp", "cli", "demo_model", "serve"]

#: Where the gateway publishes a reply in Redis: this prefix and the reply's id.
REPLY_KEY_PREFIX: Final = "beluga_trio:reply:"
_MAX_PROMPT_BODY: Final = 64 * 1024

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
    ``/demo/record/<id>`` (every record at ``/demo/records``), and the OpenAI-compatible API
    for everything else. A request's ``X-Request-Id`` header names its stream's record.

    With ``redis`` (a coredis client), also ``POST /replies`` and ``GET /replies/<id>/events``
    (see the module). A reply's model runs in a task of the app's lifespan, not of the
    request: a client that leaves stops only its own subscription; the server's shutdown
    stops the replies still running (each then ends with an error entry, never silently).
    Its Redis entries expire ``expire`` seconds after the last one was written.
    """

    def __init__(
        self,
        model: ChatModel,
        *,
        model_name: str | None = None,
        redis: coredis.Redis[Any] | None = None,
        expire: float = 3600.0,
    ) -> None:
        self.model = RecordingModel(model)
        self.api = OpenAIApp(self.model, model_name=model_name or self.model.model_id)
        self.redis = redis
        self.expire = expire
        self._page = importlib.resources.files("beluga_trio.web").joinpath("demo.html").read_bytes()
        self._replies: trio.Nursery | None = None  # while the lifespan runs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            async with trio.open_nursery() as nursery:
                self._replies = nursery
                try:
                    await lifespan(receive, send)
                finally:
                    self._replies = None
                    nursery.cancel_scope.cancel()  # the replies still running stop
            return
        path: str = scope.get("path", "")
        if path.startswith("/replies") and self.redis is not None:
            await self._reply_route(self.redis, scope, receive, send)
            return
        if path == "/demo/records":
            records = [record.as_json() for record in self.model.records.values()]
            await json_response(send, 200, records)
            return
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

    async def _reply_route(
        self, redis: coredis.Redis[Any], scope: Scope, receive: Receive, send: Send
    ) -> None:
        path: str = scope["path"]
        method = scope.get("method")
        if path == "/replies" and method == "POST":
            await self._start_reply(redis, receive, send)
            return
        reply_id = path.removeprefix("/replies/").removesuffix("/events")
        if path.endswith("/events") and method == "GET" and reply_id and "/" not in reply_id:
            await resumable_sse(redis, REPLY_KEY_PREFIX + reply_id)(scope, receive, send)
            return
        await json_response(send, 404, {"error": {"message": f"no route {method} {path}"}})

    async def _start_reply(self, redis: coredis.Redis[Any], receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > _MAX_PROMPT_BODY:
                await _bad_request(send, f"the body is larger than {_MAX_PROMPT_BODY} bytes")
                return
            if not message.get("more_body", False):
                break
        try:
            prompt = json.loads(body)["prompt"]
        except (ValueError, TypeError, KeyError):
            prompt = None
        if not isinstance(prompt, str):
            await _bad_request(send, 'the body must be JSON {"prompt": "..."}')
            return
        nursery = self._replies
        if nursery is None:
            await json_response(
                send, 503, {"error": {"message": "the server runs without an ASGI lifespan"}}
            )
            return
        reply_id = uuid.uuid4().hex
        token = REQUEST_ID.set(reply_id)  # the model's record, at /demo/record/<id>
        try:
            text = self.model.stream(prompt).map(lambda chunk: chunk.delta).filter(bool)
        finally:
            REQUEST_ID.reset(token)
        key = REPLY_KEY_PREFIX + reply_id
        try:
            # Returns once the key exists: the reply can be read through any process from now.
            await nursery.start(_publish_reply, text, redis, key, self.expire)
        except Exception:  # noqa: BLE001 - the start entry could not be written: told, logged
            log.exception("the reply %s could not start", key)
            await json_response(send, 503, {"error": {"message": "Redis is unreachable"}})
            return
        await json_response(send, 201, {"id": reply_id, "events": f"/replies/{reply_id}/events"})


async def _publish_reply(  # noqa: ASYNC128 - publish() calls started()
    text: Stream[str],
    redis: coredis.Redis[Any],
    key: str,
    expire: float,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Publish one reply; its failure is in its Redis entries (and the log), not the server's."""
    from ..redis import publish  # noqa: PLC0415 - the redis extra, imported on use

    try:
        await publish(text, redis, key, expire=expire, maxlen=100_000, task_status=task_status)
    except Exception:  # noqa: BLE001 - written to Redis as an error entry for every reader
        log.exception("the reply %s failed", key)


async def _bad_request(send: Send, message: str) -> None:
    await json_response(send, 400, {"error": {"message": message, "type": "invalid_request"}})


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
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="serve resumable replies (POST /replies, GET /replies/<id>/events) through this "
        "Redis, e.g. redis://127.0.0.1:6379 (needs the redis extra)",
    )
    parser.add_argument(
        "--expire",
        type=_seconds,
        default=3600.0,
        metavar="SECONDS",
        help="with --redis: how long a reply is kept after its last event",
    )
    args = parser.parse_args(argv)
    if args.base_url is not None and args.model is None:
        parser.error("--base-url needs --model")
    if args.redis is not None and not args.redis.startswith(("redis://", "rediss://", "unix://")):
        parser.error(f"--redis needs a URL such as redis://127.0.0.1:6379, got {args.redis!r}")
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
    if args.redis is not None and importlib.util.find_spec("coredis") is None:
        sys.stderr.write("--redis needs coredis: pip install 'beluga_trio[redis]'\n")
        return 2

    async def run() -> None:
        async with contextlib.AsyncExitStack() as stack:
            redis = None
            if args.redis is not None:
                redis = await stack.enter_async_context(_redis_client(args.redis))
            app = DemoApp(model, redis=redis, expire=args.expire)

            def ready(url: str) -> None:
                replies = f"; resumable replies at {url}/replies" if redis is not None else ""
                sys.stdout.write(
                    f"beluga_trio gateway serving {app.api.model_name!r}: open {url}/ "
                    f"(OpenAI API at {url}/v1{replies}); Ctrl+C stops\n"
                )
                sys.stdout.flush()

            await serve(app, port=args.port, ready=ready, shutdown_trigger=interrupted)

    trio.run(run)
    sys.stdout.write("stopped\n")
    return 0


def _redis_client(url: str) -> coredis.Redis[Any]:
    import coredis  # noqa: PLC0415 - the redis extra

    return coredis.Redis.from_url(url)


async def interrupted() -> None:
    """Returns at Ctrl+C (SIGINT) or SIGTERM: the server then shuts down gracefully."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return
