"""Any ChatModel served as an OpenAI-compatible API; a client that leaves mid-reply stops the
model at once (``pip install beluga_trio[web,http]``)."""

import functools

import trio
import trio.testing

from beluga_trio.llm import ScriptedModel, split_words
from beluga_trio.llm.openai import OpenAIChatModel
from beluga_trio.web import openai_app, serve

model = ScriptedModel(split_words("one two three four five six seven eight"), delay=0.05)
app = openai_app(model, model_name="counter")


async def main() -> None:
    async with trio.open_nursery() as nursery:
        url = await nursery.start(functools.partial(serve, app, port=0))
        # Any OpenAI client works: the openai SDK, curl, or ours.
        client = OpenAIChatModel("counter", base_url=url + "/v1", api_key="")
        print(repr((await client.invoke("Count")).content))

        async with client.stream("Count").open() as chunks:
            async for chunk in chunks:
                print(chunk.delta, end="")
                if chunk.delta == " three":
                    break  # the client leaves: its connection is closed
        print()
        await trio.testing.wait_all_tasks_blocked()  # let the server see it
        call = model.calls[-1]
        print(f"chunks begun: {call.chunks} of 9, model cleanup ran: {call.closed_at is not None}")
        nursery.cancel_scope.cancel()
