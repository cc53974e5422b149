"""An OpenAI-compatible server, streamed (``pip install beluga_trio[http]``).

Point ``base_url`` at OpenAI, vLLM, llama.cpp, Ollama...; here an httpx2 ``MockTransport``
plays the server, so that the example runs anywhere.
"""

import json

import httpx2
import trio

from beluga_trio.llm import ModelHTTPError
from beluga_trio.llm.openai import OpenAIChatModel


def event(delta: dict[str, str], finish: str | None = None) -> bytes:
    chunk = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(chunk)}\n\n".encode()


def fake_server(request: httpx2.Request) -> httpx2.Response:
    if request.headers.get("authorization") != "Bearer sk-right":
        error = {"message": "Incorrect API key provided", "code": "invalid_api_key"}
        return httpx2.Response(401, json={"error": error})
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    body = (
        event({"content": "Hello"})
        + event({"content": " there"})
        + event({}, "stop")
        + f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode()
        + b"data: [DONE]\n\n"
    )
    return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)


async def main() -> None:
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(fake_server)) as client:
        model = OpenAIChatModel(
            "gpt-4o-mini", base_url="https://api.example.com/v1", api_key="sk-right", client=client
        )
        async with model.stream("Say hello", temperature=0).timeout(first=30).open() as chunks:
            async for chunk in chunks:
                print(chunk.delta, end="")
        print()
        print((await model.invoke("Say hello")).usage)

        wrong = OpenAIChatModel(
            "gpt-4o-mini", base_url="https://api.example.com/v1", api_key="sk-wrong", client=client
        )
        try:
            await wrong.invoke("Say hello")
        except ModelHTTPError as exc:
            print(exc.status_code, exc.message, "| key shown:", "sk-wrong" in str(exc))


if __name__ == "__main__":
    trio.run(main)
