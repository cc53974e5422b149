"""Serving streams over HTTP (ASGI): `sse_response` streams any `~beluga_trio.Stream` as
server-sent events, `openai_app` serves any `~beluga_trio.llm.ChatModel` as an
OpenAI-compatible API, `resumable_sse` a stream published to Redis, resuming a client that
reconnects to any process. In each, a client that goes away stops the stream at once.

Needs the ``web`` extra: ``pip install beluga_trio[web]``.
"""

from ._openai import OpenAIApp, openai_app
from ._pump import HEARTBEAT, Outcome
from ._resumable import ResumableSSE, resumable_sse
from ._serve import serve
from ._sse import DEFAULT_ERROR_MESSAGE, SSEResponse, last_event_id, sse_response, to_json

__all__ = [
    "DEFAULT_ERROR_MESSAGE",
    "HEARTBEAT",
    "OpenAIApp",
    "Outcome",
    "ResumableSSE",
    "SSEResponse",
    "last_event_id",
    "openai_app",
    "resumable_sse",
    "serve",
    "sse_response",
    "to_json",
]


def _fix_module_names() -> None:
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith(f"{__name__}._"):
            obj.__module__ = __name__


_fix_module_names()
