"""When a failed request may be sent again, and how long to wait first: pure functions.

A request is retried only if the model was told to (``retries=n``), only for failures that
say nothing about the request itself (a rate limit, a server error, a connection that could
not be made or broke off) and only while no chunk has reached the consumer, so that no
caller ever sees a prefix twice.
"""

from __future__ import annotations

import email.utils
import math
import random
from collections.abc import Callable, Mapping
from typing import Final

from ._errors import IncompleteReplyError, ModelConnectionError, ModelError, ModelHTTPError

__all__ = ["RETRYABLE_STATUS", "backoff", "is_retryable", "retry_after"]

#: Statuses worth another try: a timeout or conflict, a rate limit, a server error.
RETRYABLE_STATUS: Final = frozenset({408, 409, 429, 500, 502, 503, 504})

#: Error codes that say a retry cannot help, although the status says "later".
FINAL_CODES: Final = frozenset({"insufficient_quota", "billing_hard_limit_reached"})


def is_retryable(error: ModelError) -> bool:
    """Whether sending the same request again may succeed."""
    if isinstance(error, ModelHTTPError):
        if error.code in FINAL_CODES:
            return False
        return error.status_code in RETRYABLE_STATUS or error.status_code >= 500
    return isinstance(error, ModelConnectionError) and not isinstance(error, IncompleteReplyError)


def retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """The seconds a response asks to wait before trying again, ``None`` if it does not say.

    ``retry-after-ms`` (milliseconds; OpenAI and Azure send it) wins over ``Retry-After``,
    which holds seconds or an HTTP date (RFC 9110, section 10.2.3), compared with ``now``
    (seconds since the epoch). A date in the past means 0; a value that is neither, or
    negative, or not finite, is ignored.
    """
    millis = headers.get("retry-after-ms")
    if millis is not None:
        seconds = _number(millis)
        if seconds is not None:
            return seconds / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _number(value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        return None
    return max(when.timestamp() - now, 0.0)


def _number(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def backoff(
    attempt: int,
    *,
    base: float,
    cap: float,
    server_says: float | None,
    jitter: Callable[[float, float], float] = random.uniform,
) -> float | None:
    """How long to wait before retry number ``attempt + 1`` (``attempt`` counts from 0).

    The server's own figure (``server_says``, from `retry_after`) is taken as it is; without
    one, exponential backoff with jitter: a uniform pick between half and all of
    ``base * 2 ** attempt``, at most ``cap``. ``None`` when the server asks for more than
    ``cap``: waiting that long is not a retry but a stall, so the error is raised instead.
    """
    if server_says is not None:
        return server_says if server_says <= cap else None
    ceiling = min(cap, base * 2.0**attempt)
    return jitter(ceiling / 2, ceiling)
