"""The page docs/performance.md, generated from a results file (and the plot beside it).

``python -m bench --write-docs`` (what ``make bench`` runs) writes it after a complete run;
``python -m bench.docs [RESULTS.json]`` writes it again from a results file (default
bench/results/latest.json) and draws the plot from the same file, without measuring anything
(``--no-plot``: the page only). A smoke or partial results file is refused: the page shows
complete runs only.

Everything on the page comes from the results file: the table, the machine, the goals and
whether they are met. What cannot be computed (what a scenario measures, why a goal is missed)
is written here, next to the numbers it explains, which are filled in from the same file.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import cast

from bench._harness import ContenderResult, Ratio, ScenarioResult
from bench._memory import MemoryResult
from bench._plot import write_plot
from bench._report import ResultsFileError, read_json, results_from_json
from bench.scenarios import map_depth, merge_width, operators

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "performance.md"
PLOT = ROOT / "docs" / "images" / "benchmarks.png"
RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"

Costs = Mapping[str, float]

# What the results file says about the run ----------------------------------------------------


def _mapping(document: Mapping[str, object], key: str) -> Mapping[str, object]:
    value = document.get(key)
    return cast("dict[str, object]", value) if isinstance(value, dict) else {}


def _costs(document: Mapping[str, object]) -> dict[str, float]:
    costs = _mapping(document, "machine_costs")
    return {k: float(v) for k, v in costs.items() if isinstance(v, int | float)}


def _date(document: Mapping[str, object]) -> str:
    return str(document.get("timestamp", "?")).replace("T", " ").replace("+00:00", " UTC")


def _load_line(document: Mapping[str, object]) -> str:
    m = _mapping(document, "machine")
    load = m.get("load_average")
    if not isinstance(load, list) or len(cast("list[object]", load)) != 3:
        return ""
    one, _, fifteen = cast("list[float]", load)
    return (
        f" Load average at the end of the run: {one:.1f} (1 min), {fifteen:.1f} (15 min) on"
        f" {m.get('cpu_count')} CPUs; the benchmark itself accounts for about 1, the rest is"
        " other work on the machine."
    )


def _machine_line(document: Mapping[str, object]) -> str:
    m = _mapping(document, "machine")
    cpus = f"{m.get('cpu_count')} CPUs"
    if m.get("usable_cpus") not in (None, m.get("cpu_count")):
        cpus += f" ({m.get('usable_cpus')} usable)"
    python = f"{m.get('python_implementation', 'Python')} {m.get('python_version', '?')}"
    return f"{m.get('platform', '?')}, {cpus}, {python}, trio {m.get('trio_version', '?')}"


def subtitle(document: Mapping[str, object]) -> str:
    """One line under the plot's title: how many rounds, when, on what."""
    rounds = document.get("rounds", "?")
    kind = "median of" if document.get("timing_claim") else "smoke run, NOT a claim:"
    return f"{kind} {rounds} interleaved rounds; {_date(document)}; {_machine_line(document)}"


def _ns(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:,.1f} µs"
    return f"{value:,.0f} ns"


# The table -----------------------------------------------------------------------------------


