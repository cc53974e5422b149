"""Command line: ``python -m bench [--smoke] [--rounds N] [--items N] [--only S] [--json P]
[--plot P | --no-plot] [--write-docs] [--slurry-python P]``.

Timed scenarios run first, then the peak-memory scenarios (untimed, see :mod:`bench._memory`).
Then the JSON file is written, and the plot (:mod:`bench._plot`, when matplotlib is installed)
and, with ``--write-docs``, the page docs/performance.md (:mod:`bench.docs`). A smoke run or a
partial one (``--only``, ``--items``, fewer than 5 rounds) writes nothing under docs/: its plot
only where ``--plot`` says, and ``--write-docs`` is refused.

Exit status: 0 when every contender ran and computed the right result (missed goals included:
the benchmark is a report, not a test), 1 when a contender failed or computed a wrong result,
2 for a usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench import _report, _slurry, docs
from bench._calibrate import machine_costs
from bench._harness import Scenario, ScenarioResult, run_scenario, select
from bench._memory import MemoryResult, MemoryScenario, run_memory_scenario
from bench._plot import write_plot
from bench._report import (
    format_memory_table,
    format_ratio_table,
    format_table,
    to_json,
    write_json,
)
from bench.scenarios import SCENARIOS, redis

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_PLOT = docs.PLOT
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
    plot = parser.add_mutually_exclusive_group()
    plot.add_argument(
        "--plot",
        type=Path,
        metavar="PATH",
        help=(
            "where to draw the plot, a PNG (default: docs/images/benchmarks.png for a complete"
            " run; none for a smoke or partial run); needs matplotlib (extra 'plot')"
        ),
    )
    plot.add_argument("--no-plot", action="store_true", help="draw no plot")
    parser.add_argument(
        "--write-docs",
        action="store_true",
        help="also write docs/performance.md from this run (a complete run only)",
    )
    parser.add_argument(
        "--slurry-python",
        metavar="PATH",
        help=(
            "a Python with slurry installed, to run slurry's contenders in it (slurry pins"
            f" trio<0.22); default: ${_slurry.ENV_VAR}, except in a smoke run"
        ),
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
    # Complete: what the docs may show (every scenario, at its own size, enough rounds).
    complete = not smoke and args.only is None and args.items is None and rounds >= MIN_CLAIM_ROUNDS
    if args.write_docs and not complete:
        parser.error(
            "--write-docs needs a complete run: no --smoke, --only or --items, and at least"
            f" {MIN_CLAIM_ROUNDS} rounds"
        )
    uncommitted = _report.uncommitted_changes() if args.write_docs else []
    if uncommitted:
        parser.error(
            "--write-docs measures a commit, so that the page names a revision anyone can check"
            " out: commit or stash these changes first: " + ", ".join(uncommitted)
        )
    plot_path: Path | None
    if args.no_plot:
        plot_path = None
    elif args.plot is not None:
        plot_path = Path(args.plot)
    else:
        plot_path = DEFAULT_PLOT if complete else None
    _slurry.configure(
        _slurry.setting_for(args.slurry_python, os.environ.get(_slurry.ENV_VAR), smoke=smoke)
    )

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    progress("trio's basic steps on this machine (bench._calibrate)")
    costs = machine_costs(smoke=smoke)
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
    latency: list[str] = []
    if any(s is redis.SCENARIO for s in scenarios):
        progress("redis latency per event (bench.scenarios.redis.latency_report)")
        latency = redis.latency_report(50 if smoke else 2_000)
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
            "vs ref = median / the scenario's reference median; vs peer = a beluga row's median"
            " / the fastest peer's; a goal is met when vs ref <= goal; x ideal = median / the"
            " job's ideal time. Missed goals do not fail the run."
        )
        print(
            "trio's basic steps here:"
            f" checkpoint_if_cancelled() {costs['checkpoint_if_cancelled_ns']:,.0f} ns,"
            f" a lone task's checkpoint() {costs['scheduler_pass_ns']:,.0f} ns,"
            f" nursery + task {costs['nursery_and_task_ns']:,.0f} ns"
        )
        ratios = format_ratio_table(results)
        if ratios is not None:
            print("ratios derived from the medians above (lower is better)")
            print(ratios)
            print(
                "[row] = that row's median, ns per item; a ratio is met when it is <= goal; '-':"
                " a row did not run, or the denominator was not positive (lost in noise)."
            )
    for line in latency:
        print(line)
    if memory:
        kind = "smoke sizes, NOT a claim" if smoke else "one traced run per size, untimed"
        print(f"peak traced memory (tracemalloc; kB = 10^3 bytes, MB = 10^6; {kind})")
        print(format_memory_table(memory))
        print(
            "large/small = peak at the large size / peak at the small size; a goal is met when"
            " it is <= goal (memory flat in the length of the stream). Per unit (kB/opening):"
            " the peak / N, large/small per unit; vs ref = per unit at the large size / the"
            " reference's, and the goal is on vs ref."
        )

    document = to_json(
        results,
        smoke=smoke,
        rounds=rounds,
        warmup=WARMUP_ROUNDS,
        memory=memory,
        complete=complete,
        costs=costs,
    )
    write_json(json_path, document)
    print(f"results written to {json_path}")
    plotted = False  # whether the docs' plot is this run's
    if plot_path is None:
        why = "--no-plot" if args.no_plot else "a smoke or partial run; --plot PATH draws one"
        print(f"plot: not drawn ({why})")
    else:
        not_drawn = write_plot(results, plot_path, subtitle=docs.subtitle(document))
        print(f"plot: not drawn ({not_drawn})" if not_drawn else f"plot drawn in {plot_path}")
        plotted = not_drawn is None and plot_path.resolve() == docs.PLOT
    if args.write_docs:
        docs.write_page(document, docs.PAGE, plot=plotted)
        print(f"docs page written to {docs.PAGE}")

    failed = [
        f"{s.name} / {c.label}" for s in results for c in s.contenders if c.status == "failed"
    ] + [f"{m.name} / {c.label}" for m in memory for c in m.contenders if c.status == "failed"]
    if failed:
        print(f"FAILED contenders: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0
