"""slurry, the one peer that needs its own environment, measured in another interpreter.

slurry (1.3.1, its latest release) requires ``trio>=0.21,<0.22``; beluga_trio requires
``trio>=0.30``. So slurry never runs in the benchmark's interpreter: given the path of a
Python that has slurry installed (``--slurry-python PATH`` or the environment variable
``BELUGA_BENCH_SLURRY_PYTHON``), each slurry contender starts that interpreter on
:mod:`bench._slurry_driver` and takes its measurements there (an :class:`ExternalJob`), with
the same N, the same rounds and the same checks, interleaved with the in-process contenders.
Without one, and in a smoke run unless ``--slurry-python`` is given, the rows are "skipped"
with the reason; CI never needs slurry. To make such an environment::

    python3 -m venv /tmp/slurry-venv && /tmp/slurry-venv/bin/pip install slurry
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

from bench._harness import Contender, ExternalJob, SkipContenderError

ENV_VAR = "BELUGA_BENCH_SLURRY_PYTHON"
DRIVER = Path(__file__).resolve().with_name("_slurry_driver.py")
PIN = "slurry 1.3.1, its latest release, requires trio<0.22; beluga_trio requires trio>=0.30"
ABSENT = (
    f"needs its own environment ({PIN}): pass --slurry-python PATH or set {ENV_VAR} to a"
    " Python that has slurry installed"
)


@dataclass(frozen=True)
class Setting:
    """Where slurry runs: an interpreter, or None and the reason it does not run."""

    python: str | None
    reason: str = ""


_setting = Setting(None, ABSENT)


def configure(setting: Setting) -> None:
    """Set, for the contenders loaded after this call, where slurry runs (see the CLI)."""
    global _setting  # noqa: PLW0603 - one setting for the run, chosen by the command line
    _setting = setting


def setting_for(python: str | None, env: str | None, *, smoke: bool) -> Setting:
    """The flag wins; the environment variable counts only in a full run."""
    if python:
        return Setting(python)
    if smoke:
        return Setting(None, f"smoke run: slurry runs only with --slurry-python PATH ({PIN})")
    if env:
        return Setting(env)
    return Setting(None, ABSENT)


class DriverError(Exception):
    """The slurry driver failed, exited or answered something unexpected."""


class SlurryJob(ExternalJob):
    """One slurry job in a child interpreter, kept running for all the rounds of a scenario."""

    def __init__(self, python: str, job: str) -> None:
        self._job = job
        self._python = python
        try:
            self._process = subprocess.Popen(
                [python, "-I", str(DRIVER)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                encoding="utf-8",
            )
        except OSError as exc:
            raise SkipContenderError(f"cannot start {python}: {exc}") from exc
        try:
            hello = self._receive()
        except DriverError as exc:
            self.close()
            raise SkipContenderError(f"{python}: {exc}") from exc
        if not hello.get("ok"):
            self.close()
            raise SkipContenderError(f"{python}: {hello.get('error')}")
        self._note = (
            f"separate env, trio {hello.get('trio')}"
            f" (slurry {hello.get('slurry')}, Python {hello.get('python')})"
        )

    @property
    def note(self) -> str:
        return self._note

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None  # a pipe (see __init__)
        assert stdout is not None
        return stdin, stdout

    def _receive(self) -> dict[str, object]:
        line = self._pipes()[1].readline()
        if not line:
            status = self._process.wait()
            raise DriverError(f"the slurry driver exited (status {status}) without answering")
        try:
            message: object = json.loads(line)
        except ValueError as exc:
            raise DriverError(f"the slurry driver answered {line[:80]!r}") from exc
        if not isinstance(message, dict):
            raise DriverError(f"the slurry driver answered {line[:80]!r}")
        return cast("dict[str, object]", message)

    def measure(self, n: int) -> tuple[int, object]:
        stdin = self._pipes()[0]
        stdin.write(json.dumps({"job": self._job, "n": n}) + "\n")
        stdin.flush()
        answer = self._receive()
        if not answer.get("ok"):
            raise DriverError(f"in {self._python}: {answer.get('error')}")
        elapsed = answer.get("ns")
        if not isinstance(elapsed, int):
            raise DriverError(f"the slurry driver answered no time: {elapsed!r}")
        return elapsed, answer.get("result")

    def close(self) -> None:
        stdin = self._process.stdin
        if stdin is not None and not stdin.closed:
            stdin.close()  # the driver exits at the end of its input
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()


def contender(label: str, job: str, *, note: str = "peer") -> Contender:
    """A slurry contender: runs ``job`` of :mod:`bench._slurry_driver` where configured."""

    def load() -> SlurryJob:
        if _setting.python is None:
            raise SkipContenderError(_setting.reason)
        return SlurryJob(_setting.python, job)

    return Contender(label, load, note=note)
