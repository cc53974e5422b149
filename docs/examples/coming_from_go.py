"""The Go pattern card's `Model.Stream`, written with beluga_trio: no context to check, no
`yield` result to respect, `defer` becomes `finally`, and an error is simply raised."""

from collections.abc import AsyncIterator

import trio

import beluga_trio as bt
from beluga_trio.schema import StreamChunk


class FakeClient:
    """Stands in for an SDK's streaming response (`m.client.Stream(ctx, msgs)` in Go)."""

    def __init__(self, words: list[str], fail_after: int | None = None) -> None:
        self.words, self.fail_after, self.sent = words, fail_after, 0

    async def recv(self) -> str | None:  # `stream.Recv()`: None plays io.EOF
        await trio.sleep(0.1)
        if self.sent == self.fail_after:
            raise ConnectionError("connection reset")
        if self.sent == len(self.words):
            return None
        self.sent += 1
        return self.words[self.sent - 1]

    async def aclose(self) -> None:  # `stream.Close()`
        print(f"  response closed after {self.sent} chunk(s)")


@bt.stream
async def model_stream(client: FakeClient) -> AsyncIterator[StreamChunk]:
    try:  # defer stream.Close()
        while (word := await client.recv()) is not None:  # an error is raised, not yielded
            yield StreamChunk(delta=word)  # returns only when the consumer asks for more
    finally:
        await client.aclose()  # runs when the consumer stops, by any route


async def main() -> None:
    # Collect (Go's Collect): every chunk, or the error.
    chunks = await model_stream(FakeClient(["Hello", ", ", "Go"])).collect()
    print("collect:", "".join(c.delta for c in chunks))

    # The consumer stops early (Go: yield returns false): the producer stops before the next line.
    async with model_stream(FakeClient(["a", "b", "c", "d"])).open() as items:
        async for chunk in items:
            if chunk.delta == "b":
                break
    print("break: the producer already stopped")

    # Cancellation (Go: ctx.Done()) is never a clean end: the code after the loop is skipped.
    with trio.move_on_after(0.25) as scope:
        await model_stream(FakeClient(["x"] * 10)).collect()
        print("not reached")
    print("deadline: cancelled =", scope.cancelled_caught)

    # CollectStream: the chunks before an error, and the error itself.
    partial, error = await model_stream(FakeClient(["par", "tial"], fail_after=2)).collect_result()
    print("collect_result:", [c.delta for c in partial], repr(error))


if __name__ == "__main__":
    trio.run(main)
