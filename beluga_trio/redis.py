"""Carry a stream across processes and machines through Redis Streams (the ``redis`` extra).

`publish` appends every item of a stream to a Redis stream with ``XADD``, then one terminal
entry that says how it ended; `subscribe` reads such a Redis stream back, from the start or
right after an entry id (a client resuming with SSE's ``Last-Event-ID``), with blocking
``XREAD``. Any number of subscribers, in any process, read the same entries; the publisher
never waits for them. The client is `coredis <https://coredis.readthedocs.io>`_'s, which runs
under trio through anyio::

    async with coredis.Redis(host="127.0.0.1", port=6379) as client:
        await publish(model_reply(), client, "reply:42", maxlen=10_000, expire=3600)

    async with subscribe(client, "reply:42", after=last_event_id).open() as entries:
        async for entry_id, token in entries:
            ...

The first entry, ``start``, creates the key as soon as publishing begins (so that a reader
can tell a stream that has not produced yet from one that never existed or has expired); then
one entry per item, field ``item`` (the encoded item); then the terminal entry: ``end=ok``, or
``end=error`` with ``type`` and ``message``. Readers skip the ``start`` entry.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Final, NoReturn, Protocol, TypeVar, final

import attrs
import trio

from ._stage import NOT_READY, AsyncPull, Node, NotReady, Pull, Scope
from ._stream import Stream

try:
    import coredis
    from coredis.exceptions import ConnectionError as RedisConnectionError
    from coredis.exceptions import RedisError
    from coredis.tokens import PureToken
except ImportError as exc:  # pragma: no cover - the extra is installed in the test env
    raise ImportError("beluga_trio.redis needs coredis: pip install 'beluga_trio[redis]'") from exc

__all__ = [
    "JSON",
    "Codec",
    "ConnectionLostError",
    "EntryNotFoundError",
    "JsonCodec",
    "RemoteStreamError",
    "publish",
    "subscribe",
]

T = TypeVar("T")

_ID: Final = re.compile(r"\A\d+(-\d+)?\Z")
#: How long a cancelled or interrupted publisher still tries to write its terminal entry.
_FAREWELL_SECONDS: Final = 2.0


class Codec(Protocol):
    """How items become entry values and back: ``encode(item)`` returns `bytes` or `str`,
    ``decode(value)`` takes the `bytes` (or `str`, for a client that decodes responses)."""

    def encode(self, item: Any, /) -> bytes | str: ...

    def decode(self, value: bytes | str, /) -> Any: ...


@final
class JsonCodec:
    """Items as compact JSON (the default): what `json.dumps` accepts."""

    __slots__ = ()

    def encode(self, item: Any, /) -> str:
        return json.dumps(item, separators=(",", ":"), ensure_ascii=False)

    def decode(self, value: bytes | str, /) -> Any:
        return json.loads(value)


#: The default codec.
JSON: Final = JsonCodec()


class RemoteStreamError(Exception):
    """The published stream ended with an error: its terminal entry says which.

    ``type`` and ``message`` are the original error's type name and message (the error
    itself lives in the publisher's process); ``key`` and ``entry_id`` say where it was read.
    """

    def __init__(self, key: str, entry_id: str, type: str, message: str) -> None:
        super().__init__(f"the publisher of {key!r} failed: {type}: {message}")
        self.key = key
        self.entry_id = entry_id
        self.type = type
        self.message = message


class ConnectionLostError(Exception):
    """The connection to Redis failed while a subscriber was reading.

    ``last_id`` is the id of the last entry the subscriber received (``None`` if none):
    subscribe again with ``after=last_id`` to resume without a gap or a duplicate.
    """

    def __init__(self, key: str, last_id: str | None) -> None:
        resume = "" if last_id is None else f"; resume with after={last_id!r}"
        where = "before its first entry" if last_id is None else f"after entry {last_id}"
        super().__init__(f"lost the connection to Redis while reading {key!r} {where}{resume}")
        self.key = key
        self.last_id = last_id


class EntryNotFoundError(LookupError):
    """``subscribe(after=entry_id)``: that entry is not in the Redis stream, so resuming
    right after it would skip or repeat entries.

    ``reason`` says why: ``"no-stream"`` (the key does not exist: it never did, or it has
    expired), ``"trimmed"`` (the entry is older than the oldest one kept, ``oldest``: the
    stream was trimmed by ``maxlen``) or ``"unknown"`` (no such entry in this stream).
    """

    def __init__(
        self, message: str, *, key: str, entry_id: str, reason: str, oldest: str | None
    ) -> None:
        super().__init__(message)
        self.key = key
        self.entry_id = entry_id
        self.reason = reason
        self.oldest = oldest


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _check_key(key: object, role: str) -> None:
    if not isinstance(key, str | bytes) or not key:
        raise TypeError(f"{role}() needs a non-empty str key, got {key!r}")


# ------------------------------------------------------------------------------- publish


async def publish(
    stream: Stream[Any],
    client: coredis.Redis[Any],
    key: str,
    *,
    codec: Codec = JSON,
    maxlen: int | None = None,
    expire: float | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> str:
    """Append every item of ``stream`` to the Redis stream ``key``, then a terminal entry.

    The first entry (``start``) creates the key before the stream is opened: run publish
    with ``await nursery.start(publish, stream, client, key)`` to go on once it exists (the
    ``start`` entry's id is returned), so that a reader sent anywhere from then on finds it.
    Each item is encoded with ``codec`` (JSON by default) and appended with ``XADD`` as it
    arrives; the publisher never waits for subscribers. When the stream ends, one entry
    ``end=ok`` follows; when it fails, ``end=error`` with the error's ``type`` and ``message``,
    and the error is then raised here, as itself. If the publisher is cancelled or
    interrupted, it still tries (for at most two seconds, shielded) to append an error entry
    (``type=Cancelled``, or ``KeyboardInterrupt``...) so that subscribers end instead of
    waiting; then the cancellation goes on. Returns the terminal entry's id.

    ``maxlen`` keeps about that many newest entries (``XADD MAXLEN ~``: Redis trims whole
    blocks, so a few more may stay); ``expire`` (seconds) sets the key's time to live once
    the first entry is written, refreshes it while publishing, and sets it again after the
    terminal entry, so that an abandoned key disappears.

    Errors from Redis itself (a lost connection) are raised as coredis raises them; the
    stream is closed (its producer's ``finally`` has run) before this returns or raises.
    """
    if not isinstance(stream, Stream):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"publish() needs a Stream, got {stream!r}")
    _check_key(key, "publish")
    if maxlen is not None and (not isinstance(maxlen, int) or isinstance(maxlen, bool)):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"publish() needs maxlen=None or an int, got {maxlen!r}")
    if maxlen is not None and maxlen < 1:
        raise ValueError(f"publish() needs maxlen >= 1, got {maxlen}")
    if expire is not None and not expire > 0:
        raise ValueError(f"publish() needs expire=None or seconds > 0, got {expire!r}")
    writer = _Writer(client, key, maxlen, expire)
    encode = codec.encode
    task_status.started(await writer.add({"start": ""}))
    try:
        async with stream.open() as items:
            async for item in items:
                await writer.add({"item": encode(item)})
    except BaseException as exc:
        if writer.broken or isinstance(exc, RedisError):
            raise  # Redis itself failed: no terminal entry can be written
        fields = {"end": "error", "type": _type_name(exc), "message": _message(exc)}
        # ASYNC102: a bounded, shielded farewell, so that subscribers end instead of waiting.
        with trio.CancelScope(shield=True) as farewell:
            farewell.deadline = trio.current_time() + _FAREWELL_SECONDS
            try:
                await writer.add(fields, final=True)
            except Exception as write_error:  # noqa: BLE001 - the stream's error comes first
                exc.add_note(f"beluga_trio.redis: could not write the error entry: {write_error!r}")
        raise
    return await writer.add({"end": "ok"}, final=True)


def _type_name(exc: BaseException) -> str:
    return "Cancelled" if isinstance(exc, trio.Cancelled) else type(exc).__qualname__


def _message(exc: BaseException) -> str:
    if isinstance(exc, trio.Cancelled):
        return "the publisher was cancelled before the stream ended"
    return str(exc)


@final
class _Writer:
    """``XADD`` with trimming, and the key's expiry kept fresh."""

    __slots__ = ("_client", "_expire", "_key", "_maxlen", "_refresh_at", "broken")

    def __init__(
        self, client: coredis.Redis[Any], key: str, maxlen: int | None, expire: float | None
    ) -> None:
        self._client = client
        self._key = key
        self._maxlen = maxlen
        self._expire = expire
        self._refresh_at = -float("inf")
        self.broken = False

    async def add(self, fields: Mapping[str, bytes | str], *, final: bool = False) -> str:
        client = self._client
        try:
            if self._maxlen is None:
                entry_id = await client.xadd(self._key, fields)
            else:
                entry_id = await client.xadd(
                    self._key,
                    fields,
                    trim_strategy=PureToken.MAXLEN,
                    trim_operator=PureToken.APPROXIMATELY,
                    threshold=self._maxlen,
                )
            if self._expire is not None:
                now = trio.current_time()
                if final or now >= self._refresh_at:
                    await client.pexpire(self._key, max(1, round(self._expire * 1000)))
                    self._refresh_at = now + self._expire / 2
        except RedisError:
            self.broken = True
            raise
        assert entry_id is not None  # XADD without NOMKSTREAM always appends
        return _text(entry_id)


# ----------------------------------------------------------------------------- subscribe


def subscribe(
    client: coredis.Redis[Any],
    key: str,
    *,
    after: str | bytes | None = None,
    codec: Codec = JSON,
    block: float = 10.0,
    count: int = 256,
) -> Stream[tuple[str, Any]]:
    """A cold stream of ``(entry_id, item)`` pairs read from the Redis stream ``key``.

    ``after=None`` reads from the first entry; ``after=entry_id`` right after that entry
    (a client resuming), which must still be in the stream: when it is not (the key has
    expired, the entry was trimmed, or the stream never had it), opening raises
    `EntryNotFoundError` instead of skipping or repeating entries; ``after="$"`` only
    entries appended after the stream is opened. Entries are read with ``XREAD BLOCK`` (at
    most ``block`` seconds per call, then again) and up to ``count`` at a time; with
    ``after=None`` or ``"$"`` the key need not exist yet. The stream ends at the terminal
    ``end=ok`` entry, and raises `RemoteStreamError` at an ``end=error`` entry, after every
    item before it.

    Leaving the stream (or cancelling it) stops the ``XREAD`` in flight at once: coredis
    drops that connection instead of waiting for the block to time out. A cancelled
    ``anext`` loses nothing (reads do not consume entries). A failed connection raises
    `ConnectionLostError`, which names the last entry received, to resume from.
    """
    _check_key(key, "subscribe")
    if after is not None:
        if not isinstance(after, str | bytes):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"subscribe() needs after=None or an entry id str, got {after!r}")
        after = _text(after)
        if after != "$" and not is_entry_id(after):
            raise ValueError(
                f"subscribe() needs after=None, '$' or an entry id such as '1700000000000-0', "
                f"got {after!r}"
            )
    if not block > 0:
        raise ValueError(f"subscribe() needs block > 0 seconds, got {block!r}")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(f"subscribe() needs an int count >= 1, got {count!r}")
    node = _SubscribeNode[Any](client, _text(key), after, codec=codec, block=block, count=count)
    return Stream(node)


def is_entry_id(text: str) -> bool:
    """Whether ``text`` has the form of a Redis stream entry id (``ms`` or ``ms-seq``)."""
    return _ID.match(text) is not None


async def check_entry(client: coredis.Redis[Any], key: str, entry_id: str) -> None:
    """Raise `EntryNotFoundError` unless ``entry_id`` is an entry of the stream ``key``
    (`ConnectionLostError` if Redis cannot be reached)."""
    try:
        if await client.xrange(key, entry_id, entry_id, count=1):
            return
        first = await client.xrange(key, count=1)
        last = await client.xrevrange(key, count=1)
    except (RedisConnectionError, OSError) as exc:
        raise ConnectionLostError(key, None) from exc
    if not first or not last:
        raise EntryNotFoundError(
            f"cannot resume {key!r} after entry {entry_id}: there is no such stream (it never "
            "existed, or it has expired)",
            key=key,
            entry_id=entry_id,
            reason="no-stream",
            oldest=None,
        )
    oldest, newest = _text(first[0].identifier), _text(last[0].identifier)
    fields: Mapping[Any, Any] = first[0].field_values
    untrimmed = b"start" in fields or "start" in fields  # publish's first entry is still there
    if _order(entry_id) < _order(oldest) and not untrimmed:
        raise EntryNotFoundError(
            f"cannot resume {key!r} after entry {entry_id}: the entries after it have been "
            f"trimmed (the oldest kept is {oldest}), so some are gone",
            key=key,
            entry_id=entry_id,
            reason="trimmed",
            oldest=oldest,
        )
    raise EntryNotFoundError(
        f"cannot resume {key!r} after entry {entry_id}: the stream has no such entry (its "
        f"entries run from {oldest} to {newest})",
        key=key,
        entry_id=entry_id,
        reason="unknown",
        oldest=oldest,
    )


def _order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _milliseconds(seconds: float) -> int:
    """XREAD's BLOCK: whole milliseconds, at least 1 (0 would block forever)."""
    return max(1, round(seconds * 1000))


@final
@attrs.frozen(eq=False)
class _SubscribeNode(Node[tuple[str, T]]):
    """The recipe of a subscription; each opening makes a `_Reader` of it."""

    client: coredis.Redis[Any]
    key: str
    after: str | None
    codec: Codec = attrs.field(kw_only=True)
    block_ms: int = attrs.field(kw_only=True, alias="block", converter=_milliseconds)
    count: int = attrs.field(kw_only=True)

    def describe(self) -> str:
        return f"beluga_trio.redis.subscribe({self.key!r}, after={self.after!r})"

    async def open(self, scope: Scope) -> Pull[tuple[str, T]]:
        after = self.after
        if after == "$":
            # Resolved once, now: a later XREAD with "$" would skip what arrived between.
            try:
                newest = await self.client.xrevrange(self.key, count=1)
            except (RedisConnectionError, OSError) as exc:
                raise ConnectionLostError(self.key, None) from exc
            after = _text(newest[0].identifier) if newest else "0-0"
            return _Reader[T](self, after, received=None)
        if after is not None:
            await check_entry(self.client, self.key, after)
        return _Reader[T](self, after or "0-0", received=after)


@final
class _Reader(AsyncPull[tuple[str, T]]):
    """The consumer's reads: entries wait in a deque between ``XREAD`` calls.

    Cancel-safe: ``XREAD`` consumes nothing, and its reply is stored without an ``await`` in
    between, so a cancelled read is simply issued again from the same id.
    """

    __slots__ = ("_ended", "_last", "_node", "_ready", "_received")

    def __init__(self, node: _SubscribeNode[T], after: str, *, received: str | None) -> None:
        self._node = node
        self._last = after  # the XREAD position
        self._received = received  # the last entry delivered, for errors
        self._ready: deque[Any] = deque()
        self._ended = False

    def _take(self) -> tuple[str, T] | NotReady:
        """The next entry, decoded; `NOT_READY` if none is waiting. Raises at the end."""
        ready = self._ready
        while ready:
            entry = ready[0]
            fields: Mapping[Any, Any] = entry.field_values
            entry_id = _text(entry.identifier)
            value = fields.get(b"item", fields.get("item"))
            if value is not None:
                item = self._node.codec.decode(value)  # a decoding error leaves the entry
                ready.popleft()
                self._received = entry_id
                return (entry_id, item)
            if b"start" in fields or "start" in fields:
                ready.popleft()
                continue
            self._end(entry_id, fields)
        return NOT_READY

    def _end(self, entry_id: str, fields: Mapping[Any, Any]) -> NoReturn:
        self._ready.clear()
        self._ended = True
        key = self._node.key
        end = fields.get(b"end", fields.get("end"))
        if end is not None and _text(end) == "ok":
            raise StopAsyncIteration
        if end is not None and _text(end) == "error":
            kind = fields.get(b"type", fields.get("type", b"Exception"))
            message = fields.get(b"message", fields.get("message", b""))
            raise RemoteStreamError(key, entry_id, _text(kind), _text(message))
        names = sorted(_text(name) for name in fields)
        raise ValueError(
            f"entry {entry_id} of {key!r} is not a beluga_trio.redis entry (fields "
            f"{names}; expected 'item', 'start' or 'end'): was it written by publish()?"
        )

    def poll(self) -> tuple[str, T] | NotReady:
        ready = self._ready
        if ready:
            fields = ready[0].field_values
            if b"item" in fields or "item" in fields:
                return self._take()
        return NOT_READY

    async def pull(self) -> tuple[str, T]:
        while True:
            if self._ended:
                raise StopAsyncIteration
            item = self._take()
            if item is not NOT_READY:
                return item
            await self._read()

    async def pull_some(self) -> Sequence[tuple[str, T]]:
        item = self.poll()
        if item is NOT_READY:
            try:
                return (await self.pull(),)
            except StopAsyncIteration:
                return ()
        items = [item]
        try:
            while (item := self.poll()) is not NOT_READY:
                items.append(item)
        except Exception:  # noqa: BLE001 - a decoding error: raised by the next call
            pass  # its entry stays in place, after the items in hand
        return items

    async def _read(self) -> None:
        node = self._node
        try:
            reply = await node.client.xread(
                {node.key: self._last}, count=node.count, block=node.block_ms
            )
        except (RedisConnectionError, OSError) as exc:
            raise ConnectionLostError(node.key, self._received) from exc
        if reply:
            for entries in reply.values():
                if entries:
                    self._ready.extend(entries)
                    self._last = _text(entries[-1].identifier)
