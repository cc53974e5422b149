"""``python -m beluga_trio``: a short, visible demo of a model's reply streamed through
beluga_trio: live output fanned out (``bt.fan_out``) to a printer, metrics and a transcript,
an early stop, a deadline and a time-to-first-token limit, each showing that the producer's
cleanup ran.

``--cancel-after SECONDS`` cancels the live reply mid-stream. ``--base-url URL --model NAME``
(always both) streams the live reply from an OpenAI-compatible server (API key from
``OPENAI_API_KEY``; needs ``pip install beluga_trio[http]``); if that reply fails, the demo
says why on stderr and exits with status 1. Output is wrapped at the terminal's width.
"""

from __future__ import annotations

import argparse
import functools
import math
import re
import shutil
import sys
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

import trio

import beluga_trio as bt
from beluga_trio._events import Event, EventType
from beluga_trio.llm import ChatModel, ModelError, ScriptedModel, split_words, to_events
from beluga_trio.schema import Usage

REPLY = (
    "Streams in beluga_trio are cold, typed and scoped: the producer runs in a task owned by "
    "the consumer's async with, so leaving the block stops it before the next line runs."
)
PROMPT = "In two sentences: why should leaving a stream stop its producer?"

R_co = TypeVar("R_co", covariant=True)


class Terminal:
    """Writes text as it streams in, wrapped on word boundaries at the terminal's width.

    A word is held back until the text after it shows that it has ended (a space, a newline,
    the end of a line written with `say`), so a word that arrives in pieces is never split
    across two lines. A continued line keeps the indentation of the line it continues.
    """

    _PIECES = re.compile(r"\n|[ ]+|[^ \n]+")

    def __init__(self, width: int | None = None) -> None:
        self.reset(width)

    def reset(self, width: int | None = None) -> None:
        """Start afresh at the start of a line; ``width`` None: the terminal's width now."""
        self.width = width if width is not None else shutil.get_terminal_size().columns
        self.column = 0  # characters on the current line
        self.indent = ""  # the leading spaces of the current line
        self.spaces = ""  # spaces seen after the last word, not written yet
        self.word = ""  # the word being received, not written yet

    def write(self, text: str) -> None:
        for piece in self._PIECES.findall(text):
            if piece == "\n":
                self._end_word()
                sys.stdout.write("\n")
                self.column, self.indent, self.spaces = 0, "", ""
            elif piece.startswith(" "):
                self._end_word()
                if self.column == 0:
                    self.indent += piece  # written with the line's first word
                else:
                    self.spaces += piece
            else:
                self.word += piece
        sys.stdout.flush()

    def _end_word(self) -> None:
        if not self.word:
            return
        word, self.word = self.word, ""
        if self.column and self.column + len(self.spaces) + len(word) > self.width:
            sys.stdout.write("\n")
            self.column = 0
        text = self.indent + word if self.column == 0 else self.spaces + word
        sys.stdout.write(text)
        self.column += len(text)
        self.spaces = ""


TERMINAL = Terminal(80)  # main() sets the width of each run


def say(text: str = "", end: str = "\n") -> None:
    """Write ``text`` and ``end`` to the terminal, wrapped on word boundaries."""
    TERMINAL.write(text + end)


# --------------------------------------------------------------------- the three consumers
#
# Each consumer sees every event of the reply: `bt.fan_out` runs the three concurrently on
# views of one event stream, which is read once.


class Sink(Protocol[R_co]):
    def on_event(self, event: Event[Any]) -> None: ...

    def result(self) -> R_co: ...


async def consume(sink: Sink[R_co], view: bt.Stream[Event[Any]]) -> R_co:
    """A sink as a fan-out consumer: it takes every event of its view, then its result."""
    await view.for_each(sink.on_event)
    return sink.result()


class Printer:
    """Prints the reply as it arrives."""

    def __init__(self) -> None:
        self.characters = 0

    def on_event(self, event: Event[Any]) -> None:
        if event.type is EventType.DATA:
            say(event.payload, end="")
            self.characters += len(event.payload)
        elif event.type is EventType.ERROR:
            say(f"\n    [error: {type(event.error).__name__}: {event.error}]", end="")

    def result(self) -> int:
        return self.characters


