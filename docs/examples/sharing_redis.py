"""Sharing across processes: a reply published to Redis once, read through two connections
(as two server processes would), with a reconnect that resumes from the last entry id."""

import os

import coredis
import trio

from beluga_trio.llm import ScriptedModel, split_words
from beluga_trio.redis import publish, subscribe

PORT = int(os.environ.get("BELUGA_TRIO_REDIS_PORT", "6379"))
model = ScriptedModel(split_words("Resumed from Redis, without a gap."), delay=0.02)


async def main() -> None:
    key = f"reply:{os.getpid()}"
    async with (
        coredis.Redis(host="127.0.0.1", port=PORT) as process_a,
        coredis.Redis(host="127.0.0.1", port=PORT) as process_b,
    ):
        async with trio.open_nursery() as nursery:
            # Process A runs the model once and publishes the text of every chunk.
            deltas = model.stream("Say it").map(lambda chunk: chunk.delta).filter(bool)
            nursery.start_soon(lambda: publish(deltas, process_a, key, maxlen=1000, expire=60))

            # A client streams the reply through process B; its connection drops mid-way.
            received: list[str] = []
            last_event_id = None
            async with subscribe(process_b, key).open() as entries:
                async for entry_id, text in entries:
                    received.append(text)
                    last_event_id = entry_id
                    if len(received) == 3:
                        break
            print("before the drop:", received)

            # It reconnects to process A with `Last-Event-ID` and gets the rest.
            resumed = await subscribe(process_a, key, after=last_event_id).collect()
            rest = [text for _, text in resumed]
            print("after reconnecting:", rest)
            print("the whole reply:", "".join(received + rest))
        await process_a.delete([key])
    print(f"the model was called {len(model.calls)} time")
