"""The documentation's examples are real code: each runs here and prints what the docs say,
and every copy of an example inside a docs page is identical to the file."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from _redis_server import collect_coredis_garbage, redis_server

DOCS = Path(__file__).resolve().parent.parent / "docs"
EXAMPLES = DOCS / "examples"

# Example file -> (run on a virtual clock?, the exact output).
EXPECTED: dict[str, tuple[bool, str]] = {
    "first_stream.py": (
        True,
        "producer cleaned up\n['TOK0', 'TOK1', 'TOK2', 'TOK4']\nTOK0\nTOK1\n"
        "producer cleaned up\nafter the block\n",
    ),
    "errors_and_partial_results.py": (
        False,  # an endless in-memory source never idles, so a virtual clock never advances
        "caught: 429 from the model server\n"
        "partial: Hello, wor | error: RateLimitError('429 from the model server')\n"
        "cancelled: True\n",
    ),
    "concurrency.py": (
        True,
        "waiting: 4 of 4\n['t0', 't1', 't2', 't3', 't4', 't5']\n"
        "['b0', 'a0', 'b1', 'b2', 'a1', 'a2']\n[5, ['f0', 'f1']]\n"
        "['C0', 'C1', 'C2', 'C3', 'C4', 'C5'] in 0.2 s\n"
        "[['b0', 'b1', 'b2'], ['b3', 'b4', 'b5']]\n",
    ),
    "exactly_once.py": (
        True,
        "['reply 0', 'reply 1', 'reply 2']\ncalls: [0, 1, 2] polls: 10\n",
    ),
    "lock_step.py": (
        True,
        "0 1\nstarted while the consumer was busy: [0, 1]\n"
        "after a cancelled request: [0, 1, 2]\nthe item in flight is not lost: 2\n",
    ),
    "llm_stream.py": (
        True,
        "Leaving the block stops the model.\n"
        "'Leaving the block stops the model.' stop "
        "Usage(prompt_tokens=4, completion_tokens=6, total_tokens=10, cached_tokens=0, "
        "reasoning_tokens=0)\n"
        "get_weather {'city': 'Paris'}\n"
        "TooSlowError: no item within 1.0 s (to the first item); stopped after 1.0 s\n",
    ),
    "llm_events.py": (
        True,
        "data: 'Let me '\ndata: 'check.'\ntool call: search {\"q\": \"trio\"}\n"
        "done: tool_calls, Usage(prompt_tokens=12, completion_tokens=3, total_tokens=15, "
        "cached_tokens=0, reasoning_tokens=0)\n"
        "      first chunk after 0.2 s, 15 chunks/s\n"
        "error ConnectionResetError('peer went away') partial: 'Half a '\n",
    ),
    "llm_openai.py": (
        True,
        "Hello there\nUsage(prompt_tokens=3, completion_tokens=2, total_tokens=5, cached_tokens=0, "
        "reasoning_tokens=0)\n"
        "401 Incorrect API key provided | key shown: False\n",
    ),
    "llm_errors_retries.py": (
        True,
        "'Hello' after 3 requests\n"
        "429 insufficient_quota | requests: 1\n"
        "refusal: \"I can't help with that.\", content: ''\n"
        "IncompleteReplyError | partial: 'Half an ans'\n",
    ),
    "testing_sweep.py": (
        True,
        "cancelled at every step: True\nruns: True | tasks: 3\n"
        "abandons_a_generator: run 3, cancelled before step 3:\n"
        "    1 async generator(s) were not closed by the run\n"
        "swallows_the_cancellation: run 1, cancelled before step 1:\n"
        "    the scenario returned normally although trio.Cancelled was delivered 1 time(s) "
        "to its tasks\n",
    ),
    "testing_scripted.py": (
        True,
        "['HELLO', ', '] RateLimitError() True\n"
        "started: 3 | yielded: ['Hello', ', '] | cleanup: True\n"
        "got 0\ngot 1\n"
        "Cancelled | cleanup ran: True | its await was cancelled: True\n",
    ),
    "coming_from_go.py": (
        True,
        "  response closed after 3 chunk(s)\ncollect: Hello, Go\n"
        "  response closed after 2 chunk(s)\nbreak: the producer already stopped\n"
        "  response closed after 2 chunk(s)\ndeadline: cancelled = True\n"
        "  response closed after 2 chunk(s)\n"
        "collect_result: ['par', 'tial'] ConnectionError('connection reset')\n",
    ),
    "howto_llm_timeouts.py": (
        True,
        "Cold streams start nothing.\n'Cold streams start nothing.'\n"
        "Let me think [cut short: no item within 1.0 s (between items)]\n"
        "'Let me think [...]'\nthe stalled request was closed 1.3 s after it began\n",
    ),
    "howto_fan_out.py": (
        True,
        "Every consumer sees every chunk.\n"
        "ui showed 32 characters; the model was called 1 time\n"
        "0.05s 'Every'\n0.10s ' consumer'\n0.15s ' sees'\n0.20s ' every'\n"
        "0.25s ' chunk.'\n0.25s '' stop\n",
    ),
    "howto_buffer_policies.py": (
        True,
        "wait: saw 20 readings, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, "
        "18, 19]\n  peak 3 of 3, dropped 0, took 2.0 s\n"
        "drop_oldest: saw 5 readings, [0, 8, 17, 18, 19]\n"
        "  peak 3 of 3, dropped 15, took 0.5 s\n"
        "drop_newest: saw 5 readings, [0, 1, 2, 3, 11]\n"
        "  peak 3 of 3, dropped 15, took 0.5 s\n",
    ),
    "howto_shared_limiter.py": (
        True,
        "questions: ['Q0', 'Q1', 'Q2', 'Q3', 'Q4', 'Q5']\n"
        "documents: ['D0', 'D1', 'D2', 'D3', 'D4', 'D5']\n"
        "12 calls, at most 4 at once, in 0.3 s\n",
    ),
    "web_sse.py": (
        False,  # a real server on loopback: real time
        'id: 1\ndata: "cold"\n\nid: 2\ndata: "typed"\n\nid: 3\ndata: "scoped"\n\n'
        'id: 3\ndata: "scoped"\n\n',
    ),
    "web_gateway.py": (
        False,
        "'one two three four five six seven eight'\none two three\n"
        "chunks begun: 4 of 9, model cleanup ran: True\n",
    ),
    "sharing_share.py": (
        True,
        "tab A:\n  0.00s subscribe(after=None)\n  0.10s #0 'One'\n  0.20s #1 ' reply,'\n"
        "  0.30s #2 ' produced'\n  0.52s subscribe(after=2)\n  0.52s #3 ' once,'\n"
        "  0.52s #4 ' for'\n  0.60s #5 ' every'\n  0.70s #6 ' tab.'\n"
        "tab B:\n  0.45s subscribe(after=None)\n  0.45s #0 'One'\n  0.45s #1 ' reply,'\n"
        "  0.45s #2 ' produced'\n  0.45s #3 ' once,'\n  0.50s #4 ' for'\n"
        "  0.60s #5 ' every'\n  0.70s #6 ' tab.'\nthe model was called 1 time\n",
    ),
    "sharing_redis.py": (
        False,  # real sockets to a real redis-server
        "before the drop: ['Resumed', ' from', ' Redis,']\n"
        "after reconnecting: [' without', ' a', ' gap.']\n"
        "the whole reply: Resumed from Redis, without a gap.\nthe model was called 1 time\n",
    ),
    "sharing_resumable_sse.py": (
        False,  # two real servers and a real redis-server
        "through B, then the connection drops: ['One', ' reply,', ' read']\n"
        "through A, from Last-Event-ID: [' through', ' two', ' servers,', ' no', ' gap.']\n"
        "the whole reply: One reply, read through two servers, no gap.\n"
        "400 invalid_last_event_id\nthe model was called 1 time\n",
    ),
    "howto_test_pipeline.py": (
        True,
        "cancelled at every step in turn: no leak, no loss, every cleanup ran\n"
        "before the error: [[2, 3]] | error: ConnectionResetError('peer left')\n",
    ),
    "ops_zip.py": (True, "1 Hello\n2 from\n3 trio\ntokens stopped\ndone\n"),
    "ops_chain.py": (
        True,
        "fetching page 1\npage 1 closed\nfetching page 2\npage 2 closed\n"
        "['p1-item0', 'p1-item1', 'p2-item0', 'p2-item1']\n",
    ),
    "ops_flat_map.py": (
        True,
        "['a0', 'a1', 'b0', 'b1']\n['a0', 'b0', 'a1', 'b1'] in 0.3 s\n",
    ),
    "ops_switch_map.py": (
        True,
        "search 't' closed\nsearch 'tr' closed\nsearch 'tri' closed\nsearch 'trio' closed\n"
        "[\"results for 'tri'\", \"results for 'trio'\"]\n",
    ),
    "ops_scan.py": (
        True,
        "''\n'The '\n'The answer '\n'The answer is '\n'The answer is 42.'\n",
    ),
    "ops_distinct.py": (True, "['idle', 'busy', 'idle']\n['Trio', 'asyncio', 'Trio']\n"),
    "ops_catch.py": (
        True,
        "recovering from OverloadedError('503 from the primary model')\n"
        "['Once ', '[fallback] ', 'upon a time.']\n",
    ),
    "ops_retry.py": (
        True,
        "['Hi', ' there'] after 3 attempts and 1.5 s of backoff\n"
        "then, not retried: ConnectionError('reset after the first token')\n",
    ),
    "ops_debounce.py": (True, "0.6 s: search 'trio'\n1.0 s: search 'trio n'\n"),
    "ops_throttle.py": (
        True,
        "0%@0.0 20%@0.1 40%@0.2 70%@0.3 100%@0.4\n0%@0.0 30%@0.1 60%@0.2 90%@0.4\n",
    ),
    "howto_switch_map.py": (
        True,
        "An\nanswer\n  [reply to 'weather?' closed]\nAn\nanswer\nto\nnews?\n"
        "  [reply to 'news?' closed]\n",
    ),
}


# The examples that need an optional extra (pyproject's [project.optional-dependencies]) and
# the extra; every other example needs only beluga_trio itself (trio and attrs).
NEEDS_EXTRA: dict[str, str] = {
    "llm_openai.py": "http",
    "llm_errors_retries.py": "http",
    "web_sse.py": "web,http",  # its client is httpx2
    "web_gateway.py": "web,http",
    "sharing_redis.py": "redis",
    "sharing_resumable_sse.py": "web,redis,http",  # its client is httpx2
}

# .ci/check-package runs this file against the built wheel, installed with no extra and then
# with each extra: it names the installed extras here, and an example that needs another one
# is skipped. Unset (the project's own environment, which has every extra): every example runs.
_INSTALLED_EXTRAS = os.environ.get("BELUGA_EXAMPLES_EXTRAS")


def _needs_a_missing_extra(name: str) -> str | None:
    extras = NEEDS_EXTRA.get(name)
    if extras is None or _INSTALLED_EXTRAS is None:
        return None
    missing = set(extras.split(",")) - set(_INSTALLED_EXTRAS.split(","))
    return ",".join(sorted(missing)) or None


# Examples that talk to a real redis-server (skipped, saying how to run them, without one).
NEEDS_REDIS = {"sharing_redis.py", "sharing_resumable_sse.py"}


def _load_main(path: Path) -> Callable[[], Coroutine[Any, Any, None]]:
    spec = importlib.util.spec_from_file_location(f"docs_example_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    main: Callable[[], Coroutine[Any, Any, None]] = module.main
    return main


def test_every_example_has_an_expectation() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)
    assert set(NEEDS_EXTRA) <= set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_and_prints_what_the_docs_say(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = _needs_a_missing_extra(name)
    if missing is not None:
        pytest.skip(f"needs the {missing} extra (pip install beluga_trio[{missing}])")
    virtual_clock, expected = EXPECTED[name]
    with contextlib.ExitStack() as stack:
        if name in NEEDS_REDIS:  # started here, on a free port the example reads
            server = stack.enter_context(redis_server())
            monkeypatch.setenv("BELUGA_TRIO_REDIS_PORT", str(server.port))
            stack.callback(collect_coredis_garbage)
        main = _load_main(EXAMPLES / name)
        clock = trio.testing.MockClock(autojump_threshold=0) if virtual_clock else None
        trio.run(main, clock=clock)
    assert capsys.readouterr().out == expected


_BLOCK = re.compile(r"```python\n# docs/examples/(?P<name>[\w.]+)\n(?P<body>.*?)```", re.DOTALL)


def test_examples_quoted_in_docs_are_identical_to_the_files() -> None:
    quoted = 0
    for page in DOCS.glob("*.md"):
        for match in _BLOCK.finditer(page.read_text()):
            source = (EXAMPLES / match["name"]).read_text()
            assert match["body"] == source, f"{page.name} quotes an outdated {match['name']}"
            quoted += 1
    assert quoted >= len(EXPECTED), "every example should be shown in a docs page"
