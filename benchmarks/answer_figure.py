"""The answer tables as a figure: question accuracy against seconds per question, a point a cell.

`answer_tables` builds the points from the same summaries its tables print (accuracy, its 95 %
bootstrap interval and the mean seconds per question of each cell) and writes the figure next to
the docs (`docs/results/figures/answers-TIER.svg`) whenever it writes the tables. One panel per
benchmark file with answers (P-2, All-2, P-3, All-3 in that order); a point's colour is its base
model, its shape whether it answers in one call (a monolith), with the Comp-LLM pipeline, or with
one of the pipeline's variants (other expert choices), and a text label names its column.

matplotlib (the `[eval]` extra) is imported inside the functions that draw, so that the tables
are written without it; those functions raise `ModuleNotFoundError` when it is missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.backend_bases import RendererBase
    from matplotlib.figure import Figure
    from matplotlib.text import Annotation
    from matplotlib.transforms import Bbox

PANELS = ("P-2", "All-2", "P-3", "All-3")
"""Panel order, two a row: the two-part files above the three-part ones, P- beside All-."""
MONOLITHS = frozenset({"monolith", "monolith-unprompted", "ft"})
"""Systems that answer the whole question in one call."""
KINDS = {
    "monolith": ("s", "monolith (whole question, one call)"),
    "compllm": ("o", "Comp-LLM (decomposer, router, experts)"),
    "variant": ("^", "pipeline variant (other expert choice)"),
}
"""Marker and legend text of each kind of system."""
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
"""Base-model colours, given in the order the models first appear among the points."""
LOG_SPREAD = 10.0
"""The x axis turns logarithmic when the slowest point is this many times the fastest."""
SVG_SALT = "compllm-graph answers figure"
"""Fixed `svg.hashsalt`: the SVG's element ids, hence its bytes, do not change between runs."""
DISTANCES = (5.0, 14.0, 26.0)
"""A label's offsets from its point (points): beside it first, then further off with a leader."""
LABEL_WEIGHT, OUTSIDE_WEIGHT = 10.0, 4.0
"""How much worse than covering a marker or a bar it is to cover a label, or to leave the panel."""
RING_COST = 150.0
"""Cost (square pixels covered) of each step away from the point: a label beside its point that
crosses a bar or two reads better than one far off at the end of a leader."""
CLEARANCE, AMBIGUOUS_COST = 6.0, 400.0
"""A label must be this many pixels nearer its own point than any other, or it could name
either: such a spot costs more than moving two rings out."""


@dataclass(frozen=True)
class Point:
    """One cell of the tables: a system on one benchmark file with one base model.

    Attributes:
        benchmark: The benchmark file's label (`P-2`, `All-3`, ...): the point's panel.
        label: The system's column label (`monolith SmolLM2-135M`).
        model: The base model's short name (the point's colour).
        system: The `compllm eval answers` system (the point's shape).
        accuracy: Question accuracy, %.
        low: The low end of its 95 % bootstrap interval, %.
        high: The high end, %.
        seconds: Mean seconds per question.
        n: Questions answered; a point with none is not drawn.
    """

    benchmark: str
    label: str
    model: str
    system: str
    accuracy: float
    low: float
    high: float
    seconds: float
    n: int


def kind_of(system: str) -> str:
    """`monolith`, `compllm` or `variant`: the key of `system`'s marker in `KINDS`."""
    if system in MONOLITHS:
        return "monolith"
    return "compllm" if system == "compllm" else "variant"


def panels(points: Iterable[Point]) -> list[str]:
    """The benchmarks that get a panel (those with an answered point), in `PANELS` order; any
    other benchmark follows, in the order it first appears."""
    seen = list(dict.fromkeys(p.benchmark for p in points if p.n > 0))
    rank = {b: PANELS.index(b) if b in PANELS else len(PANELS) + seen.index(b) for b in seen}
    return sorted(seen, key=rank.__getitem__)


