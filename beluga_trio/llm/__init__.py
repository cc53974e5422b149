"""Chat models as streams: the `ChatModel` protocol, aggregation of a streamed reply into a
`~beluga_trio.schema.Message`, chunks as `~beluga_trio.Event` streams, and `ScriptedModel`,
an offline model for tests and demos.

The OpenAI-compatible HTTP model lives in `beluga_trio.llm.openai` (``pip install
beluga_trio[http]``); this package does not import httpx.
"""

from ._aggregate import Aggregator, aggregate, to_events
from ._errors import (
    IncompleteReplyError,
    MalformedEventError,
    ModelConnectionError,
    ModelError,
    ModelHTTPError,
    ModelStreamError,
)
from ._model import ChatModel, Prompt, as_messages
from ._scripted import Fail, Pause, ScriptedCall, ScriptedModel, Step, split_words

__all__ = [
    "Aggregator",
    "ChatModel",
    "Fail",
    "IncompleteReplyError",
    "MalformedEventError",
    "ModelConnectionError",
    "ModelError",
    "ModelHTTPError",
    "ModelStreamError",
    "Pause",
    "Prompt",
    "ScriptedCall",
    "ScriptedModel",
    "Step",
    "aggregate",
    "as_messages",
    "split_words",
    "to_events",
]


def _fix_module_names() -> None:
    # Public objects say they live in this package, not in its private modules.
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith(f"{__name__}._"):
            obj.__module__ = __name__


_fix_module_names()
