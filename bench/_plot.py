"""The plot: every timed scenario's contenders as ratios to its reference, on a log axis.

One panel per scenario, one horizontal bar per contender, drawn from the reference (1x) to the
contender's ratio: left of the line is faster than the reference, right is slower. beluga_trio's
rows are blue and bold, the peers' orange, the baselines (hand-written code, trio's own) grey;
a dashed red line marks a goal where a row has one. A column on the right gives each ratio and
whether the goal is met; rows that did not run say why.

matplotlib is an optional extra (``pip install -e '.[plot]'``): it is imported only here, only
when a plot is asked for, and seen through the narrow Protocols below (the static checks run
without it). Without it, :func:`write_plot` returns the reason and draws nothing.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, cast

from bench._harness import ContenderResult, Kind, ScenarioResult

COLORS: dict[Kind, str] = {"beluga": "#1f5fbf", "peer": "#e08a2c", "baseline": "#a6a6a6"}
LEGEND: dict[Kind, str] = {
    "beluga": "beluga_trio",
    "peer": "peer library",
    "baseline": "hand-written / trio",
}
GOAL_COLOR = "#c0392b"
MET_COLOR = "#2e7d32"
TEXT_COLOR = "#333333"
TITLE = (
    "beluga_trio benchmarks: time relative to each scenario's reference (log scale, lower is"
    " faster)"
)
TICKS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)

# matplotlib, seen through the calls made here ------------------------------------------------


class Text(Protocol):
    def set_fontweight(self, weight: str) -> None: ...

    def set_color(self, color: str) -> None: ...


class Spine(Protocol):
    def set_visible(self, visible: bool) -> None: ...


class Axes(Protocol):
    def get_yaxis_transform(self) -> object:
        """x in axes coordinates (0 to 1), y in data coordinates (the rows)."""
        ...

    def barh(
        self, y: float, width: float, *, left: float, height: float, color: str, zorder: int
    ) -> object: ...

    def axvline(
        self, x: float, *, color: str, linestyle: str, linewidth: float, zorder: int
    ) -> object: ...

    def text(
        self,
        x: float,
        y: float,
        s: str,
        *,
        ha: str,
        va: str,
        fontsize: float,
        color: str,
        fontweight: str = "normal",
        transform: object = ...,
    ) -> object: ...

    def set_xscale(self, value: str) -> None: ...

    def set_xlim(self, left: float, right: float) -> object: ...

    def set_ylim(self, bottom: float, top: float) -> object: ...

    def set_xticks(
        self, ticks: Sequence[float], labels: Sequence[str] = ..., *, minor: bool = False
    ) -> object: ...

    def set_yticks(self, ticks: Sequence[float], labels: Sequence[str]) -> object: ...

    def get_yticklabels(self) -> list[Text]: ...

    def set_title(self, label: str, *, loc: str, fontsize: float, pad: float) -> object: ...

    def tick_params(self, *, axis: str, labelsize: float, length: float) -> None: ...

    def grid(self, visible: bool, *, axis: str, color: str, linewidth: float) -> None: ...

    def set_axisbelow(self, below: bool) -> None: ...

    @property
    def spines(self) -> _Spines: ...


class _Spines(Protocol):
    def __getitem__(self, key: str) -> Spine: ...


class GridSpec(Protocol):
    def __getitem__(self, key: tuple[int, int]) -> object: ...


class Figure(Protocol):
    def add_gridspec(
        self, nrows: int, ncols: int, *, height_ratios: Sequence[float], hspace: float
    ) -> GridSpec: ...

    def add_subplot(self, spec: object, *, sharex: Axes | None = None) -> Axes: ...

    def text(
        self, x: float, y: float, s: str, *, ha: str, va: str, fontsize: float, fontweight: str
    ) -> object: ...

    def subplots_adjust(self, *, left: float, right: float, top: float, bottom: float) -> None: ...

    def legend(
        self,
        handles: Sequence[object],
        labels: Sequence[str],
        *,
        loc: str,
        ncols: int,
        frameon: bool,
        fontsize: float,
        bbox_to_anchor: tuple[float, float],
    ) -> object: ...

    def savefig(self, fname: Path, *, dpi: int, bbox_inches: str) -> None: ...


class PyPlot(Protocol):
    def figure(self, *, figsize: tuple[float, float]) -> Figure: ...

    def close(self, fig: Figure) -> None: ...


class Patches(Protocol):
    def Patch(self, *, color: str) -> object: ...  # noqa: N802 - matplotlib's name


class Lines(Protocol):
    def Line2D(  # noqa: N802 - matplotlib's name
        self, xdata: Sequence[float], ydata: Sequence[float], *, color: str, linestyle: str
    ) -> object: ...


class PilImage(Protocol):
    """A ``PIL.Image.Image`` (Pillow is one of matplotlib's own dependencies)."""

    def __enter__(self) -> PilImage: ...

    def __exit__(self, *exc_info: object) -> None: ...

    def convert(self, mode: str) -> PilImage: ...

    def quantize(self, colors: int, method: int) -> PilImage: ...

    def save(self, fp: Path, *, optimize: bool) -> None: ...


class PilImageModule(Protocol):
    def open(self, fp: Path) -> PilImage: ...


FASTOCTREE = 2  # PIL.Image.Quantize.FASTOCTREE: keeps the few flat colors of a chart exact


def _compressed(source: Path, target: Path) -> bool:
    """Save ``source`` as a 256-colour PNG in ``target`` (a quarter of the bytes, the same
    picture); False, and nothing written, if Pillow cannot."""
    try:
        image = cast(PilImageModule, importlib.import_module("PIL.Image"))
        with image.open(source) as picture:
            small = picture.convert("RGB").quantize(colors=256, method=FASTOCTREE)
        small.save(target, optimize=True)
    except (ImportError, OSError, ValueError):
        return False
    return True


def _matplotlib() -> tuple[PyPlot, Patches, Lines]:
    """pyplot on the non-interactive Agg backend; ImportError if matplotlib is missing."""
    matplotlib = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    return (
        cast(PyPlot, importlib.import_module("matplotlib.pyplot")),
        cast(Patches, importlib.import_module("matplotlib.patches")),
        cast(Lines, importlib.import_module("matplotlib.lines")),
    )


# Drawing -------------------------------------------------------------------------------------

ROW_INCHES = 0.3
RATIO_X = 1.1  # the right-hand column, in axes coordinates: ratios end here
GOAL_X = 1.13  # and the goal verdicts start here
PANEL_EXTRA_INCHES = 0.75


def _ratio_text(ratio: float) -> str:
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.0f}x"


