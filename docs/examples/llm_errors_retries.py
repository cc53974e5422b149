"""Errors a program can act on, opt-in retries, refusals and incomplete replies.

An httpx2 ``MockTransport`` plays the server, so that the example runs anywhere; against a
real server, leave out ``client=`` and close the model with ``async with``.
"""

import json

import httpx2
import trio

from beluga_trio.llm import IncompleteReplyError, ModelHTTPError
from beluga_trio.llm.openai import OpenAIChatModel

requests_seen: list[str] = []


def event(delta: dict[str, str], finish: str | None = None) -> bytes:
    chunk = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(chunk)}\n\n".encode()


def fake_server(request: httpx2.Request) -> httpx2.Response:
    model = json.loads(request.content)["model"]
    requests_seen.append(model)
    if model == "busy" and requests_seen.count("busy") < 3:
        error = {"message": "overloaded", "type": "server_error", "code": "overloaded"}
        return httpx2.Response(503, headers={"retry-after-ms": "10"}, json={"error": error})
    if model == "broke":
        error = {"message": "You exceeded your quota", "code": "insufficient_quota"}
        return httpx2.Response(429, json={"error": error})
    if model == "careful":
        body = event({"refusal": "I can't help with that."}) + event({}, "stop")
    elif model == "cut":
        body = event({"content": "Half an ans"})  # no finish reason
    else:
        body = event({"content": "Hello"}) + event({}, "stop")
    sse = {"content-type": "text/event-stream"}
    return httpx2.Response(200, headers=sse, content=body + b"data: [DONE]\n\n")


async def main() -> None:
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(fake_server)) as client:

        def model(name: str, retries: int = 0) -> OpenAIChatModel:
            url = "https://api.example.com/v1"
            return OpenAIChatModel(
                name, base_url=url, api_key="sk-x", client=client, retries=retries
            )

        # A 503 twice, then an answer: retried (opt-in), waiting what retry-after-ms says.
        reply = await model("busy", retries=3).invoke("Hi")
        print(repr(reply.content), "after", requests_seen.count("busy"), "requests")

        # No quota: the provider's code tells "do not retry" from "retry later".
        try:
            await model("broke", retries=3).invoke("Hi")
        except ModelHTTPError as exc:
            print(exc.status_code, exc.code, "| requests:", requests_seen.count("broke"))

        # A refusal is kept, not turned into an empty answer.
        reply = await model("careful").invoke("Something bad")
        print(f"refusal: {reply.refusal!r}, content: {reply.content!r}")

        # A reply that ends without a finish reason cannot pass for a whole one.
        chunks, error = await model("cut").stream("Hi").collect_result()
        assert isinstance(error, IncompleteReplyError)
        print(type(error).__name__, "| partial:", repr("".join(c.delta for c in chunks)))


if __name__ == "__main__":
    trio.run(main)