def answers_figure(points: Sequence[Point], tier: str) -> Figure:
    """Question accuracy (with its interval) against seconds per question, a panel per benchmark.

    Args:
        points: The cells; those with no answer (`n == 0`) are left out.
        tier: The benchmark tier the points answer (`standard`, `easy`), named in the title.

    Returns:
        The figure, on the Agg canvas (nothing is displayed).

    Raises:
        ModuleNotFoundError: matplotlib is not installed (`pip install 'compllm-graph[eval]'`).
        ValueError: no point has an answer.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    drawn = [p for p in points if p.n > 0]
    names = panels(drawn)
    if not names:
        raise ValueError("no point has an answer: nothing to draw")
    columns = min(2, len(names))
    rows = -(-len(names) // columns)
    figure = Figure(figsize=(6.8 * columns, 4.8 * rows + 0.9), layout="constrained")
    FigureCanvasAgg(figure)  # measures the labels' text while they are placed
    grid = figure.subplots(rows, columns, squeeze=False)
    colours = _model_colours(drawn)
    log = _log_scale(drawn)
    axes = [ax for row in grid for ax in row]
    for ax, name in zip(axes, names):
        _draw_panel(ax, name, [p for p in drawn if p.benchmark == name], colours, log)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    axes = axes[: len(names)]
    # One seconds range for every panel, so that panels compare at a glance; each keeps its ticks.
    ends = [ax.get_xlim() for ax in axes]
    for ax in axes:
        ax.set_xlim(min(low for low, _ in ends), max(high for _, high in ends))
    figure.suptitle(f"Question accuracy against seconds per question ({tier} tier)")
    figure.legend(
        handles=_legend_handles(drawn, colours),
        loc="outside lower center",
        ncols=2 * columns,  # one panel across has room for half the entries a row
        fontsize=8,
        frameon=False,
    )
    # Lay out once, then freeze the layout: labels are placed in screen space and must not move.
    figure.canvas.draw()
    figure.set_layout_engine("none")
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    for ax, name in zip(axes, names):
        _label_points(ax, [p for p in drawn if p.benchmark == name], renderer)
    return figure


def save_svg(figure: Figure, path: Path) -> Path:
    """Write `figure` to `path` as SVG, the same bytes for the same figure (text kept as text).

    Raises:
        ModuleNotFoundError: matplotlib is not installed.
    """
    import matplotlib

    path.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context({"svg.hashsalt": SVG_SALT, "svg.fonttype": "none"}):
        figure.savefig(path, format="svg", metadata={"Date": None})
    return path


def _model_colours(points: Sequence[Point]) -> dict[str, str]:
    models = dict.fromkeys(p.model for p in points)
    return {m: COLOURS[i % len(COLOURS)] for i, m in enumerate(models)}


def _log_scale(points: Sequence[Point]) -> bool:
    seconds = [p.seconds for p in points]
    return min(seconds) > 0 and max(seconds) >= LOG_SPREAD * min(seconds)


def _draw_panel(
    ax: Axes, name: str, points: Sequence[Point], colours: dict[str, str], log: bool
) -> None:
    for p in points:
        marker, _ = KINDS[kind_of(p.system)]
        # The interval's ends are rounded and the mean is not: clamp, as a bar cannot be negative.
        bar = [[max(0.0, p.accuracy - p.low)], [max(0.0, p.high - p.accuracy)]]
        ax.errorbar(
            [p.seconds], [p.accuracy], yerr=bar, fmt=marker, color=colours[p.model],
            markersize=6, capsize=3, elinewidth=1, zorder=3,
        )  # fmt: skip
    if log:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_xscale("log")
        # Seconds read as plain numbers (1, 2, 5, 10, ...), not as powers of ten.
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_title(name)
    ax.set_xlabel(f"seconds per question{' (log scale)' if log else ''}")
    ax.set_ylabel("question accuracy % (95 % bootstrap interval)")
    ax.margins(x=0.2, y=0.15)
    ax.grid(alpha=0.3, which="both")


def _legend_handles(points: Sequence[Point], colours: dict[str, str]) -> list[Any]:
    from matplotlib.lines import Line2D

    kinds = dict.fromkeys(kind_of(p.system) for p in points)
    handles = [
        Line2D([], [], color="0.3", marker=KINDS[k][0], linestyle="", label=KINDS[k][1])
        for k in KINDS
        if k in kinds
    ]
    handles += [
        Line2D([], [], color=c, marker="o", linestyle="", label=m) for m, c in colours.items()
    ]
    return handles


Spot = tuple[float, float, str, str]
"""A label's offset from its point (points) and its alignment."""


def _candidates() -> list[tuple[int, Spot]]:
    """Label spots with their ring (0 beside the point), best first."""
    spots: list[tuple[int, Spot]] = []
    for ring, distance in enumerate(DISTANCES):
        spots += [
            (ring, spot)
            for spot in (
                (distance, 0.0, "left", "center"),
                (-distance, 0.0, "right", "center"),
                (distance, distance, "left", "bottom"),
                (distance, -distance, "left", "top"),
                (-distance, distance, "right", "bottom"),
                (-distance, -distance, "right", "top"),
                (0.0, distance + 2, "center", "bottom"),
                (0.0, -distance - 2, "center", "top"),
            )
        ]
    return spots


