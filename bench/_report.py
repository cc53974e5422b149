"""The printed table and the JSON file."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import trio

from bench._harness import ContenderResult, ScenarioResult

PACKAGES = ("beluga_trio", "trio", "asyncstdlib", "aiostream", "trio-util")

METHOD = (
    "Each measurement runs the whole job once in a fresh trio.run (or asyncio.run for asyncio"
    " peers) and times only the job inside the loop with time.perf_counter_ns(). Rounds are"
    " interleaved (every contender once per round, order rotated each round); the first round"
    " is a discarded warm-up. The garbage collector stays enabled; gc.collect() runs before"
    " each measurement, outside the timing. Every result is checked against the expected"
    " value. Reported: median over the rounds, ns per item; vs ref = median / reference median."
)


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git_revision() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", ".", ":(exclude)bench/results"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}{'-dirty' if dirty else ''}"


def machine_info() -> dict[str, object]:
    try:
        usable_cpus: int | None = len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        usable_cpus = None
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "python_implementation": platform.python_implementation(),
        "python_version": platform.python_version(),
        "python_build": sys.version,
        "trio_version": trio.__version__,
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus,
        "packages": {name: _package_version(name) for name in PACKAGES},
        "git_revision": _git_revision(),
    }


# The table -----------------------------------------------------------------------------------


def _ns(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _row(scenario: ScenarioResult, c: ContenderResult) -> list[str]:
    ratio = scenario.ratio(c.label)
    met = scenario.goal_met(c.label)
    spread = f"{_ns(c.fastest)}-{_ns(c.slowest)}" if c.status == "ok" else "-"
    notes = [c.note] if c.note else []
    if c.label == scenario.reference:
        notes.insert(0, "reference")
    if c.status != "ok":
        notes.append(f"{c.status.upper()}: {c.reason}")
    return [
        _ns(c.median),
        spread,
        "-" if ratio is None else f"{ratio:.2f}x",
        "" if c.goal is None else f"<= {c.goal:.2f}x",
        "" if met is None else ("OK" if met else "MISSED"),
        "; ".join(notes),
    ]


HEADER = ["scenario", "contender", "ns/item", "min-max", "vs ref", "goal", "met", "notes"]
RIGHT_ALIGNED = {2, 3, 4, 5}


def format_table(results: Sequence[ScenarioResult]) -> str:
    rows: list[list[str] | None] = []  # None: a rule between scenarios
    for scenario in results:
        rows.append(None)
        first = f"{scenario.name} (N={scenario.items:,})"
        for i, c in enumerate(scenario.contenders):
            rows.append([first if i == 0 else "", c.label, *_row(scenario, c)])
    cells = [HEADER, *(r for r in rows if r is not None)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADER))]

    def line(row: list[str]) -> str:
        parts = [
            cell.rjust(widths[i]) if i in RIGHT_ALIGNED else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        return "  ".join(parts).rstrip()

    rule = "-" * len(line(["x" * w for w in widths]))
    out = [line(HEADER)]
    out.extend(rule if row is None else line(row) for row in rows)
    out.append(rule)
    return "\n".join(out)


# The JSON file -------------------------------------------------------------------------------


def _contender_json(scenario: ScenarioResult, c: ContenderResult) -> dict[str, object]:
    return {
        "label": c.label,
        "loop": c.loop,
        "note": c.note,
        "status": c.status,
        "reason": c.reason,
        "ns_per_item_median": c.median,
        "ns_per_item_min": c.fastest,
        "ns_per_item_max": c.slowest,
        "round_totals_ns": c.samples_ns,
        "ratio_vs_reference": scenario.ratio(c.label),
        "goal_max_ratio": c.goal,
        "goal_met": scenario.goal_met(c.label),
    }


def to_json(
    results: Sequence[ScenarioResult], *, smoke: bool, rounds: int, warmup: int
) -> dict[str, object]:
    return {
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "mode": "smoke" if smoke else "full",
        "timing_claim": not smoke and rounds >= 5,
        "rounds": rounds,
        "warmup_rounds": warmup,
        "gc": "enabled during timing; gc.collect() before each measurement, untimed",
        "method": METHOD,
        "machine": machine_info(),
        "scenarios": [
            {
                "name": s.name,
                "description": s.description,
                "items": s.items,
                "reference": s.reference,
                "contenders": [_contender_json(s, c) for c in s.contenders],
            }
            for s in results
        ],
    }


def write_json(path: Path, document: dict[str, object]) -> None:
    """Write atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