def _figure_text(value: float, unit: str) -> str:
    return f"{value:,.0f} {unit}" if value >= 100 else f"{value:.3g} {unit}"


def _label(c: ContenderResult) -> str:
    """The row's label, and where it ran when that was another environment."""
    elsewhere = [p.strip() for p in c.note.split(";") if p.strip().startswith("separate env")]
    if not elsewhere:
        return c.label
    return f"{c.label} ({elsewhere[0].split(' (')[0]})"


def _limits(results: Sequence[ScenarioResult]) -> tuple[float, float]:
    """One x range for every panel: all ratios and goals, with room for the labels."""
    values = [1.0]
    for s in results:
        values.extend(r for c in s.contenders if (r := s.ratio(c.label)) is not None)
        values.extend(c.goal for c in s.contenders if c.goal is not None)
    low, high = min(values), max(values)
    return low / 3.5, high * 3.5


def _draw_scenario(ax: Axes, s: ScenarioResult, limits: tuple[float, float]) -> None:
    rows = s.contenders
    ref = s.result(s.reference)
    ref_text = "" if ref.median is None else f", {_figure_text(s.in_unit(ref.median) or 0, s.unit)}"
    count = "runs" if s.unit == "us/run" else "N"
    ax.set_title(
        f"{s.name}  ({count}={s.items:,}; 1x = {s.reference}{ref_text})",
        loc="left",
        fontsize=10.5,
        pad=4,
    )
    column = ax.get_yaxis_transform()
    for y, c in enumerate(rows):
        ratio = s.ratio(c.label)
        beluga = c.kind == "beluga"
        weight = "bold" if beluga else "normal"
        if ratio is None:
            why = re.split(r"[:;(]", c.reason, maxsplit=1)[0].strip()
            ax.text(limits[0] * 1.1, y, f"{c.status}: {why}" if why else c.status,
                    ha="left", va="center", fontsize=8.5, color="#888888")  # fmt: skip
            ax.text(RATIO_X, y, c.status, ha="right", va="center", fontsize=9,
                    color="#888888", transform=column)  # fmt: skip
            continue
        left, right = min(ratio, 1.0), max(ratio, 1.0)
        if right / left < 1.03:  # the reference itself, or a tie: a visible sliver
            left, right = left / 1.015, right * 1.015
        ax.barh(y, right - left, left=left, height=0.64, color=COLORS[c.kind], zorder=2)
        figure = "1x (ref)" if c.label == s.reference else _ratio_text(ratio)
        ax.text(RATIO_X, y, figure, ha="right", va="center", fontsize=9, color=TEXT_COLOR,
                fontweight=weight, transform=column)  # fmt: skip
        met = s.goal_met(c.label)
        if met is not None and c.goal is not None:
            verdict = f"goal ≤ {c.goal:g}x: {'met' if met else 'MISSED'}"
            ax.text(GOAL_X, y, verdict, ha="left", va="center", fontsize=8.5,
                    color=MET_COLOR if met else GOAL_COLOR, fontweight="bold",
                    transform=column)  # fmt: skip
    for goal in sorted({c.goal for c in rows if c.goal is not None}):
        ax.axvline(goal, color=GOAL_COLOR, linestyle="--", linewidth=1.2, zorder=3)
    ax.axvline(1.0, color="#555555", linestyle="-", linewidth=0.9, zorder=3)

    ax.set_xscale("log")
    ax.set_xlim(*limits)
    ax.set_ylim(len(rows) - 0.5, -0.5)  # first row on top
    labels = [_label(c) for c in rows]
    ax.set_yticks(list(range(len(rows))), labels)
    for text, c in zip(ax.get_yticklabels(), rows, strict=True):
        if c.kind == "beluga":
            text.set_fontweight("bold")
            text.set_color(COLORS["beluga"])
    ticks = [t for t in TICKS if limits[0] <= t <= limits[1]]
    ax.set_xticks(ticks, [f"{t:g}x" for t in ticks])
    ax.set_xticks([], minor=True)
    ax.tick_params(axis="y", labelsize=9, length=0)
    ax.tick_params(axis="x", labelsize=8.5, length=3)
    ax.grid(True, axis="x", color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)