@dataclass
class _Clear:
    """What a label in one panel should keep clear of, on screen (pixels)."""

    marks: list[Bbox]
    frame: Bbox
    anchors: list[tuple[float, float]]
    labels: list[Bbox] = field(default_factory=list)

    def cost(self, box: Bbox, own: tuple[float, float]) -> float:
        """How badly a label in `box` for the point at `own` covers or misleads."""
        covered = (
            sum(_area(box, mark) for mark in self.marks)
            + LABEL_WEIGHT * sum(_area(box, label) for label in self.labels)
            + OUTSIDE_WEIGHT * _outside(box, self.frame)
        )
        mine = _distance(box, own)
        others = (_distance(box, a) for a in self.anchors if a != own)
        return covered + (AMBIGUOUS_COST if any(d < mine + CLEARANCE for d in others) else 0.0)


def _label_points(ax: Axes, points: Sequence[Point], renderer: RendererBase) -> None:
    """Label each point at the spot that covers least of the markers, the interval bars and the
    labels placed before it, stays inside the panel and is nearest its own point."""
    from matplotlib.text import Text

    def anchor(p: Point) -> tuple[float, float]:
        x, y = ax.transData.transform((p.seconds, p.accuracy))
        return float(x), float(y)

    frame = ax.get_window_extent(renderer)
    clear = _Clear(_mark_boxes(ax, renderer), frame, [anchor(p) for p in points])

    def cost(text: Annotation, p: Point) -> float:
        text.get_window_extent(renderer)  # places the text (and its leader) for `renderer`
        # The text alone: a leader may cross its own bar.
        return clear.cost(Text.get_window_extent(text), anchor(p))

    for p in sorted(points, key=lambda p: (p.seconds, p.accuracy, p.label)):
        spots = iter(_candidates())
        ring, spot = next(spots)
        best = _annotate(ax, p, spot, far=False)
        best_cost = cost(best, p)
        for ring, spot in spots:
            if best_cost <= RING_COST * ring:  # no spot further out can do better
                break
            text = _annotate(ax, p, spot, far=ring > 0)
            if (text_cost := cost(text, p) + RING_COST * ring) < best_cost:
                best.remove()
                best, best_cost = text, text_cost
            else:
                text.remove()
        clear.labels.append(Text.get_window_extent(best))


def _annotate(ax: Axes, p: Point, spot: Spot, far: bool) -> Annotation:
    """`p`'s label at `spot`; a label `far` from its point gets a leader line to it."""
    dx, dy, ha, va = spot
    return ax.annotate(
        p.label, (p.seconds, p.accuracy), xytext=(dx, dy), textcoords="offset points",
        ha=ha, va=va, fontsize=6.5, color="0.15", zorder=4,
        arrowprops={"arrowstyle": "-", "lw": 0.6, "color": "0.4"} if far else None,
    )  # fmt: skip


def _mark_boxes(ax: Axes, renderer: RendererBase) -> list[Bbox]:
    """Where the panel's markers and interval bars are on screen (what a label should not cover).

    A bar's box is its segment widened to a few pixels: a collection's own extent is empty (it
    is drawn from offsets), and a zero-width box would let a label cross the bar for free.
    """
    from matplotlib.collections import LineCollection
    from matplotlib.transforms import Bbox

    boxes = [line.get_window_extent(renderer) for line in ax.lines]
    for bars in ax.collections:
        if not isinstance(bars, LineCollection):
            continue
        for segment in bars.get_segments():
            ends = ax.transData.transform(segment)
            low, high = ends.min(axis=0), ends.max(axis=0)
            boxes.append(Bbox.from_extents(low[0] - 2, low[1], high[0] + 2, high[1]))
    return boxes


def _area(box: Bbox, other: Bbox) -> float:
    """The area two boxes share (0 when apart)."""
    width = min(box.x1, other.x1) - max(box.x0, other.x0)
    height = min(box.y1, other.y1) - max(box.y0, other.y0)
    return max(0.0, width) * max(0.0, height)


def _distance(box: Bbox, at: tuple[float, float]) -> float:
    """How far the point `at` is from `box` (0 inside it)."""
    x, y = at
    dx = max(box.x0 - x, 0.0, x - box.x1)
    dy = max(box.y0 - y, 0.0, y - box.y1)
    return float((dx * dx + dy * dy) ** 0.5)


def _outside(box: Bbox, frame: Bbox) -> float:
    common = _area(box, frame)
    return box.width * box.height - common


__all__ = ["KINDS", "PANELS", "Point", "answers_figure", "kind_of", "panels", "save_svg"]
