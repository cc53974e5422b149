"""`OpenAIChatModel` without a server: construction, repr, packaging."""

from __future__ import annotations

import subprocess
import sys

import pytest
import trio

from beluga_trio.llm import ChatModel, ModelConnectionError
from beluga_trio.llm.openai import OpenAIChatModel

KEY = "sk-test-SECRET-0123456789abcdef"


def test_it_is_a_chat_model() -> None:
    assert isinstance(OpenAIChatModel("m", base_url="http://127.0.0.1:9/v1", api_key=""), ChatModel)


def test_repr_hides_the_key() -> None:
    model = OpenAIChatModel("m", base_url="http://127.0.0.1:9/v1", api_key=KEY)
    assert KEY not in repr(model)
    assert repr(model) == "OpenAIChatModel(model='m', url='http://127.0.0.1:9/v1/chat/completions')"
    with pytest.raises(ValueError, match="model"):
        OpenAIChatModel("", api_key="")


def test_beluga_trio_does_not_need_httpx2() -> None:
    code = (
        "import sys\n"
        "sys.modules['httpx2'] = None  # as if it were not installed\n"
        "import beluga_trio, beluga_trio.llm, beluga_trio.schema\n"
        "try:\n"
        "    import beluga_trio.llm.openai\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert "pip install beluga_trio[http]" in result.stdout


def test_a_model_used_in_another_run_says_so() -> None:
    # The client the model made belongs to the trio.run that made it. (Nothing listens on
    # port 9 of loopback, so no connection is left open by the first run.)
    model = OpenAIChatModel("m", base_url="http://127.0.0.1:9/v1", api_key="")

    async def ask() -> None:
        with pytest.raises(ModelConnectionError):
            await model.invoke("hi")

    trio.run(ask)
    with pytest.raises(RuntimeError, match=r"another trio\.run\(\)"):
        trio.run(ask)

    async def close_then_ask() -> None:
        await model.aclose()  # the old client has no connection open: closing it is harmless
        await ask()
        await model.aclose()

    trio.run(close_then_ask)
