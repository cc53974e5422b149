"""`OpenAIChatModel` without a server: construction, repr, packaging."""

from __future__ import annotations

import subprocess
import sys

import pytest

from beluga_trio.llm import ChatModel
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
