"""The exceptions a chat model raises. None of them ever holds a secret the model was given.

Every text an error quotes from a server passes through a `Redactor` *before* it is cut to
`QUOTE_LIMIT` characters: cutting first could leave the start of a key on the near side of
the cut, where replacing the whole key no longer finds it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final, final

__all__ = [
    "IncompleteReplyError",
    "MalformedEventError",
    "ModelConnectionError",
    "ModelError",
    "ModelHTTPError",
    "ModelStreamError",
    "Redactor",
    "shorten",
]

#: How much of a server's text an error message quotes.
QUOTE_LIMIT: Final = 300

#: What a secret is replaced with.
REDACTED: Final = "[redacted]"

Redact = Callable[[str], str]


def _keep(text: str) -> str:
    return text


def shorten(text: str, limit: int = QUOTE_LIMIT, redact: Redact = _keep) -> str:
    """``text`` with its secrets replaced (``redact``), then cut to ``limit`` characters,
    saying how much was cut."""
    text = redact(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


@final
class Redactor:
    """Replaces every secret (an API key, the value of a credential header) in a text.

    Longer secrets are replaced first, so that a secret containing another is replaced whole.
    Secrets shorter than 4 characters are ignored: replacing them would mangle ordinary text
    and hide nothing.
    """

    __slots__ = ("_secrets",)

    def __init__(self, secrets: Iterable[str]) -> None:
        unique = {s for s in secrets if len(s) >= 4}
        self._secrets = tuple(sorted(unique, key=len, reverse=True))

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


class ModelError(Exception):
    """A chat model failed: the base class of the errors below."""


class ModelHTTPError(ModelError):
    """The model server answered with an HTTP error status (401, 429, 500...).

    - ``status_code``: the HTTP status;
    - ``message``: the server's explanation (from its JSON error body when it has one, else
      the start of the body);
    - ``code`` and ``type``: the provider's error code and type, when its JSON error body has
      them (OpenAI: ``"insufficient_quota"`` / ``"rate_limit_exceeded"``, ...), else ``None``;
      a program tells "retry later" from "do not retry" with them;
    - ``body``: the start of the response body (at most a few hundred characters);
    - ``url``: the endpoint, without its query string;
    - ``retry_after``: the seconds the server asks to wait (``retry-after-ms``, or
      ``Retry-After`` in seconds or as an HTTP date), if it says.

    No secret the model was given is part of it, not even when the server quotes it back.
    """

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        url: str = "",
        retry_after: float | None = None,
        code: str | int | None = None,
        type: str | None = None,
        body: str = "",
    ) -> None:
        where = f" from {url}" if url else ""
        detail = ", ".join(f"{k}={v!r}" for k, v in (("code", code), ("type", type)) if v)
        super().__init__(
            f"HTTP {status_code}{where}: {message}" + (f" ({detail})" if detail else "")
        )
        self.status_code = status_code
        self.message = message
        self.url = url
        self.retry_after = retry_after
        self.code = code
        self.type = type
        self.body = body


class ModelConnectionError(ModelError):
    """The connection to the model server failed (it cannot be reached, a timeout of the
    HTTP client expired, the stream broke off), or the reply ended incomplete
    (`IncompleteReplyError`)."""


class IncompleteReplyError(ModelConnectionError):
    """The stream ended (at ``data: [DONE]`` or at the end of the body) before any chunk
    said why the model stopped (a ``finish_reason``): the reply is cut short, not complete.

    The chunks received before it are valid; ``collect_result()`` or an
    `~beluga_trio.llm.Aggregator` keeps them.
    """


class ModelStreamError(ModelError):
    """The server reported an error inside the stream (an ``error`` object or event instead
    of a chunk), e.g. vLLM's ``{"object": "error", "message": "CUDA out of memory"}``.

    ``message``, ``code`` and ``type`` are the server's, when it gives them; ``data`` is the
    start of the event's text.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | int | None = None,
        type: str | None = None,
        data: str = "",
    ) -> None:
        detail = ", ".join(f"{k}={v!r}" for k, v in (("code", code), ("type", type)) if v)
        super().__init__(
            f"the model server reported an error: {message}" + (f" ({detail})" if detail else "")
        )
        self.message = message
        self.code = code
        self.type = type
        self.data = data


class MalformedEventError(ModelError):
    """The server sent data that is not a valid event of the expected format.

    ``data`` is the offending text, secrets removed and cut to a few hundred characters; the
    message quotes it.
    """

    def __init__(self, problem: str, data: str, *, redact: Redact = _keep) -> None:
        self.problem = problem
        self.data = shorten(data, redact=redact)
        super().__init__(f"{problem}: {self.data!r}")