def _figure(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _short_note(note: str) -> str:
    # "separate env, trio 0.21.0 (slurry ...)" is said once, in the Versions line: the table
    # stays narrow enough for a 1280-pixel screen.
    parts = [part.strip() for part in note.split(";")]
    return "; ".join("separate env" if p.startswith("separate env") else p for p in parts if p)


def _goal_cell(goal: float | None, met: bool | None) -> str:
    if goal is None:
        return ""
    return f"≤ {goal:.2f}x " + ("" if met is None else ("met" if met else "**missed**"))


def _timed_table(results: Sequence[ScenarioResult]) -> str:
    """One table per scenario, its size and unit in the heading."""
    out: list[str] = []
    for s in results:
        count = "runs" if s.unit == "us/run" else "N"
        out += [
            f"#### {s.name} ({count}={s.items:,}), {s.unit}",
            "",
            "| contender | median | min-max | vs ref | vs peer | goal | notes |",
            "|---|--:|--:|--:|--:|---|---|",
        ]
        for c in s.contenders:
            ratio = s.ratio(c.label)
            to_peer = s.ratio_to_best_peer(c.label)
            notes = [_short_note(c.note)] if c.note else []
            if c.label == s.reference:
                notes.insert(0, "reference")
            to_ideal = s.ratio_to_ideal(c.label)
            if to_ideal is not None:
                notes.insert(0, f"{to_ideal:.2f}x ideal")
            if c.status != "ok":
                notes.append(f"**{c.status}**: {c.reason}")
            label = f"**{c.label}**" if c.kind == "beluga" else c.label
            cells = [
                label,
                _figure(s.in_unit(c.median)),
                _spread(s, c).removesuffix(f" {s.unit}") if c.status == "ok" else "-",
                "-" if ratio is None else f"{ratio:.2f}x",
                "" if to_peer is None else f"{to_peer:.2f}x",
                _goal_cell(c.goal, s.goal_met(c.label)),
                "; ".join(notes),
            ]
            out.append("| " + " | ".join(_cell(x) for x in cells) + " |")
        out.append("")
        if s.ratios:
            out += ["Ratios derived from these medians ([row]: a row's median per item):", ""]
            out += [f"- {_ratio_line(s, r)}" for r in s.ratios]
            out.append("")
    return "\n".join(out).rstrip()


def _ratio_line(s: ScenarioResult, r: Ratio) -> str:
    value = s.derived(r)
    figure = "-" if value is None else f"**{value:.2f}x**"
    goal = "" if r.goal is None else f" ({_goal_cell(r.goal, s.derived_goal_met(r)).strip()})"
    # A plain ratio's label says what it divides; a ratio of increments spells its formula.
    plain = r.numerator_base is None and r.denominator_base is None
    return f"{r.label}: {figure}{goal}" + ("" if plain else f" = {r.formula}")


def _bytes(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1e3:,.0f} kB" if value < 1_000_000 else f"{value / 1e6:,.1f} MB"


def _memory_table(results: Sequence[MemoryResult]) -> str:
    """One table per scenario, its two sizes in the heading; per unit where it is measured so."""
    out: list[str] = []
    for m in results:
        small, large = m.sizes
        per = "" if m.per is None else f" {m.per}s, kB per {m.per}"
        out += [
            f"#### {m.name} (N={small:,} and {large:,}{per})",
            "",
            "| contender | small | large | large/small | vs ref | goal | notes |",
            "|---|--:|--:|--:|--:|---|---|",
        ]
        for c in m.contenders:
            growth = m.growth(c.label)
            ratio = m.ratio(c.label)
            notes = [_short_note(c.note)] if c.note else []
            if c.label == m.reference:
                notes.insert(0, "reference")
            if c.status != "ok":
                notes.append(f"**{c.status}**: {c.reason}")
            label = f"**{c.label}**" if c.label.startswith("beluga") else c.label
            cells = [
                label,
                _memory_figure(m, c.label, small),
                _memory_figure(m, c.label, large),
                "-" if growth is None else f"{growth:.2f}x",
                "" if ratio is None else f"{ratio:.2f}x",
                _goal_cell(c.goal, m.goal_met(c.label)),
                "; ".join(notes),
            ]
            out.append("| " + " | ".join(_cell(x) for x in cells) + " |")
        out.append("")
    return "\n".join(out).rstrip()


def _memory_figure(m: MemoryResult, label: str, n: int) -> str:
    if m.per is None:
        return _bytes(m.result(label).peak_bytes.get(n))
    per_unit = m.per_unit(label, n)
    return "-" if per_unit is None else f"{per_unit / 1e3:,.2f}"


# Why a goal is missed, or a peer is faster ---------------------------------------------------
# Each explanation gets the scenario's results and the machine's costs, and says what limits
# the row, with the numbers of this run. Keyed by (scenario name, contender label).

Explain = Callable[[ScenarioResult, Costs], str]


def _per_item(s: ScenarioResult, label: str) -> float:
    return s.result(label).median or 0.0


def _cancellation_check(c: Costs) -> str:
    cost = c.get("checkpoint_if_cancelled_ns")
    return "" if cost is None else f" (`checkpoint_if_cancelled()`: {_ns(cost)} on this machine)"


def _inline_open(s: ScenarioResult, c: Costs) -> str:
    ref = _per_item(s, "async-gen chain (hand-written)")
    mine = _per_item(s, "beluga open() + async for")
    collect = _per_item(s, "beluga .collect()")
    check = c.get("checkpoint_if_cancelled_ns")
    gap = f"The gap is {_ns(mine - ref)} per item"
    if check:
        gap += f", {(mine - ref) / check:.1f} times that check"
    return (
        "every `anext` of an opened stream is a cancellation point by contract"
        f"{_cancellation_check(c)}, and goes through the stream's iterator; the hand-written"
        f" chain has no cancellation point at all. {gap}. The same fused stages consumed by"
        f" `.collect()` take {_ns(collect)} per item ({collect / ref:.2f}x): the stages are"
        " not the cost, the item-by-item protocol is."
    )


def _buffer_open(s: ScenarioResult, c: Costs) -> str:
    ref = _per_item(s, "hand-written channel(64), nowait")
    floor = _per_item(s, "hand-written channel(64), nowait, async for")
    mine = _per_item(s, "beluga .buffer(64) open() + async for")
    return (
        "the reference drains the channel in a tight `receive_nowait` loop, with no `anext`"
        " and no cancellation point per item; an item-by-item consumer pays both"
        f"{_cancellation_check(c)}. The hand-written consumer that does the same"
        f" (`nowait, async for`, {floor / ref:.2f}x) is the floor for this row; beluga is"
        f" {mine / floor:.2f}x that floor. Use `.collect()`/`.reduce()`/`.for_each()` (which"
        " take ready items in a batch) where item-by-item control is not needed."
    )


def _producer_peer(s: ScenarioResult, c: Costs) -> str:
    passes = c.get("scheduler_pass_ns")
    mine = _per_item(s, "beluga @stream .collect()")
    bound = (
        ""
        if passes is None
        else f": two lone `checkpoint()`s take {_ns(2 * passes)} here, beluga {_ns(mine)} per item"
    )
    return (
        "trio-util's `trio_async_generator` runs one item ahead: its producer computes the next"
        " item before the consumer asks for it, so producer and consumer overlap. beluga's"
        " `@stream` is strictly lock-step (the body runs only when an item is asked for, so it"
        " never computes an item no one takes), and a lock-step hand-over between two tasks"
        f" costs at least two scheduler passes per item{bound}."
    )


def _first_item_stream(s: ScenarioResult, c: Costs) -> str:
    turn = c.get("scheduler_pass_ns")
    nursery = c.get("nursery_and_task_ns")
    costs = (
        ""
        if turn is None or nursery is None
        else f" (a turn takes {_ns(turn)} here; a nursery and a task that returns at once,"
        f" {_ns(nursery)})"
    )
    mine = s.in_unit(_per_item(s, "beluga @stream ... .first()")) or 0.0
    taskless = s.in_unit(_per_item(s, "beluga from_iterable ... .first()")) or 0.0
    return (
        "the peers' 5-stage chains run no task; beluga's `@stream` runs its producer in its own"
        " task, in a nursery, so each run starts the task, has the first item handed over,"
        " then cancels the task and leaves the nursery: six turns of trio's run loop per run"
        f" (counted with cProfile), where a taskless chain needs none{costs}; {mine:.3g} µs per"
        " run in all. That task is what lets the body hold cancel scopes and nurseries across"
        f" `yield`. Without a task, `from_iterable` takes {taskless:.3g} µs per run, faster"
        " than every peer."
    )


def _concurrent_map_peer(s: ScenarioResult, c: Costs) -> str:
    mine = s.result("beluga .map(io, concurrency=50).collect()")
    return (
        "both wait on the same simulated I/O (5 ms per call, 50 at once); the job is bounded by"
        " the waits, and the difference is within the spread of the rounds (beluga"
        f" {_figure(s.in_unit(mine.fastest))}-{_figure(s.in_unit(mine.slowest))} {s.unit})."
    )


def _sse_stream(s: ScenarioResult, c: Costs) -> str:
    sync = s.result("beluga sse_response (sync)").median
    mine = s.result("beluga sse_response").median
    ref = s.result(s.reference).median
    floors = [x.median for x in s.contenders if x.label == "Starlette over a lock-step task"]
    floor = floors[0] if floors else None
    turn = c.get("scheduler_pass_ns")
    if sync is None or mine is None or ref is None:
        return "not measured in this run."
    checkpoint = "" if turn is None else f"; a lone task's checkpoint costs {_ns(turn)} here"
    return (
        f"the serving layer alone (the sync row) costs {_figure(s.in_unit(sync))} {s.unit}"
        f" against the reference's {_figure(s.in_unit(ref))}; the `@bt.stream` source adds"
        f" {_figure(s.in_unit(mine - sync))} {s.unit} per event: its producer runs in a task"
        f" of its own and hands each item over lock-step (two task switches{checkpoint}),"
        " which the reference's plain async generator, iterated in the response's own task,"
        " does not pay"
        + (
            "."
            if floor is None
            else f"; the same reference over a hand-written lock-step task, the floor of that"
            f" contract, costs {_figure(s.in_unit(floor))} {s.unit}, beluga"
            f" {mine / floor:.2f}x of it."
        )
    )


def _flat_map_openings(s: ScenarioResult, c: Costs) -> str:
    contender = next(x for x in s.contenders if x.label.startswith("beluga flat_map"))
    mine = _per_item(s, contender.label)
    ref = _per_item(s, s.reference)
    size = operators.FLAT_MAP_SIZES[s.name]
    return (
        f"inner streams of {size} item{'s' if size > 1 else ''}: beluga spends"
        f" {_ns((mine - ref) * size)} more per inner stream than the hand-written async"
        " generator does. An inner stream is a real opening: `fn` builds a `Stream`, which is"
        " checked; it is opened in a scope of its own and stopped before the next item's"
        " stream opens (its cleanup has run), and its end is signalled so that a"
        " `StopIteration` from user code cannot end it silently. Its items then pass in"
        " chunks at C speed, cheaper per item than a generator step, which amortises the"
        " opening over longer inner streams (the row 'flat_map, inner streams of 100')."
    )


EXPLANATIONS: dict[tuple[str, str], Explain] = {
    ("flat_map", "beluga flat_map"): _flat_map_openings,
    ("flat_map, inner streams of 1", "beluga flat_map, inner streams of 1"): _flat_map_openings,
    ("SSE server", "beluga sse_response"): _sse_stream,
    ("inline chain", "beluga open() + async for"): _inline_open,
    ("buffer(64)", "beluga .buffer(64) open() + async for"): _buffer_open,
    ("producer hand-off", "beluga @stream .collect()"): _producer_peer,
    ("producer hand-off", "beluga @stream open() + async for"): _producer_peer,
    ("time to first item, 5 stages", "beluga @stream ... .first()"): _first_item_stream,
    ("concurrent map over I/O", "beluga .map(io, concurrency=50).collect()"): _concurrent_map_peer,
}


def _merge_width(s: ScenarioResult, c: Costs) -> str:
    narrow, widest = merge_width.WIDTHS[0], merge_width.WIDTHS[-1]
    wide = _per_item(s, merge_width.beluga_label(widest))
    base = _per_item(s, merge_width.beluga_label(narrow))
    task = c.get("nursery_and_task_ns")
    starts = ""
    if task:
        share = (widest - narrow) * task / s.items
        starts = (
            f" Starting a task per source accounts for some {_ns(share)} of that: {widest:,}"
            f" task starts over {s.items:,} items, at {_ns(task)} for a nursery and a task here."
        )
    return (
        f"beluga's merge costs {_ns(wide)} per item at {widest:,} sources and {_ns(base)} at"
        f" {narrow}, {_ns(wide - base)} more.{starts} The rest is not explained yet."
    )


def _map_depth(s: ScenarioResult, c: Costs) -> str:
    deepest = map_depth.DEPTHS[-1]

    def b(d: int) -> float:
        return _per_item(s, map_depth.beluga_label(d))

    def cc(d: int) -> float:
        return _per_item(s, map_depth.c_label(d))

    first_extra = (b(1) - b(0)) - (cc(1) - cc(0))
    later_b = (b(deepest) - b(1)) / (deepest - 1)
    later_c = (cc(deepest) - cc(1)) / (deepest - 1)
    later = "" if later_c <= 0 else f" ({later_b / later_c:.2f}x)"
    return (
        "each fused stage is a bare C `map` over the previous one, as in the C chain, but a"
        " chain that ends with a `map` has each result checked for a stray awaitable as it"
        " leaves the chain (a `type()` per item, once per chain whatever its depth), which"
        f" depth 0 does not pay. In this run the first stage costs beluga {_ns(first_extra)}"
        f" per item more than it costs the C chain; each further stage {_ns(later_b)} against"
        f" {_ns(later_c)}{later}."
    )


RATIO_EXPLANATIONS: dict[tuple[str, str], Explain] = {
    ("merge by width", "beluga: 1,000 sources / 2 sources, per item"): _merge_width,
    ("fused map depth", "beluga / C, per stage at depth 8"): _map_depth,
}


def _spread(s: ScenarioResult, c: ContenderResult) -> str:
    return f"{_figure(s.in_unit(c.fastest))}-{_figure(s.in_unit(c.slowest))} {s.unit}"


def _why(s: ScenarioResult, c: ContenderResult, costs: Costs) -> str:
    explain = EXPLANATIONS.get((s.name, c.label))
    if explain is not None:
        return explain(s, costs)
    ratio = s.ratio(c.label)
    if c.goal is not None and ratio is not None and ratio <= c.goal * 1.1:
        ref = s.result(s.reference)
        return (
            f"within 10% of the goal, and this run's rounds spread {_spread(s, c)} (the"
            f" reference's {_spread(s, ref)}): a ratio this close can fall on either side"
            " from one run to the next; several runs tell."
        )
    return "not explained yet."


def _goals(results: Sequence[ScenarioResult], memory: Sequence[MemoryResult], costs: Costs) -> str:
    said: set[str] = set()

    def why(s: ScenarioResult, c: ContenderResult) -> str:
        text = _why(s, c, costs)
        if text in said:
            return "as above."
        said.add(text)
        return text

    met: list[str] = []
    missed: list[str] = []
    for s in results:
        for c in s.contenders:
            ok = s.goal_met(c.label)
            ratio = s.ratio(c.label)
            if ok is None or ratio is None or c.goal is None:
                continue
            line = f"{s.name}, `{c.label}`: {ratio:.2f}x the reference (goal ≤ {c.goal:.2f}x)"
            if ok:
                met.append(f"- {line}.")
            else:
                missed.append(f"- **{line}**: {why(s, c)}")
        for r in s.ratios:
            ok = s.derived_goal_met(r)
            value = s.derived(r)
            if ok is None or value is None or r.goal is None:
                continue
            line = f"{s.name}, {r.label}: {value:.2f}x (goal ≤ {r.goal:.2f}x)"
            if ok:
                met.append(f"- {line}.")
            else:
                explain = RATIO_EXPLANATIONS.get((s.name, r.label))
                text = "not explained yet." if explain is None else explain(s, costs)
                missed.append(f"- **{line}**: {text}")
    for m in memory:
        for mc in m.contenders:
            ok = m.goal_met(mc.label)
            growth = m.growth(mc.label)
            ratio = m.ratio(mc.label)
            if ok is None or growth is None or mc.goal is None:
                continue
            small, large = m.sizes
            if m.per is not None and ratio is not None:
                line = (
                    f"{m.name}, `{mc.label}`: at {large:,} {m.per}s held at once,"
                    f" {ratio:.2f}x the reference's memory per {m.per} (goal ≤ {mc.goal:.2f}x)"
                )
            else:
                line = (
                    f"{m.name}, `{mc.label}`: peak at {large:,} items / at {small:,} ="
                    f" {growth:.2f}x (goal ≤ {mc.goal:.2f}x: flat)"
                )
            (met if ok else missed).append(f"- {line}." if ok else f"- **{line}**.")

    peers: list[str] = []
    slower: list[str] = []
    for s in results:
        peer = s.best_peer()
        if peer is None or peer.median is None:
            continue
        for c in s.contenders:
            to_peer = s.ratio_to_best_peer(c.label)
            if to_peer is None:
                continue
            line = f"{s.name}, `{c.label}`: {to_peer:.2f}x the fastest peer ({peer.label})"
            if to_peer < 1.0:
                close = ""
                if to_peer > 0.9:
                    close = (
                        f": close, the rounds spread {_spread(s, c)} against the peer's"
                        f" {_spread(s, peer)}"
                    )
                peers.append(f"- {line}{close}.")
            else:
                slower.append(f"- **{line}**: {why(s, c)}")

    out = ["### Against the reference", "", "Met:", "", *met, ""]
    out += ["Missed:", "", *(missed or ["- none."]), ""]
    out += ["### Faster than every peer, on every scenario the peer supports", ""]
    out += ["Faster:", "", *(peers or ["- none."]), ""]
    out += ["Not faster:", "", *(slower or ["- none."])]
    return "\n".join(out)


# What each scenario measures -----------------------------------------------------------------

SCENARIO_TEXT: dict[str, str] = {
    "inline chain": (
        "A source and three cheap synchronous `map` stages over `range(N)`, collected. The"
        " reference is the floor of async code: plain async generators, one per stage,"
        " consumed by an async comprehension, with no cancellation point at all. beluga is"
        " measured twice: `.collect()` (a terminal operation, which takes items in batches) and"
        " `open()` + `async for` (item by item). The peers do the same three maps: asyncstdlib"
        " `a.map` on trio, aiostream `map` on asyncio, slurry `Map` sections (a task each)."
    ),
    "producer hand-off": (
        "An async generator body that yields `range(N)` and never awaits runs in its own task;"
        " every item crosses to the consumer. The reference is `trio.as_safe_channel`, trio's"
        " own lock-step wrapper. beluga's `@stream` is lock-step too; trio-util's"
        " `trio_async_generator` runs one item ahead."
    ),
    "buffer(64)": (
        "A task reads `range(N)` ahead into a 64-item buffer; the consumer takes every item."
        " The reference is the best hand-written code: a producer task and"
        " `trio.open_memory_channel(64)` with the nowait fast paths on both sides (`send_nowait`"
        " first; the consumer drains with `receive_nowait`). Two more hand-written rows show"
        " the naive version (`await send` / `async for`) and an item-by-item consumer of the"
        " same fast channel whose `__anext__` makes the cancellation check beluga's `anext`"
        " makes: the floor for `open()` + `async for`."
    ),
    "merge(3)": (
        "Three synchronous sources of N/3 items each, read at once, items in arrival order,"
        " all collected. The reference: a nursery with three producer tasks and one memory"
        " channel(64), nowait fast paths; the naive version for comparison. Peers: aiostream"
        " `stream.merge` on asyncio, slurry `Merge`. The check accepts any interleaving that"
        " keeps each source's order."
    ),
    "fan_out(3)": (
        "One source read once; each of three consumer tasks sums every item. The reference:"
        " a distributor task and three memory channels(1024) (the same buffer as `fan_out`'s"
        " default) with the nowait fast paths; also channels(64) and the naive version. Peers:"
        " asyncstdlib `tee(n=3)` with a lock and a task per consumer, and slurry's `tap()` x3,"
        " which starts a task per item per tap, with no backpressure (its interpreter grows to"
        " about 2 GB at N=200,000)."
    ),
    "merge by width": (
        "`range(N)` cut into 2, 100 and 1,000 synchronous sources, read at once, all collected,"
        " in one scenario so that every width runs in the same interleaved rounds; the figure"
        " is per item of the whole job (a task per source included), so the widths compare"
        " directly. Hand-written: a nursery, a producer task per source and one memory"
        " channel(64) with the nowait fast paths, as in merge(3); beluga: `bt.merge(*sources)`"
        " (buffer 64) `.collect()`. The ratios give each one's growth from 2 to 1,000 sources"
        " (goal for beluga: ≤ 2x) and beluga against the hand-written code at each width"
        " (goal: ≤ 1x)."
    ),
    "fan_out by consumers": (
        "N deliveries (an item seen by one consumer): with C = 1, 10 or 100 consumers the"
        " source is `range(N // C)` and every consumer task sums every item; the figure is per"
        " delivery, so the widths compare directly. Hand-written: a distributor task and one"
        " memory channel(1024) per consumer with the nowait fast paths, as in fan_out(3);"
        " beluga: `bt.fan_out(source, *consumers)` with its default buffer of 1024, each"
        " consumer `view.reduce(operator.add, 0)`. The ratios give each one's growth from 1"
        " to 100 consumers and beluga against the hand-written code at each width (no goal"
        " set yet)."
    ),
    "fused map depth": (
        "`from_iterable(range(N))` and D synchronous `.map(abs)` stages, collected, for D = 0,"
        " 1, 2, 4, 8, against a bare C chain of the same depth, `list(map(abs, map(abs, ..."
        " range(N))))` (`abs` of a non-negative int returns it: no allocation, so a C stage"
        " costs little more than `map`'s own step). The per-stage figure is a ratio of"
        " increments over depth 0, (beluga(D) - beluga(0)) / (C(D) - C(0)): what D stages"
        " cost beluga over what they cost the C chain, averaged over the D stages. The goal,"
        " ≤ 1.1x, is on D = 8 (the largest increments, the least noise); the reference row"
        " is the C chain at depth 8."
    ),
    "concurrent map over I/O": (
        "M calls of an async function that awaits `sleep(5 ms)` on the real clock, at most 50"
        " at once, results in input order. The ideal is M x 5 ms / 50; `x ideal` is each"
        " contender's time over it. The reference: a nursery with a task per call and a"
        " `trio.Semaphore(50)`. Peer: aiostream `map(..., task_limit=50)` on asyncio."
    ),
    "SSE server": (
        "N server-sent events streamed to one client over loopback under hypercorn's trio"
        " worker; the figure is the server process's CPU time per event (the client is not"
        " counted). The reference: Starlette's `StreamingResponse` over a plain async"
        " generator of the same bytes. beluga: `beluga_trio.web.sse_response` with its"
        " defaults (disconnect watcher, heartbeat task, JSON encoding) over a `@bt.stream`"
        " generator, and over a sync source (the serving layer alone). The floor of a strictly"
        " lock-step producer task: the reference over a hand-written two-task hand-off."
    ),
    "concurrent map at scale, C=100": (
        "M calls of an async function that awaits `sleep(1 ms)` on the real clock, at most 100"
        " at once. At this latency the loop is CPU-bound (the ideal, M x 1 ms / 100, is out of"
        " reach for every contender), so the figure is the cost of the machinery per call:"
        " beluga's `map(concurrency=100)`, ordered and unordered, against a nursery with a task"
        " per call and a `trio.Semaphore(100)`. beluga runs the calls in a pool of worker tasks"
        " that take the next item themselves: no task start per item."
    ),
    "concurrent map at scale, C=1,000": (
        "The same at concurrency 1,000 (default window 2,000). The consumer takes at most a few"
        " hundred results per turn of the run loop (a schedule point every 256 items), so the"
        " window fills and workers wait for room: each such wait is one more task switch."
    ),
    "time to first item, 5 stages": (
        "Build a producer and five synchronous `map` stages, take the first item, stop"
        " everything; many runs in one event loop, microseconds per run. The reference: a"
        " chain of plain async generators closed with `aclose` (no task). beluga's `@stream`"
        " runs its producer in a task; `from_iterable` does not; `trio.as_safe_channel` under"
        " the same chain shows what a task costs elsewhere."
    ),
    "LLM stream": (
        "One streamed chat reply of N OpenAI-format chunks from a loopback server in a process"
        " of its own, which writes each event as its own HTTP chunk, the way ASGI servers"
        " stream. Every contender sends the request, decodes every chunk's JSON and joins the"
        " text. The reference is a hand-written loop: an httpx2 client, httpx-sse's decoder and"
        " `json.loads` per event. beluga: `OpenAIChatModel(...).stream(...)` with `.collect()`"
        " and with `open()` + `async for` (its producer hands over, in one task switch, every"
        " chunk the HTTP layer has already received). Peer: the official `openai` SDK"
        " (`AsyncOpenAI`, on trio). All share one SSL context, built once per process."
    ),
    "peak memory, slow consumer": (
        "A fan-out of `range(N)` to two summing consumers, one of which passes a schedule point"
        " every 4 items and lags. The peak memory Python allocates during the job (tracemalloc,"
        " untimed) at 100k and at 1M items: a bounded fan-out stays flat; asyncstdlib `tee`"
        " keeps every item the slow consumer has not seen yet."
    ),
    "memory per opening": (
        "N openings of a producer held open at once (one after the other in one task, with an"
        " `AsyncExitStack`), each having handed over its first item, then all closed: the"
        " peak memory Python allocates during the job (tracemalloc, untimed) divided by N, at"
        " 1,000 and 10,000 openings. Every producer body is the same async generator that"
        " never awaits. The reference: an async context manager with a nursery, a producer"
        " task and a memory channel(0) (lock-step, as `@stream`); trio's `as_safe_channel` on"
        " the same body for comparison; beluga: `@bt.stream` `open()`. The goal is on the"
        " cost per opening at 10,000 against the reference's (≤ 1.1x); large/small says"
        " whether that cost stays flat."
    ),
}


def _scenarios(results: Sequence[ScenarioResult], memory: Sequence[MemoryResult]) -> str:
    out: list[str] = []
    for s in results:
        out += [f"### {s.name}", "", SCENARIO_TEXT.get(s.name, s.description), ""]
        out.append(f"Reference: {s.reference}.")
        if s.ideal_note:
            out.append(f"Ideal: {s.ideal_note}.")
        out.append("")
    for m in memory:
        out += [f"### {m.name}", "", SCENARIO_TEXT.get(m.name, m.description), ""]
    return "\n".join(out).rstrip()


def _skipped(results: Sequence[ScenarioResult], memory: Sequence[MemoryResult]) -> str:
    reasons: dict[str, set[str]] = {}
    for s in results:
        for c in s.contenders:
            if c.status != "ok":
                reasons.setdefault(f"{c.status}: {c.reason}", set()).add(c.label)
    for m in memory:
        for mc in m.contenders:
            if mc.status != "ok":
                reasons.setdefault(f"{mc.status}: {mc.reason}", set()).add(mc.label)
    if not reasons:
        return "Every contender ran."
    return "\n".join(
        f"- {', '.join(f'`{x}`' for x in sorted(labels))}: {why.rstrip('.')}."
        for why, labels in reasons.items()
    )


def _separate_envs(results: Sequence[ScenarioResult]) -> list[str]:
    notes = {
        part.strip()
        for s in results
        for c in s.contenders
        if c.status == "ok"
        for part in c.note.split(";")
        if part.strip().startswith("separate env")
    }
    return sorted(notes)


# The page ------------------------------------------------------------------------------------

WIDTH = 100


def _wrap(text: str, first: str, rest: str) -> list[str]:
    return textwrap.wrap(
        text,
        width=WIDTH,
        initial_indent=first,
        subsequent_indent=rest,
        break_long_words=False,
        break_on_hyphens=False,
    )


def _reflow(markdown: str) -> str:
    """Paragraphs and list items wrapped at WIDTH; headings, tables, code, images untouched."""
    out: list[str] = []
    fenced = False
    item: list[str] = []  # the lines of the paragraph or list item being gathered

    def flush() -> None:
        if item:
            text = " ".join(line.strip() for line in item)
            if text.startswith("- "):
                out.extend(_wrap(text[2:], "- ", "  "))
            else:
                out.extend(_wrap(text, "", ""))
            item.clear()

    for line in markdown.splitlines():
        if line.startswith("```"):
            flush()
            fenced = not fenced
            out.append(line)
        elif fenced or line.startswith(("#", "|", "<!--", "     ", "![")) or not line.strip():
            flush()
            out.append(line)
        elif line.startswith("- "):
            flush()
            item.append(line)
        else:
            item.append(line)
    flush()
    return "\n".join(out) + "\n"


def _revision_text(machine: Mapping[str, object]) -> str:
    """Which code was measured: a commit, or (a run made before `make bench` refused to write
    the page from uncommitted code) a commit and changes no one else can check out."""
    revision = str(machine.get("git_revision") or "?")
    uncommitted = machine.get("git_uncommitted")
    dirty = revision.endswith("-dirty") or bool(uncommitted)
    revision = revision.removesuffix("-dirty")
    if not dirty:
        return f"at git revision `{revision}`"
    return (
        f"on git revision `{revision}` with uncommitted changes, so not exactly that revision's"
        " code: `make bench` on a clean checkout replaces this run with one tied to a commit"
    )


def render(document: Mapping[str, object], *, plot: bool = True) -> str:
    """The page for a results document."""
    results, memory = results_from_json(document)
    costs = _costs(document)
    m = _mapping(document, "machine")
    packages = _mapping(m, "packages")
    versions = ", ".join(
        f"{name} {version or '(not installed)'}"
        for name, version in packages.items()
        if name != "trio"
    )
    envs = _separate_envs(results)
    versions += "; slurry: " + ("; ".join(envs) if envs else "not run (see below)")
    cost_line = "not measured in this run."
    if costs:
        cost_line = (
            "measured in the same run:"
            f" `checkpoint_if_cancelled()` {_ns(costs.get('checkpoint_if_cancelled_ns', 0))};"
            " one turn of trio's run loop (a lone task's `checkpoint()`)"
            f" {_ns(costs.get('scheduler_pass_ns', 0))}; a nursery and a task that returns at"
            f" once {_ns(costs.get('nursery_and_task_ns', 0))}."
        )
    rounds = document.get("rounds", "?")
    warmup = document.get("warmup_rounds", 1)
    head = f"""# Performance

<!-- Generated by `python -m bench --write-docs` (`make bench`) from bench/results/latest.json.
     Do not edit: change bench/docs.py and run `python -m bench.docs`. -->

beluga_trio is measured against the hand-written trio code it replaces and against its peers,
all in one run: every scenario's contenders take turns, round after round, and each figure is
the median of the rounds. Lower is better everywhere.

## The latest run

- **When:** {_date(document)}, {_revision_text(m)}.
- **Machine:** {_machine_line(document)}.{_load_line(document)}
- **Method:** median of {rounds} interleaved rounds after {warmup} discarded warm-up round;
  each measurement in a fresh `trio.run` (or `asyncio.run`), only the job timed, the garbage
  collector on, every result checked.
- **Versions:** {versions}.
- **trio's basic steps:** {cost_line}
"""
    plot_md = (
        "![Each scenario's contenders as ratios to its reference, log scale](images/benchmarks.png)"
        "\n\nThe plot shows, for each scenario, every contender's time divided by the"
        " reference's (1x, the solid line), on a log scale: bars to the left are faster than"
        " the reference, to the right slower. beluga_trio's rows are blue, the peers' orange,"
        " hand-written code and trio's own grey; a dashed red line is a goal. The right-hand"
        " column gives the ratio and whether the goal is met.\n"
        if plot
        else ""
    )
    table = f"""## Results

{plot_md}
### Time

{_timed_table(results)}

`median`: per item (per run for "us/run"), in the unit of the heading; `min-max`: the fastest
and the slowest round. `vs ref`: median / the reference's median. `vs peer`: a beluga row's
median / the fastest peer's in the scenario (below 1.00x: faster than every peer). `goal`: the
largest `vs ref` the row may show, and whether this run met it. "separate env": run in an
interpreter of its own (see Versions above).

### Peak memory

{_memory_table(memory)}

### Contenders that did not run

{_skipped(results, memory)}
"""
    reading = _reading(costs)
    reproduce = """## How to reproduce

```console
make bench        # the full run, about 9 minutes on 2 cores (slurry's rows add about 8):
                  # the table, bench/results/latest.json, docs/images/benchmarks.png, this page
make bench-smoke  # seconds: tiny sizes, proves the benchmark works (CI); writes only
                  # bench/results/smoke.json, never a claim
```

`make bench` runs `python -m bench --write-docs` in `.venv` with the extras `bench` (the
peers) and `plot` (matplotlib). `python -m bench --help` lists the options (`--only`,
`--rounds`, `--items`, `--plot PATH`, `--no-plot`, `--json PATH`); `python -m bench.docs`
rewrites this page and the plot from `bench/results/latest.json` without measuring.

slurry requires `trio<0.22`, so it cannot share an environment with beluga_trio (trio 0.30+):
it runs only when given an interpreter of its own, and its rows are marked "separate env":

```console
python3 -m venv /tmp/slurry-venv && /tmp/slurry-venv/bin/pip install slurry
BELUGA_BENCH_SLURRY_PYTHON=/tmp/slurry-venv/bin/python make bench
```
"""
    parts = [
        head,
        table,
        "## Goals\n\n" + _goals(results, memory, costs) + "\n",
        reading,
        "## What each scenario measures\n\n" + _scenarios(results, memory) + "\n",
        reproduce,
    ]
    return _reflow("\n".join(parts).rstrip())


def _reading(costs: Costs) -> str:
    check = costs.get("checkpoint_if_cancelled_ns")
    passes = costs.get("scheduler_pass_ns")
    nursery = costs.get("nursery_and_task_ns")
    check_text = f", {_ns(check)} on this machine" if check else ""
    passes_text = (
        f" (each pass is a turn of trio's run loop; a lone task's `checkpoint()` takes"
        f" {_ns(passes)} here, two {_ns(2 * passes)})"
        if passes
        else ""
    )
    nursery_text = f" ({_ns(nursery)} here for a task that returns at once)" if nursery else ""
    return f"""## Reading these numbers

- **Medians of interleaved rounds.** Each round runs every contender once, in an order that
  rotates from round to round, so a slow moment of the machine falls on all of them; the
  figure is the median of the rounds (`min-max` in the table: the fastest and the slowest round;
  bench/results/latest.json keeps every one). On a machine shared with other work, rounds still
  spread by several percent: a ratio within a few percent of its goal can fall on either side
  from one run to the next.
- **Ratios carry over from machine to machine; absolute times do not.** A faster CPU makes
  every row faster; what a row costs relative to the hand-written reference changes much less.
  Compare ratios, not nanoseconds.
- **Item by item, a beluga stream can always be cancelled.** Every `anext` of an opened
  stream calls `trio.lowlevel.checkpoint_if_cancelled()`{check_text}, by contract: a consumer
  stuck on a stream that never waits can still be cancelled. A hand-written chain of async
  generators has no cancellation point at all, so it cannot be cancelled until it ends. That
  check is most of the gap between `open()` + `async for` and the hand-written floor; the
  buffer(64) scenario has a hand-written row, "nowait, async for", that makes the same check,
  to compare with. Terminal operations (`.collect()`, `.reduce()`, `.for_each()`, `fan_out`'s
  consumers) take items in batches and pay it far less often.
- **A lock-step producer costs at least two scheduler passes per item.** `@stream` runs its
  body in its own task and only when an item is asked for: the consumer wakes the producer,
  the producer hands the item back; that is two passes through trio's scheduler per item
  whatever the implementation{passes_text}. A producer that runs ahead (trio-util) can be
  faster, at the price of computing items no one asked for.
- **Time to first item of a `@stream` includes starting a task and a nursery**{nursery_text},
  handing the first item over and stopping them: six turns of trio's run loop per run. A stream
  built on `from_iterable` starts no task.
- **Peak memory is traced, not timed.** tracemalloc slows allocation several times over, so
  those runs are apart and never in the time table; the measure is the growth from 100k to
  1M items, not the absolute bytes, or, for memory per opening, the bytes per opening against
  the hand-written code's, N openings held at once.
"""


def write_page(document: Mapping[str, object], path: Path = PAGE, *, plot: bool = True) -> None:
    """Write the page for ``document`` atomically; ``plot``: show docs/images/benchmarks.png."""
    text = render(document, plot=plot)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.docs",
        description="Write docs/performance.md (and the plot) from a results file.",
    )
    parser.add_argument(
        "results",
        nargs="?",
        type=Path,
        default=RESULTS,
        help="a results file of a complete run (default: bench/results/latest.json)",
    )
    parser.add_argument("--no-plot", action="store_true", help="write the page only")
    args = parser.parse_args(argv)
    path = Path(args.results)
    try:
        document = read_json(path)
        results, _ = results_from_json(document)
    except (OSError, ResultsFileError) as exc:
        print(f"cannot read {path}: {exc}", file=sys.stderr)
        return 1
    if document.get("mode") != "full" or not document.get("complete"):
        print(
            f"{path} is not from a complete run (smoke, --only, --items or too few rounds):"
            " the docs show complete runs only",
            file=sys.stderr,
        )
        return 1
    plot = PLOT.exists()  # with --no-plot: the plot already there, if any
    if not args.no_plot:
        not_drawn = write_plot(results, PLOT, subtitle=subtitle(document))
        print(f"plot: not drawn ({not_drawn})" if not_drawn else f"plot drawn in {PLOT}")
        plot = not_drawn is None
    write_page(document, plot=plot)
    print(f"docs page written to {PAGE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
