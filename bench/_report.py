"""The printed table and the JSON file (written, and read back for the plot and the docs)."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import TypeVar, cast, get_args

import trio

from bench._harness import ContenderResult, Loop, Ratio, ScenarioResult, Status, Unit
from bench._memory import MemoryContenderResult, MemoryResult

PACKAGES = ("beluga_trio", "trio", "asyncstdlib", "aiostream", "trio-util")

METHOD = (
    "Each measurement runs the whole job once in a fresh trio.run (or asyncio.run for asyncio"
    " peers) and times only the job inside the loop with time.perf_counter_ns(). Rounds are"
    " interleaved (every contender once per round, order rotated each round); the first round"
    " is a discarded warm-up. The garbage collector stays enabled; gc.collect() runs before"
    " each measurement, outside the timing. Every result is checked against the expected"
    " value. Reported: median over the rounds, per item in the scenario's unit (ns/item, or"
    " us/run where each item of the job is one whole run); vs ref = median / reference median;"
    " vs peer = a beluga row's median / the fastest peer's median in the scenario;"
    " x ideal = median / the job's ideal time, where it has one. Peak memory: each job once"
    " per size in a fresh loop, tracemalloc tracing only while the job runs, untimed."
)


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


# What a benchmark run writes itself: a change to these does not make the measured code differ
# from the revision.
OUTPUTS = ("bench/results", "docs/performance.md", "docs/images/benchmarks.png")


def _git(*args: str) -> str:
    root = Path(__file__).resolve().parent.parent
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=5
    ).stdout


def _git_revision() -> str | None:
    """The checked-out commit, short; None outside a git checkout."""
    try:
        return _git("rev-parse", "--short", "HEAD").strip()
    except (OSError, subprocess.SubprocessError):
        return None


def uncommitted_changes() -> list[str]:
    """The files that differ from the checked-out commit (the benchmark's own outputs aside):
    a run with any is not a run of that revision."""
    try:
        status = _git(
            "status", "--porcelain", "--", ".", *(f":(exclude){path}" for path in OUTPUTS)
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line[3:] for line in status.splitlines() if line.strip()]


def _load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages (other work on the machine), where known."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # not on every platform
        return None


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
        "load_average": _load_average(),
        "packages": {name: _package_version(name) for name in PACKAGES},
        "git_revision": _git_revision(),
        "git_uncommitted": uncommitted_changes(),
    }


# The table -----------------------------------------------------------------------------------


def _figure(value: float | None) -> str:
    """A figure in its unit: whole numbers from 100 up, else three significant digits."""
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _row(scenario: ScenarioResult, c: ContenderResult) -> list[str]:
    ratio = scenario.ratio(c.label)
    to_peer = scenario.ratio_to_best_peer(c.label)
    met = scenario.goal_met(c.label)
    fig = scenario.in_unit
    spread = f"{_figure(fig(c.fastest))}-{_figure(fig(c.slowest))}" if c.status == "ok" else "-"
    notes = [c.note] if c.note else []
    if c.label == scenario.reference:
        notes.insert(0, "reference")
    to_ideal = scenario.ratio_to_ideal(c.label)
    if to_ideal is not None:
        notes.insert(0, f"{to_ideal:.2f}x ideal")
    if c.status != "ok":
        notes.append(f"{c.status.upper()}: {c.reason}")
    return [
        _figure(fig(c.median)),
        spread,
        scenario.unit,
        "-" if ratio is None else f"{ratio:.2f}x",
        "" if to_peer is None else f"{to_peer:.2f}x",
        "" if c.goal is None else f"<= {c.goal:.2f}x",
        "" if met is None else ("OK" if met else "MISSED"),
        "; ".join(notes),
    ]


HEADER = [
    "scenario",
    "contender",
    "median",
    "min-max",
    "unit",
    "vs ref",
    "vs peer",
    "goal",
    "met",
    "notes",
]
RIGHT_ALIGNED = {2, 3, 5, 6, 7}


def _scenario_cells(scenario: ScenarioResult) -> list[str]:
    """The scenario column, one line per contender row: the name, then the ideal if any."""
    count = "runs" if scenario.unit == "us/run" else "N"
    cells = [f"{scenario.name} ({count}={scenario.items:,})"]
    if scenario.ideal_ns_per_item is not None:
        ideal = scenario.in_unit(scenario.ideal_ns_per_item)
        cells.append(f"  ideal {_figure(ideal)} {scenario.unit}")
        if scenario.ideal_note:
            cells.append(f"  = {scenario.ideal_note}")
    return cells


def _layout(header: list[str], rows: list[list[str] | None], right: set[int]) -> str:
    """Columns padded to width, a rule where a row is None."""
    cells = [header, *(r for r in rows if r is not None)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        parts = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        return "  ".join(parts).rstrip()

    rule = "-" * len(line(["x" * w for w in widths]))
    out = [line(header)]
    out.extend(rule if row is None else line(row) for row in rows)
    out.append(rule)
    return "\n".join(out)


def format_table(results: Sequence[ScenarioResult]) -> str:
    rows: list[list[str] | None] = []  # None: a rule between scenarios
    for scenario in results:
        rows.append(None)
        first = _scenario_cells(scenario)
        for i, c in enumerate(scenario.contenders):
            rows.append([first[i] if i < len(first) else "", c.label, *_row(scenario, c)])
        rows.extend(
            [extra, *[""] * (len(HEADER) - 1)] for extra in first[len(scenario.contenders) :]
        )
    return _layout(HEADER, rows, RIGHT_ALIGNED)


RATIO_HEADER = ["scenario", "ratio", "value", "goal", "met", "computed from the medians"]
RATIO_RIGHT_ALIGNED = {2, 3}


def format_ratio_table(results: Sequence[ScenarioResult]) -> str | None:
    """The scenarios' derived ratios (see :class:`bench._harness.Ratio`); None if none has any."""
    rows: list[list[str] | None] = []
    for scenario in results:
        if not scenario.ratios:
            continue
        rows.append(None)
        for i, r in enumerate(scenario.ratios):
            value = scenario.derived(r)
            met = scenario.derived_goal_met(r)
            rows.append(
                [
                    scenario.name if i == 0 else "",
                    r.label,
                    "-" if value is None else f"{value:.2f}x",
                    "" if r.goal is None else f"<= {r.goal:.2f}x",
                    "" if met is None else ("OK" if met else "MISSED"),
                    r.formula,
                ]
            )
    if not rows:
        return None
    return _layout(RATIO_HEADER, rows, RATIO_RIGHT_ALIGNED)


MEMORY_HEADER = [
    "scenario",
    "contender",
    "small",
    "large",
    "large/small",
    "vs ref",
    "goal",
    "met",
    "notes",
]
MEMORY_RIGHT_ALIGNED = {2, 3, 4, 5, 6}


def _mb(value: int | None) -> str:
    if value is None:
        return "-"
    if value < 1_000_000:
        return f"{value / 1e3:,.0f} kB"
    return f"{value / 1e6:,.1f} MB"


def memory_cell(scenario: MemoryResult, label: str, n: int) -> str:
    """The peak at size ``n``, or for a scenario measured per unit the peak / ``n`` per unit."""
    if scenario.per is None:
        return _mb(scenario.result(label).peak_bytes.get(n))
    per_unit = scenario.per_unit(label, n)
    if per_unit is None:
        return "-"
    return f"{per_unit / 1e3:,.2f} kB/{scenario.per}"


def format_memory_table(results: Sequence[MemoryResult]) -> str:
    """Peak traced memory at both sizes (or per unit), the growth, the ratio to the reference
    (per unit) and the goal."""
    rows: list[list[str] | None] = []
    for scenario in results:
        rows.append(None)
        small, large = scenario.sizes
        first = [scenario.name, f"  small N={small:,}", f"  large N={large:,}"]
        for i, c in enumerate(scenario.contenders):
            growth = scenario.growth(c.label)
            ratio = scenario.ratio(c.label)
            met = scenario.goal_met(c.label)
            notes = [c.note] if c.note else []
            if c.label == scenario.reference:
                notes.insert(0, "reference")
            if c.status == "ok" and large in c.seconds:
                notes.append(f"traced run {c.seconds[small]:.1f} s + {c.seconds[large]:.1f} s")
            if c.status != "ok":
                notes.append(f"{c.status.upper()}: {c.reason}")
            rows.append(
                [
                    first[i] if i < len(first) else "",
                    c.label,
                    memory_cell(scenario, c.label, small),
                    memory_cell(scenario, c.label, large),
                    "-" if growth is None else f"{growth:.2f}x",
                    "" if ratio is None else f"{ratio:.2f}x",
                    "" if c.goal is None else f"<= {c.goal:.2f}x",
                    "" if met is None else ("OK" if met else "MISSED"),
                    "; ".join(notes),
                ]
            )
        rows.extend(
            [extra, *[""] * (len(MEMORY_HEADER) - 1)] for extra in first[len(scenario.contenders) :]
        )
    return _layout(MEMORY_HEADER, rows, MEMORY_RIGHT_ALIGNED)


# The JSON file -------------------------------------------------------------------------------


def _contender_json(scenario: ScenarioResult, c: ContenderResult) -> dict[str, object]:
    # "ns_per_item_*" are per run for a "us/run" scenario (each item of its job is a run).
    return {
        "label": c.label,
        "kind": c.kind,
        "loop": c.loop,
        "note": c.note,
        "status": c.status,
        "reason": c.reason,
        "ns_per_item_median": c.median,
        "ns_per_item_min": c.fastest,
        "ns_per_item_max": c.slowest,
        "round_totals_ns": c.samples_ns,
        "ratio_vs_reference": scenario.ratio(c.label),
        "ratio_vs_best_peer": scenario.ratio_to_best_peer(c.label),
        "ratio_vs_ideal": scenario.ratio_to_ideal(c.label),
        "goal_max_ratio": c.goal,
        "goal_met": scenario.goal_met(c.label),
    }


def _ratio_json(scenario: ScenarioResult, r: Ratio) -> dict[str, object]:
    return {
        "label": r.label,
        "numerator": r.numerator,
        "numerator_base": r.numerator_base,
        "denominator": r.denominator,
        "denominator_base": r.denominator_base,
        "formula": r.formula,
        "value": scenario.derived(r),
        "goal_max_ratio": r.goal,
        "goal_met": scenario.derived_goal_met(r),
    }


def _memory_json(scenario: MemoryResult) -> dict[str, object]:
    return {
        "name": scenario.name,
        "description": scenario.description,
        "sizes": list(scenario.sizes),
        "per": scenario.per,
        "reference": scenario.reference,
        "contenders": [
            {
                "label": c.label,
                "loop": c.loop,
                "note": c.note,
                "status": c.status,
                "reason": c.reason,
                "peak_bytes": {str(n): b for n, b in c.peak_bytes.items()},
                "traced_run_seconds": {str(n): t for n, t in c.seconds.items()},
                "growth_large_vs_small": scenario.growth(c.label),
                "ratio_vs_reference": scenario.ratio(c.label),
                "goal_max_growth": c.goal,
                "goal_met": scenario.goal_met(c.label),
            }
            for c in scenario.contenders
        ],
    }


def to_json(
    results: Sequence[ScenarioResult],
    *,
    smoke: bool,
    rounds: int,
    warmup: int,
    memory: Sequence[MemoryResult] = (),
    complete: bool = False,
    costs: Mapping[str, float] | None = None,
) -> dict[str, object]:
    """The JSON document; ``complete``: every scenario ran, at its own size; ``costs``: what
    trio's basic steps cost on this machine (:mod:`bench._calibrate`)."""
    return {
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "mode": "smoke" if smoke else "full",
        "timing_claim": not smoke and rounds >= 5,
        "complete": complete,
        "rounds": rounds,
        "warmup_rounds": warmup,
        "gc": "enabled during timing; gc.collect() before each measurement, untimed",
        "method": METHOD,
        "machine": machine_info(),
        "machine_costs": dict(costs or {}),
        "scenarios": [
            {
                "name": s.name,
                "description": s.description,
                "items": s.items,
                "unit": s.unit,
                "ideal_ns_per_item": s.ideal_ns_per_item,
                "ideal_note": s.ideal_note,
                "reference": s.reference,
                "contenders": [_contender_json(s, c) for c in s.contenders],
                "ratios": [_ratio_json(s, r) for r in s.ratios],
            }
            for s in results
        ],
        "memory_scenarios": [_memory_json(m) for m in memory],
    }


def write_json(path: Path, document: dict[str, object]) -> None:
    """Write atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


# Reading it back (for the plot and the docs page) --------------------------------------------


C = TypeVar("C", bound=str)


class ResultsFileError(ValueError):
    """A results file that is not what :func:`to_json` writes."""


def _field(data: Mapping[str, object], key: str) -> object:
    if key not in data:
        raise ResultsFileError(f"missing field {key!r}")
    return data[key]


def _mapping(value: object, what: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise ResultsFileError(f"{what}: not an object")
    return cast("dict[str, object]", value)


def _objects(data: Mapping[str, object], key: str) -> list[Mapping[str, object]]:
    value = _field(data, key)
    if not isinstance(value, list):
        raise ResultsFileError(f"{key}: not a list")
    return [_mapping(item, key) for item in cast("list[object]", value)]


def _text(data: Mapping[str, object], key: str) -> str:
    value = _field(data, key)
    if not isinstance(value, str):
        raise ResultsFileError(f"{key}: not a string")
    return value


def _integer(data: Mapping[str, object], key: str) -> int:
    value = _field(data, key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ResultsFileError(f"{key}: not an integer")
    return value


def _number_or_none(data: Mapping[str, object], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ResultsFileError(f"{key}: not a number")
    return float(value)


def _text_or_none(data: Mapping[str, object], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ResultsFileError(f"{key}: not a string")
    return value


def _ratios(data: Mapping[str, object]) -> tuple[Ratio, ...]:
    # Files written before ratios existed have none.
    if "ratios" not in data:
        return ()
    return tuple(
        Ratio(
            label=_text(r, "label"),
            numerator=_text(r, "numerator"),
            denominator=_text(r, "denominator"),
            numerator_base=_text_or_none(r, "numerator_base"),
            denominator_base=_text_or_none(r, "denominator_base"),
            goal=_number_or_none(r, "goal_max_ratio"),
        )
        for r in _objects(data, "ratios")
    )


def _choice(data: Mapping[str, object], key: str, choices: tuple[C, ...]) -> C:
    value = _text(data, key)
    for choice in choices:
        if value == choice:
            return choice
    raise ResultsFileError(f"{key}: {value!r} is not one of {choices}")


def _integers(data: Mapping[str, object], key: str) -> list[int]:
    value = _field(data, key)
    if not isinstance(value, list):
        raise ResultsFileError(f"{key}: not a list")
    items = cast("list[object]", value)
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in items):
        raise ResultsFileError(f"{key}: not a list of integers")
    return cast("list[int]", items)


def _by_size(data: Mapping[str, object], key: str) -> dict[int, float]:
    sizes = _mapping(_field(data, key), key)
    out: dict[int, float] = {}
    for size in sizes:
        number = _number_or_none(sizes, size)
        if number is None or not size.isdigit():
            raise ResultsFileError(f"{key}: not numbers by size")
        out[int(size)] = number
    return out


def results_from_json(
    document: Mapping[str, object],
) -> tuple[list[ScenarioResult], list[MemoryResult]]:
    """The results a document written by :func:`to_json` holds; ResultsFileError if malformed."""
    loops: tuple[Loop, ...] = get_args(Loop)
    statuses: tuple[Status, ...] = get_args(Status)
    units: tuple[Unit, ...] = get_args(Unit)
    timed: list[ScenarioResult] = []
    for s in _objects(document, "scenarios"):
        items = _integer(s, "items")
        contenders = [
            ContenderResult(
                label=_text(c, "label"),
                loop=_choice(c, "loop", loops),
                goal=_number_or_none(c, "goal_max_ratio"),
                note=_text(c, "note"),
                items=items,
                status=_choice(c, "status", statuses),
                reason=_text(c, "reason"),
                samples_ns=_integers(c, "round_totals_ns"),
            )
            for c in _objects(s, "contenders")
        ]
        timed.append(
            ScenarioResult(
                name=_text(s, "name"),
                description=_text(s, "description"),
                items=items,
                rounds=_integer(document, "rounds"),
                reference=_text(s, "reference"),
                contenders=contenders,
                unit=_choice(s, "unit", units),
                ideal_ns_per_item=_number_or_none(s, "ideal_ns_per_item"),
                ideal_note=_text(s, "ideal_note"),
                ratios=_ratios(s),
            )
        )
    memory: list[MemoryResult] = []
    for m in _objects(document, "memory_scenarios"):
        sizes = _integers(m, "sizes")
        if len(sizes) != 2:
            raise ResultsFileError("sizes: not two sizes")
        memory.append(
            MemoryResult(
                name=_text(m, "name"),
                description=_text(m, "description"),
                sizes=(sizes[0], sizes[1]),
                contenders=[
                    MemoryContenderResult(
                        label=_text(c, "label"),
                        loop=_choice(c, "loop", loops),
                        goal=_number_or_none(c, "goal_max_growth"),
                        note=_text(c, "note"),
                        status=_choice(c, "status", statuses),
                        reason=_text(c, "reason"),
                        peak_bytes={n: int(b) for n, b in _by_size(c, "peak_bytes").items()},
                        seconds=_by_size(c, "traced_run_seconds"),
                    )
                    for c in _objects(m, "contenders")
                ],
                per=_text_or_none(m, "per"),
                reference=_text_or_none(m, "reference"),
            )
        )
    return timed, memory


def read_json(path: Path) -> dict[str, object]:
    """A results file, as a JSON object; ResultsFileError when it is not one."""
    try:
        document: object = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ResultsFileError(f"{path}: not JSON: {exc}") from exc
    return dict(_mapping(document, str(path)))