def write_plot(results: Sequence[ScenarioResult], path: Path, *, subtitle: str) -> str | None:
    """Draw the plot into ``path`` (PNG); None when done, else why it was not drawn."""
    shown = [s for s in results if s.contenders]
    if not shown:
        return "no timed scenario to plot"
    try:
        plt, patches, lines = _matplotlib()
    except ImportError as exc:
        return f"matplotlib is not installed ({exc}); pip install -e '.[plot]' to draw the plot"

    heights = [len(s.contenders) * ROW_INCHES + PANEL_EXTRA_INCHES for s in shown]
    top_inches, bottom_inches = 1.25, 0.2
    total = sum(heights) + top_inches + bottom_inches
    fig = plt.figure(figsize=(11.0, total))
    try:
        fig.subplots_adjust(
            left=0.3, right=0.8, top=1 - top_inches / total, bottom=bottom_inches / total
        )
        grid = fig.add_gridspec(len(shown), 1, height_ratios=heights, hspace=0.6)
        limits = _limits(shown)
        first: Axes | None = None
        for index, s in enumerate(shown):
            ax = fig.add_subplot(grid[index, 0], sharex=first)
            first = first or ax
            _draw_scenario(ax, s, limits)
        fig.text(0.01, 1 - 0.12 / total, TITLE, ha="left", va="top", fontsize=13,
                 fontweight="bold")  # fmt: skip
        fig.text(0.01, 1 - 0.45 / total, subtitle, ha="left", va="top", fontsize=9.5,
                 fontweight="normal")  # fmt: skip
        kinds: list[Kind] = ["beluga", "peer", "baseline"]
        handles = [patches.Patch(color=COLORS[k]) for k in kinds]
        handles.append(lines.Line2D([0], [0], color=GOAL_COLOR, linestyle="--"))
        fig.legend(
            handles,
            [*(LEGEND[k] for k in kinds), "goal (at most)"],
            loc="upper left",
            ncols=4,
            frameon=False,
            fontsize=9.5,
            bbox_to_anchor=(0.0, 1 - 0.68 / total),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        drawn = path.with_name(path.stem + ".tmp" + path.suffix)
        small = path.with_name(path.stem + ".tmp-small" + path.suffix)
        fig.savefig(drawn, dpi=110, bbox_inches="tight")
        if _compressed(drawn, small):
            small.replace(path)
            drawn.unlink()
        else:
            drawn.replace(path)
    finally:
        plt.close(fig)
    return None
