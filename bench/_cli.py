"""Command line: ``python -m bench [--smoke] [--rounds N] [--items N] [--only S] [--json P]``.

Timed scenarios run first, then the peak-memory scenarios (untimed, see :mod:`bench._memory`).

Exit status: 0 when every contender ran and computed the right result (missed goals included:
the benchmark is a report, not a test), 1 when a contender failed or computed a wrong result,
2 for a usage error.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench._harness import Scenario, ScenarioResult, run_scenario, select
from bench._memory import MemoryResult, MemoryScenario, run_memory_scenario
from bench._report import format_memory_table, format_table, to_json, write_json
from bench.scenarios import SCENARIOS

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_ROUNDS = 7
SMOKE_ROUNDS = 2
MIN_CLAIM_ROUNDS = 5
WARMUP_ROUNDS = 1


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark beluga_trio against hand-written trio code and its peers.",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=(
            f"tiny sizes and {SMOKE_ROUNDS} rounds: proves the benchmark works, in seconds;"
            " not a timing claim (JSON default: bench/results/smoke.json)"
        ),
    )
    parser.add_argument(
        "--rounds",
        type=_positive_int,
        metavar="N",
        help=f"timed rounds per scenario, after one warm-up (default {DEFAULT_ROUNDS})",
    )
    parser.add_argument(
        "--items",
        type=_positive_int,
        metavar="N",
        help=(
            "items per job, for every scenario (default: each scenario's own size); a"
            " peak-memory scenario then measures N and 10 N items"
        ),
    )
    parser.add_argument(
        "--only",
        metavar="SUBSTRING",
        help="run only the scenarios whose name contains SUBSTRING (case-insensitive)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        metavar="PATH",
        help="where to write the results (default: bench/results/latest.json)",
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    return parser


def _items(scenario: Scenario, args: argparse.Namespace) -> int:
    if args.items is not None:
        return int(args.items)
    return scenario.smoke_items if args.smoke else scenario.items


def _sizes(scenario: MemoryScenario, args: argparse.Namespace) -> tuple[int, int]:
    if args.items is not None:
        return int(args.items), 10 * int(args.items)
    return scenario.smoke_sizes if args.smoke else scenario.sizes


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    smoke = bool(args.smoke)

    if args.list:
        for s in SCENARIOS:
            contenders = ", ".join(c.label for c in s.contenders)
            size = (
                f"N={s.sizes[0]:,} and {s.sizes[1]:,}, peak memory"
                if isinstance(s, MemoryScenario)
                else f"{'runs' if s.unit == 'us/run' else 'N'}={s.items:,}"
            )
            print(f"{s.name}: {s.description}\n    {size}; contenders: {contenders}")
        return 0

    scenarios = select(SCENARIOS, args.only)
    if not scenarios:
        names = ", ".join(repr(s.name) for s in SCENARIOS)
        parser.error(f"no scenario name contains {args.only!r}; scenarios: {names}")

    if args.rounds is not None:
        rounds = int(args.rounds)
    else:
        rounds = SMOKE_ROUNDS if smoke else DEFAULT_ROUNDS
    json_path = (
        Path(args.json)
        if args.json is not None
        else RESULTS_DIR / ("smoke.json" if smoke else "latest.json")
    )

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    results: list[ScenarioResult] = []
    memory: list[MemoryResult] = []
    for scenario in scenarios:
        if isinstance(scenario, MemoryScenario):
            continue
        items = _items(scenario, args)
        progress(
            f"{scenario.name}: N={items:,}, {len(scenario.contenders)} contenders,"
            f" {WARMUP_ROUNDS} warm-up + {rounds} rounds"
        )
        started = time.perf_counter()
        results.append(
            run_scenario(
                scenario,
                items=items,
                rounds=rounds,
                warmup=WARMUP_ROUNDS,
                progress=lambda m: progress(f"  {m}"),
            )
        )
        progress(f"  done in {time.perf_counter() - started:.1f} s")
    for scenario in scenarios:
        if not isinstance(scenario, MemoryScenario):
            continue
        sizes = _sizes(scenario, args)
        progress(
            f"{scenario.name}: peak memory at N={sizes[0]:,} and {sizes[1]:,},"
            f" {len(scenario.contenders)} contenders, one traced run each"
        )
        started = time.perf_counter()
        memory.append(
            run_memory_scenario(scenario, sizes=sizes, progress=lambda m: progress(f"  {m}"))
        )
        progress(f"  done in {time.perf_counter() - started:.1f} s")

    if smoke or rounds < MIN_CLAIM_ROUNDS:
        kind = "smoke run" if smoke else f"only {rounds} rounds"
        title = f"{kind}: checks that the benchmark works; NOT a timing claim"
    else:
        title = f"median of {rounds} rounds (+{WARMUP_ROUNDS} warm-up discarded)"
    if results:
        print(f"beluga_trio benchmark, {title}; time per item (or per run), lower is better")
        print(format_table(results))
        print(
            "vs ref = median / the scenario's reference median; a goal is met when vs ref <="
            " goal; x ideal = median / the job's ideal time. Missed goals do not fail the run."
        )
    if memory:
        kind = "smoke sizes, NOT a claim" if smoke else "one traced run per size, untimed"
        print(f"peak traced memory (tracemalloc; kB = 10^3 bytes, MB = 10^6; {kind})")
        print(format_memory_table(memory))
        print(
            "large/small = peak at the large size / peak at the small size; a goal is met when"
            " it is <= goal (memory flat in the length of the stream)."
        )

    document = to_json(results, smoke=smoke, rounds=rounds, warmup=WARMUP_ROUNDS, memory=memory)
    write_json(json_path, document)
    print(f"results written to {json_path}")

    failed = [
        f"{s.name} / {c.label}" for s in results for c in s.contenders if c.status == "failed"
    ] + [f"{m.name} / {c.label}" for m in memory for c in m.contenders if c.status == "failed"]
    if failed:
        print(f"FAILED contenders: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0
