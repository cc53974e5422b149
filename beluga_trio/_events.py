"""`EventType` and `Event`: what an LLM or agent stream carries besides plain items.

An `Event` is an immutable envelope: a kind (`EventType`), a payload, an optional error and a
read-only mapping of metadata (timings, usage, ids). ``beluga_trio.llm.to_events`` turns a
stream of model chunks into a stream of events that ends with a `EventType.DONE` event.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final, Generic, TypeVar

import attrs

__all__ = ["Event", "EventType"]

T_co = TypeVar("T_co", covariant=True)


class EventType(enum.StrEnum):
    """The kind of an `Event`. A `str` enum: ``EventType.DATA == "data"``."""

    DATA = "data"
    """A piece of output: for a model, a text delta."""
    TOOL_CALL = "tool_call"
    """The model asks for a tool to be called; the payload is a `~beluga_trio.schema.ToolCall`."""
    TOOL_RESULT = "tool_result"
    """The result of a tool call."""
    HANDOFF = "handoff"
    """Control passes to another agent."""
    DONE = "done"
    """The last event of a successful stream; its ``meta`` carries usage and timing."""
    ERROR = "error"
    """The stream failed; ``error`` holds the exception."""


_NO_META: Final[Mapping[str, Any]] = MappingProxyType({})


def _event_type(value: EventType | str) -> EventType:
    # Accepts the plain strings too ("done"), and rejects unknown kinds with the valid ones.
    try:
        return EventType(value)
    except ValueError:
        valid = ", ".join(repr(t.value) for t in EventType)
        raise ValueError(f"unknown event type {value!r}; expected one of {valid}") from None


def _read_only(meta: Mapping[str, Any]) -> Mapping[str, Any]:
    # A copy behind a read-only view: neither the event nor whoever built it can change it.
    if meta is _NO_META:
        return meta
    return MappingProxyType(dict(meta))


@attrs.frozen
class Event(Generic[T_co]):
    """An immutable event of a stream: ``Event(EventType.DATA, "Hel")``.

    - ``type``: an `EventType` (a plain string such as ``"data"`` is converted);
    - ``payload``: what the event carries (text, a tool call, the final message...);
    - ``error``: the exception of an `EventType.ERROR` event, else ``None``;
    - ``meta``: a read-only mapping of extra facts (copied on construction), empty by default.

    Events compare by value; ``meta`` takes part in equality but not in the hash.
    """

    type: EventType = attrs.field(converter=_event_type)
    payload: T_co
    error: BaseException | None = None
    meta: Mapping[str, Any] = attrs.field(default=_NO_META, converter=_read_only, hash=False)
