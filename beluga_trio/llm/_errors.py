"""The exceptions a chat model raises. None of them ever holds an API key."""

from __future__ import annotations

from typing import Final

__all__ = [
    "MalformedEventError",
    "ModelConnectionError",
    "ModelError",
    "ModelHTTPError",
    "shorten",
]

#: How much of a server's text an error message quotes.
QUOTE_LIMIT: Final = 300


def shorten(text: str, limit: int = QUOTE_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


class ModelError(Exception):
    """A chat model failed: the base class of the errors below, and what a model server's
    own error report in the middle of a stream raises."""


class ModelHTTPError(ModelError):
    """The model server answered with an HTTP error status (401, 429, 500...).

    ``status_code`` is the status, ``message`` the server's explanation (from its JSON error
    body when it has one, else the start of the body), ``url`` the endpoint without its query
    string, ``retry_after`` the seconds of a ``Retry-After`` header, if any. The API key is
    never part of it, not even when the server quotes it back.
    """

    def __init__(
        self, status_code: int, message: str, *, url: str = "", retry_after: float | None = None
    ) -> None:
        where = f" from {url}" if url else ""
        super().__init__(f"HTTP {status_code}{where}: {message}")
        self.status_code = status_code
        self.message = message
        self.url = url
        self.retry_after = retry_after


class ModelConnectionError(ModelError):
    """The connection to the model server failed, or the stream ended before the reply was
    complete (the server went away in the middle, or never sent ``data: [DONE]``)."""


class MalformedEventError(ModelError):
    """The server sent data that is not a valid event of the expected format.

    ``data`` is the offending text, cut to a few hundred characters; the message quotes it.
    """

    def __init__(self, problem: str, data: str) -> None:
        self.data = shorten(data)
        super().__init__(f"{problem}: {self.data!r}")