class Metrics:
    """Time to first token and tokens per second, from the DONE event's timing."""

    def __init__(self) -> None:
        self.start = trio.current_time()
        self.first: float | None = None
        self.tokens = 0
        self.meta: dict[str, Any] | None = None

    def on_event(self, event: Event[Any]) -> None:
        if event.type is EventType.DATA:
            self.tokens += 1
            if self.first is None:
                self.first = trio.current_time() - self.start
        elif event.type in (EventType.DONE, EventType.ERROR):
            self.meta = dict(event.meta)

    def result(self) -> str:
        if self.meta is None:  # cancelled: what was measured so far
            first = "-" if self.first is None else f"{self.first:.2f} s"
            return f"metrics: first token after {first}, {self.tokens} tokens before the stop"
        first_chunk = self.meta["time_to_first_chunk"]
        rate = self.meta["chunks_per_second"]
        line = (
            f"metrics: first token after {'-' if first_chunk is None else f'{first_chunk:.2f} s'}, "
            f"{'-' if rate is None else f'{rate:.1f}'} tokens/s, {self.meta['chunks']} chunks"
        )
        usage: Usage | None = self.meta.get("usage")
        if usage is not None:
            line += f", usage {usage.prompt_tokens} prompt + {usage.completion_tokens} completion"
        return line


class Transcript:
    """Keeps every event, for the record."""

    def __init__(self) -> None:
        self.events: list[Event[Any]] = []

    def on_event(self, event: Event[Any]) -> None:
        self.events.append(event)

    def result(self) -> str:
        kinds: dict[str, int] = {}
        for event in self.events:
            kinds[event.type.value] = kinds.get(event.type.value, 0) + 1
        counts = ", ".join(f"{n} {kind}" for kind, n in kinds.items())
        return f"transcript: {len(self.events)} events kept ({counts or 'none'})"


async def feed(events: bt.Stream[Event[Any]], sinks: Sequence[Sink[object]]) -> list[object]:
    """Every event to every sink, in order; the sinks' results."""
    return await bt.fan_out(events, *(functools.partial(consume, sink) for sink in sinks))


# -------------------------------------------------------------------------------- the demo


def scripted(delay: float, **kwargs: Any) -> ScriptedModel:
    """The stand-in model: the reply, one word piece at a time, with latency."""
    return ScriptedModel(split_words(REPLY), first_delay=delay * 5, delay=delay, **kwargs)


async def live(
    model: ChatModel, cancel_after: float | None, scripted_model: ScriptedModel | None
) -> tuple[int, BaseException | None]:
    """Section 1: the reply fanned out to three consumers; the characters printed, and the
    error that ended the reply (None if it ended normally or was cancelled)."""
    say(f"[1] live: {model!r} -> to_events -> fan_out(printer, metrics, transcript)")
    printer, metrics, transcript = Printer(), Metrics(), Transcript()
    events = to_events(model.stream(PROMPT), errors="event")
    say("    ", end="")
    finished = False
    with trio.move_on_after(math.inf if cancel_after is None else cancel_after) as scope:
        await feed(events, [printer, metrics, transcript])
        finished = True
    say()
    if scope.cancelled_caught:
        cleanup = ""
        when = "mid-stream"
        if scripted_model is not None and not scripted_model.calls:
            when = "before the model was called"  # a deadline shorter than the start-up
        elif scripted_model is not None:
            ran = scripted_model.calls[0].closed_at is not None
            cleanup = f", producer cleanup ran: {ran}"
        state = f"fan-out finished: {finished}{cleanup}"
        say(f"    [cancelled after {cancel_after} s {when}: {state}]")
    say(f"    {metrics.result()}")
    say(f"    {transcript.result()}\n")
    errors = [e.error for e in transcript.events if e.type is EventType.ERROR]
    return printer.result(), errors[0] if errors else None


