"""How-to: stream a model's reply live, under limits on the first token, the pauses between
tokens and the whole reply, and keep what arrived when a limit is hit."""

import trio

from beluga_trio.llm import Pause, ScriptedModel, split_words

# Offline stand-ins for a real model (any `ChatModel` works the same way).
healthy = ScriptedModel(split_words("Cold streams start nothing."), first_delay=0.8, delay=0.1)
stalling = ScriptedModel(
    [*split_words("Let me think"), Pause(30), *split_words(" about that.")], delay=0.1
)


async def answer(model: ScriptedModel, question: str) -> str:
    """Print the reply as it arrives; return it, marked as cut short if a limit was hit."""
    reply = ""
    limited = model.stream(question).timeout(first=2, between=1, total=20)
    try:
        async with limited.open() as chunks:
            async for chunk in chunks:
                reply += chunk.delta
                print(chunk.delta, end="")
    except trio.TooSlowError as exc:  # the model's request is already closed here
        print(f" [cut short: {exc}]")
        return reply + " [...]"
    print()
    return reply


async def main() -> None:
    print(repr(await answer(healthy, "What is a cold stream?")))
    print(repr(await answer(stalling, "And a hot one?")))
    call = stalling.calls[0]
    assert call.closed_at is not None
    print(f"the stalled request was closed {call.closed_at - call.started:.1f} s after it began")


if __name__ == "__main__":
    trio.run(main)