async def main(
    delay: float = 0.03,
    cancel_after: float | None = None,
    model: ChatModel | None = None,
    *,
    width: int | None = None,
) -> int:
    """The demo; its exit status. ``model`` streams the live reply (section 1); by default a
    `ScriptedModel`. If that reply fails, the demo says so on stderr and stops: status 1.

    ``cancel_after`` cancels the live reply after that many seconds. Output is wrapped at
    ``width`` columns (default: the terminal's width).
    """
    TERMINAL.reset(width)
    tasks_before = trio.lowlevel.current_statistics().tasks_living
    say("beluga_trio demo: a model's reply, streamed through beluga_trio.\n")
    scripted_models: list[ScriptedModel] = []
    if model is None:
        model1 = scripted(delay)
        scripted_models.append(model1)
        printed, _ = await live(model1, cancel_after, model1)
    else:
        printed, failed = await live(model, cancel_after, None)
        if failed is not None:
            sys.stderr.write(
                f"python -m beluga_trio: the live reply from {model!r} failed with "
                f"{type(failed).__name__}: {failed}\n"
            )
            return 1

    say("[2] early stop: the consumer breaks out after 6 tokens")
    model2 = scripted(delay)
    scripted_models.append(model2)
    say("    ", end="")
    async with model2.stream(PROMPT).open() as chunks:
        async for chunk in chunks:
            say(chunk.delta, end="")
            if model2.calls[0].chunks == 6:
                break
    call = model2.calls[0]
    say(
        f"\n    the block has exited: producer cleanup ran {int(call.closed_at is not None)} "
        f"time(s), {call.chunks} tokens were started for 6 asked (lock-step)\n"
    )

    say("[3] a deadline cancels the stream mid-reply: never a clean end")
    model3 = scripted(delay)
    scripted_models.append(model3)
    finished = False
    say("    ", end="")
    with trio.move_on_after(delay * 12) as scope:
        async with model3.stream(PROMPT).map(lambda c: c.delta.upper()).open() as words:
            async for word in words:
                say(word, end="")
            finished = True  # not reached: a cancelled stream does not look finished
    say(
        f"\n    cancelled: {scope.cancelled_caught}, loop finished normally: {finished}, "
        f"producer cleanup ran: {int(model3.calls[0].closed_at is not None)} time(s)\n"
    )

    say("[4] time to first token: .timeout(first=...) on a model that thinks too long")
    model4 = ScriptedModel(["late"], first_delay=delay * 40)
    scripted_models.append(model4)
    try:
        await model4.stream(PROMPT).timeout(first=delay * 4).collect()
    except trio.TooSlowError as exc:
        call = model4.calls[0]
        assert call.closed_at is not None
        say(
            f"    TooSlowError: {exc}; the model's stream was closed after "
            f"{call.closed_at - call.started:.2f} s\n"
        )

    opened = sum(len(m.calls) for m in scripted_models)
    closed = sum(c.closed_at is not None for m in scripted_models for c in m.calls)
    leftover = trio.lowlevel.current_statistics().tasks_living - tasks_before
    say(
        f"summary: {printed} characters streamed live, {opened} scripted streams opened, "
        f"{closed} cleaned up, {leftover} tasks left behind"
    )
    return 0


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"needs a number of seconds > 0, got {text}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m beluga_trio", description="A demo of beluga_trio's LLM streaming."
    )
    parser.add_argument(
        "--cancel-after", type=_seconds, metavar="SECONDS", help="cancel the live reply mid-stream"
    )
    parser.add_argument(
        "--base-url",
        metavar="URL",
        help="stream the live reply from this OpenAI-compatible API root, e.g. "
        "http://localhost:8000/v1 (API key from OPENAI_API_KEY)",
    )
    parser.add_argument(
        "--model", metavar="NAME", help="the model to ask (needs --base-url, and the reverse)"
    )
    parser.add_argument(
        "--delay", type=_seconds, default=0.03, metavar="SECONDS", help="the scripted model's pace"
    )
    args = parser.parse_args(argv)
    if args.base_url is not None and args.model is None:
        parser.error("--base-url needs --model")
    if args.model is not None and args.base_url is None:
        parser.error(
            "--model needs --base-url, the OpenAI-compatible API root to ask "
            "(https://api.openai.com/v1 for OpenAI itself)"
        )
    return args


def cli(argv: Sequence[str] | None = None) -> int:
    """Run the demo (``serve``: the web demo, see `beluga_trio.web`); the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["serve"]:
        try:
            from beluga_trio.web._serve import cli as serve  # noqa: PLC0415 - the web extra
        except ImportError as exc:
            sys.stderr.write(f"{exc}\n")
            return 2
        return serve(argv[1:])
    args = parse_args(argv)
    if args.model is not None:
        try:
            from beluga_trio.llm.openai import OpenAIChatModel  # noqa: PLC0415
        except ImportError as exc:
            sys.stderr.write(f"{exc}\n")
            return 2
        http_model = OpenAIChatModel(args.model, base_url=args.base_url)

        async def run() -> int:
            async with http_model:  # it owns an HTTP client: closed with the demo
                return await main(args.delay, args.cancel_after, http_model)

    else:

        async def run() -> int:
            return await main(args.delay, args.cancel_after, None)

    try:
        return trio.run(run)
    except ModelError as exc:  # pragma: no cover - errors are shown as events by main()
        sys.stderr.write(f"model error: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(cli())
