"""Small charts written as SVG text: panels of bars, lines and dashed reference lines.

The field-quality report (:mod:`dhsurvey.validate.report`) inlines its charts as SVG. Drawing
them with a plotting library cost seconds of CPU per country (text layout, tight layout and
tick bounding boxes) for four simple charts, so they are written here directly: the layout
is arithmetic on estimated text widths (:func:`text_width`), which is all these charts need.

What a chart is made of:

* a :class:`Panel` per form or level, laid out in up to two columns (one when a panel has
  too many categories to be readable at half width), each with a title, a y axis starting at
  0 with 1-2-5 ticks (:func:`nice_ticks`) and light grid lines, a baseline and x tick labels,
  rotated and shrunk or thinned to fit (:func:`_thin`);
* :class:`Bars` (one series of bars, one bar per category; a series can draw only some
  categories, hatched), :class:`Line` (a line with point markers) and :class:`Rule` (a dashed
  horizontal line, e.g. a target);
* a legend inside the plot, at its top, with room made for it: the y axis is raised until
  every value drawn is below the legend, so it never covers a bar or a line.

The SVG is deterministic (same panels, same bytes): coordinates are rounded, and the only
ids (hatch patterns) are prefixed with the chart's name, so the four charts of one report
can share a page. Every text is XML-escaped. The root carries ``viewBox``, ``width`` and
``height`` (the report's CSS scales it to the page), ``role="img"``, an ``aria-label`` and a
``<title>``; each bar and point has a ``<title>`` with its value (a tooltip). Elements carry
classes (``chart-bar``, ``chart-xtick`` …) that tests and readers of the SVG can select on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

import numpy as np

#: Width of a chart in SVG user units (pixels at natural size; the page scales it down).
WIDTH = 1056
#: Height of the plot area of one panel.
PLOT_HEIGHT = 190
FONT = "system-ui,-apple-system,'Segoe UI',Roboto,sans-serif"
TITLE_SIZE = 13.0
TICK_SIZE = 10.0
XTICK_SIZE = 9.5
MIN_XTICK_SIZE = 7.0
LEGEND_SIZE = 10.0
#: Text is not measured: a character is taken as this share of the font size (sans-serif
#: digits and lower case are narrower, so estimates err on the side of room).
CHAR_WIDTH = 0.6
#: x tick labels longer than this are cut (with an ellipsis; the full text is the tooltip).
MAX_LABEL = 24
#: A panel needs this many pixels per category to share its row with another panel.
MIN_SLOT = 8.0
GRID = "#e3e6ea"
AXIS = "#555"
TEXT = "#1a1a1a"


@dataclass(frozen=True)
class Tick:
    """An x tick: position in data units, label, and whether it is emphasised (bold, in
    :attr:`Panel.strong_colour`; kept first when labels are thinned)."""

    pos: float
    label: str
    strong: bool = False


@dataclass(frozen=True)
class Bars:
    """One series of bars: bar ``i`` at category ``i`` (+ ``offset``, in category widths).

    ``show`` limits the series to some categories (the others are drawn by another series,
    e.g. the enumerators with quarantined interviews); ``hatch`` fills the bars with a
    diagonal hatch over ``colour`` and outlines them in ``edge``. Missing and infinite values
    are drawn as 0. The series has a legend entry when ``label`` is set and it draws a bar."""

    values: Sequence[float] | np.ndarray
    colour: str
    label: str = ""
    offset: float = 0.0
    width: float = 0.8
    show: Sequence[bool] | np.ndarray | None = None
    hatch: bool = False
    edge: str = ""


@dataclass(frozen=True)
class Line:
    """A line through points (x in data units) with a marker at each point."""

    x: Sequence[float] | np.ndarray
    y: Sequence[float] | np.ndarray
    colour: str
    tips: Sequence[str] = ()


@dataclass(frozen=True)
class Rule:
    """A dashed horizontal line at ``value`` (a target, a threshold), with a legend entry."""

    value: float
    colour: str
    label: str = ""


@dataclass(frozen=True)
class Panel:
    """One plot: title, x range and ticks, what is drawn, and how the y axis ends.

    ``ytop`` fixes the top of the y axis; otherwise it is the first tick at or above the
    largest value times ``headroom`` (and above the legend). ``rotation`` turns the x tick
    labels (degrees, counter-clockwise); ``spacing`` is the least distance between two
    labels' ticks in pixels (default: what the font needs); ``legend_at`` is ``left``,
    ``center`` or ``right``."""

    title: str
    xlim: tuple[float, float]
    ticks: Sequence[Tick]
    bars: Sequence[Bars] = ()
    lines: Sequence[Line] = ()
    rules: Sequence[Rule] = ()
    ylabel: str = ""
    ytop: float | None = None
    headroom: float = 1.0
    rotation: float = 90.0
    spacing: float | None = None
    legend_at: str = "left"
    strong_colour: str = TEXT


def categories(labels: Sequence[str], strong: Sequence[bool] | np.ndarray | None = None
               ) -> tuple[tuple[float, float], list[Tick]]:
    """x range and ticks of a bar panel: category ``i`` at ``i``, labelled ``labels[i]``."""
    flags = [bool(s) for s in strong] if strong is not None else [False] * len(labels)
    ticks = [Tick(float(i), label, flag) for i, (label, flag)
             in enumerate(zip(labels, flags, strict=True))]
    return (-0.5, len(labels) - 0.5), ticks


# -- numbers and text --------------------------------------------------------------------------


def finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Values as floats, missing and infinite ones as 0 (drawn as no bar)."""
    array = np.asarray(values, dtype=float)
    return np.where(np.isfinite(array), array, 0.0)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round ticks covering ``[lo, hi]``: the first at or below ``lo``, the last at or above
    ``hi``, in the smallest step of 1, 2 or 5 times a power of ten that needs at most
    ``count + 1`` intervals (so the axis ends close above ``hi``)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi <= lo:
        hi = lo + 1.0
    power = 10.0 ** math.floor(math.log10((hi - lo) / (count + 1)))
    for step in (m * power for m in (1.0, 2.0, 5.0, 10.0, 20.0)):
        first = math.floor(lo / step + 1e-9)
        last = math.ceil(hi / step - 1e-9)
        if last - first <= count + 1:
            break
    return [round(i * step, 12) for i in range(first, last + 1)]


def tick_text(value: float, step: float) -> str:
    """A y tick label: thousands separated, as many decimals as the step needs."""
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
    return f"{value:,.{decimals}f}"


def text_width(text: str, size: float) -> float:
    """Estimated width of ``text`` at font ``size`` (see :data:`CHAR_WIDTH`)."""
    return CHAR_WIDTH * size * len(text)


def fit(text: str, width: float, size: float) -> str:
    """``text`` cut (with an ellipsis) to about ``width`` pixels at ``size``."""
    most = max(int(width / (CHAR_WIDTH * size)), 1)
    return text if len(text) <= most else text[:max(most - 1, 1)] + "…"


def _n(value: float) -> str:
    """A coordinate: one decimal, no trailing zero, no negative zero (stable bytes)."""
    text = f"{round(value, 1) + 0.0:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _value(value: float) -> str:
    """A value in a tooltip."""
    return f"{value:,.1f}" if abs(value) >= 0.1 or value == 0 else f"{value:.2g}"


def _esc(text: str) -> str:
    return escape(text, quote=True)


def _text(x: float, y: float, text: str, size: float, *, cls: str, anchor: str = "start",
          rotate: float = 0.0, extra: str = "", tip: str = "") -> str:
    """A ``<text>`` at (x, y); rotated about that point; ``dy`` centres it vertically."""
    where = (f'transform="translate({_n(x)},{_n(y)}) rotate({_n(-rotate)})"' if rotate
             else f'x="{_n(x)}" y="{_n(y)}"')
    title = f"<title>{_esc(tip)}</title>" if tip else ""
    return (f'<text class="{cls}" {where} dy=".35em" font-size="{_n(size)}" '
            f'text-anchor="{anchor}"{extra}>{title}{_esc(text)}</text>')


# -- layout ------------------------------------------------------------------------------------


@dataclass
class _Box:
    """Where a panel's plot area is, and how data map onto it."""

    left: float
    top: float
    width: float
    height: float
    xlim: tuple[float, float]
    ylim: tuple[float, float]

    def x(self, value: float) -> float:
        lo, hi = self.xlim
        return self.left + (value - lo) / ((hi - lo) or 1.0) * self.width

    def y(self, value: float) -> float:
        lo, hi = self.ylim
        return self.top + self.height - (value - lo) / ((hi - lo) or 1.0) * self.height


@dataclass
class _Legend:
    """Legend entries (kind, colour, label, hatched, edge) laid out in rows."""

    entries: list[tuple[str, str, str, bool, str]] = field(default_factory=list)

    def rows(self, width: float) -> list[list[int]]:
        rows: list[list[int]] = []
        used = 0.0
        for i, entry in enumerate(self.entries):
            size = _entry_width(entry[2])
            if not rows or used + size > width:
                rows.append([])
                used = 0.0
            rows[-1].append(i)
            used += size
        return rows

    def height(self, width: float) -> float:
        return 16.0 * len(self.rows(width)) + 4.0 if self.entries else 0.0


def _entry_width(label: str) -> float:
    return 22.0 + text_width(label, LEGEND_SIZE) + 14.0


def _draws(bars: Bars) -> bool:
    """Whether the series draws a bar at all."""
    return len(bars.values) > 0 and (bars.show is None
                                     or bool(np.asarray(bars.show, dtype=bool).any()))


def _legend(panel: Panel) -> _Legend:
    legend = _Legend()
    for rule in panel.rules:
        if rule.label and math.isfinite(rule.value):
            legend.entries.append(("rule", rule.colour, rule.label, False, ""))
    for bars in panel.bars:
        if bars.label and _draws(bars):
            legend.entries.append(("bar", bars.colour, bars.label, bars.hatch, bars.edge))
    return legend


def _largest(panel: Panel) -> tuple[float, float]:
    """Smallest and largest value drawn (0 included: bars start there)."""
    values = [0.0]
    for bars in panel.bars:
        shown = finite(bars.values)
        if bars.show is not None:
            shown = shown[np.asarray(bars.show, dtype=bool)]
        values.extend(shown.tolist())
    for line in panel.lines:
        values.extend(finite(line.y).tolist())
    values.extend(r.value for r in panel.rules if math.isfinite(r.value))
    return min(values), max(values)


def _yticks(panel: Panel, legend_height: float) -> list[float]:
    """y ticks from 0 (or the least value) to a top that leaves every value drawn below
    ``headroom`` and below the legend."""
    lo, hi = _largest(panel)
    if panel.ytop is not None:
        return nice_ticks(min(lo, 0.0), panel.ytop, 6)
    free = 1.0 - (legend_height + 6.0) / PLOT_HEIGHT if legend_height else 1.0
    need = max(hi * panel.headroom, hi / max(free, 0.2))
    return nice_ticks(lo, need)  # nothing but zeros: an axis from 0 to 1


def _label(tick: Tick) -> str:
    return tick.label if len(tick.label) <= MAX_LABEL else tick.label[:MAX_LABEL - 1] + "…"


def _xtick_size(panel: Panel, plot_width: float) -> float:
    """x tick font size: shrunk (down to :data:`MIN_XTICK_SIZE`) until vertical labels fit
    one per category."""
    if panel.rotation < 60 or len(panel.ticks) < 2:
        return XTICK_SIZE
    lo, hi = panel.xlim
    slot = plot_width * (panel.ticks[1].pos - panel.ticks[0].pos) / ((hi - lo) or 1.0)
    return max(MIN_XTICK_SIZE, min(XTICK_SIZE, abs(slot) / 1.15))


def _thin(positions: Sequence[float], strong: Sequence[bool], spacing: float) -> list[int]:
    """Indices of the tick labels to print so that no two are closer than ``spacing``
    pixels: emphasised ones first, then the others in order (every k-th when evenly
    spaced)."""
    kept: list[float] = []
    chosen: list[int] = []
    order = [i for i, s in enumerate(strong) if s] + [i for i, s in enumerate(strong) if not s]
    for i in order:
        if all(abs(positions[i] - p) >= spacing - 1e-6 for p in kept):
            kept.append(positions[i])
            chosen.append(i)
    return sorted(chosen)


def _bottom(panel: Panel, size: float) -> float:
    """Room below the plot for the x tick labels (rotated ``panel.rotation`` degrees)."""
    if not panel.ticks:
        return 8.0
    longest = max(text_width(_label(t), size) for t in panel.ticks)
    angle = math.radians(panel.rotation)
    return 10.0 + longest * math.sin(angle) + size * math.cos(angle) + 6.0


def _left(panel: Panel, yticks: list[float]) -> float:
    """Room left of the plot: y tick labels, the y label, a tilted first x label."""
    step = yticks[1] - yticks[0] if len(yticks) > 1 else 1.0
    widest = max(text_width(tick_text(t, step), TICK_SIZE) for t in yticks)
    room = widest + 12.0 + (18.0 if panel.ylabel else 0.0)
    if panel.ticks and panel.rotation < 60:
        first = text_width(_label(panel.ticks[0]), XTICK_SIZE)
        room = max(room, first * math.cos(math.radians(panel.rotation)) + 4.0)
    return room


def columns(panels: Sequence[Panel]) -> int:
    """Two columns, unless a panel has too many categories to read at half width."""
    if len(panels) < 2:
        return 1
    half = WIDTH / 2 - 60.0
    crowded = any(len(p.ticks) * MIN_SLOT > half for p in panels if p.bars)
    return 1 if crowded else 2


# -- drawing -----------------------------------------------------------------------------------


def _grid(box: _Box, yticks: list[float]) -> list[str]:
    step = yticks[1] - yticks[0] if len(yticks) > 1 else 1.0
    out = []
    for value in yticks:
        y = box.y(value)
        out.append(f'<line class="chart-grid" x1="{_n(box.left)}" x2="{_n(box.left + box.width)}"'
                   f' y1="{_n(y)}" y2="{_n(y)}" stroke="{GRID}" stroke-width="1"/>')
        out.append(_text(box.left - 6, y, tick_text(value, step), TICK_SIZE, cls="chart-ytick",
                         anchor="end", extra=f' fill="{TEXT}"'))
    return out


def _bar_fill(bars: Bars, hatch_id: str) -> str:
    if bars.hatch:
        edge = bars.edge or AXIS
        return f'fill="url(#{hatch_id})" stroke="{edge}" stroke-width="0.8"'
    return f'fill="{bars.colour}"' + (f' stroke="{bars.edge}" stroke-width="0.8"'
                                      if bars.edge else "")


def _bars(box: _Box, panel: Panel, hatch_id: str) -> list[str]:
    out = []
    slot = box.width / ((panel.xlim[1] - panel.xlim[0]) or 1.0)
    lo, hi = box.ylim
    for bars in panel.bars:
        values = finite(bars.values)
        show = (np.ones(len(values), dtype=bool) if bars.show is None
                else np.asarray(bars.show, dtype=bool))
        paint = _bar_fill(bars, hatch_id)
        for i in map(int, np.flatnonzero(show)):
            value = float(values[i])
            drawn = min(max(value, lo), hi)  # within the axis (a fixed top may be lower)
            y = box.y(max(drawn, 0.0))
            name = panel.ticks[i].label if i < len(panel.ticks) else str(i)
            tip = f"{name}: {_value(value)}" + (f" ({bars.label})" if bars.label else "")
            x = box.x(i + bars.offset) - bars.width * slot / 2
            out.append(f'<rect class="chart-bar" x="{_n(x)}" y="{_n(y)}" '
                       f'width="{_n(bars.width * slot)}" '
                       f'height="{_n(box.y(min(drawn, 0.0)) - y)}" {paint}>'
                       f"<title>{_esc(tip)}</title></rect>")
    return out


def _lines(box: _Box, panel: Panel) -> list[str]:
    out = []
    for line in panel.lines:
        xs = np.asarray(line.x, dtype=float)
        ys = finite(line.y)
        points = " ".join(f"{_n(box.x(x))},{_n(box.y(y))}" for x, y in zip(xs, ys, strict=True))
        out.append(f'<polyline class="chart-line" points="{points}" fill="none" '
                   f'stroke="{line.colour}" stroke-width="1.6" stroke-linejoin="round"/>')
        tips = list(line.tips) or [""] * len(xs)
        dots = "".join(
            f'<circle cx="{_n(box.x(x))}" cy="{_n(box.y(y))}" r="2.3">'
            + (f"<title>{_esc(t)}</title>" if t else "") + "</circle>"
            for x, y, t in zip(xs, ys, tips, strict=True))
        out.append(f'<g class="chart-points" fill="{line.colour}">{dots}</g>')
    return out


def _rules(box: _Box, panel: Panel) -> list[str]:
    return [f'<line class="chart-rule" x1="{_n(box.left)}" x2="{_n(box.left + box.width)}" '
            f'y1="{_n(box.y(r.value))}" y2="{_n(box.y(r.value))}" stroke="{r.colour}" '
            'stroke-width="1.5" stroke-dasharray="6 4"/>'
            for r in panel.rules if math.isfinite(r.value)]


def _xticks(box: _Box, panel: Panel, size: float) -> list[str]:
    """Tick marks and labels under the baseline, thinned to fit."""
    positions = [box.x(t.pos) for t in panel.ticks]
    spacing = panel.spacing or (size * 1.1 if panel.rotation >= 60 else size * 2.6)
    keep = _thin(positions, [t.strong for t in panel.ticks], spacing)
    base = box.top + box.height
    out = []
    for i in keep:
        tick, x = panel.ticks[i], positions[i]
        colour = panel.strong_colour if tick.strong else TEXT
        weight = ' font-weight="bold"' if tick.strong else ""
        label = _label(tick)
        out.append(f'<line x1="{_n(x)}" x2="{_n(x)}" y1="{_n(base)}" y2="{_n(base + 4)}" '
                   f'stroke="{AXIS}" stroke-width="1"/>')
        out.append(_text(x, base + 8, label, size, cls="chart-xtick",
                         anchor="end" if panel.rotation else "middle", rotate=panel.rotation,
                         extra=f' fill="{colour}"{weight}',
                         tip=tick.label if label != tick.label else ""))
    return out


def _legend_svg(box: _Box, legend: _Legend, at: str, hatch_id: str) -> list[str]:
    if not legend.entries:
        return []
    rows = legend.rows(box.width - 12)
    width = max(sum(_entry_width(legend.entries[i][2]) for i in row) for row in rows) - 8
    height = legend.height(box.width - 12)
    left = {"left": box.left + 6, "right": box.left + box.width - 6 - width,
            "center": box.left + (box.width - width) / 2}.get(at, box.left + 6)
    out = [f'<g class="chart-legend"><rect x="{_n(left - 4)}" y="{_n(box.top + 2)}" '
           f'width="{_n(width + 8)}" height="{_n(height)}" fill="#fff" fill-opacity="0.85"/>']
    for r, row in enumerate(rows):
        x, y = left, box.top + 12 + 16 * r
        for i in row:
            kind, colour, label, hatch, edge = legend.entries[i]
            if kind == "rule":
                out.append(f'<line x1="{_n(x)}" x2="{_n(x + 18)}" y1="{_n(y)}" y2="{_n(y)}" '
                           f'stroke="{colour}" stroke-width="1.5" stroke-dasharray="5 3"/>')
            else:
                paint = (f'fill="url(#{hatch_id})" stroke="{edge or AXIS}" stroke-width="0.8"'
                         if hatch else f'fill="{colour}"')
                out.append(f'<rect x="{_n(x + 2)}" y="{_n(y - 5)}" width="14" height="10" '
                           f"{paint}/>")
            out.append(_text(x + 22, y, label, LEGEND_SIZE, cls="chart-legend-text",
                             extra=f' fill="{TEXT}"'))
            x += _entry_width(label)
    out.append("</g>")
    return out


def _hatch(hatch_id: str, panels: Sequence[Panel]) -> str:
    """The ``<pattern>`` of hatched bars (the colour and edge of the first hatched series),
    when a hatched bar is drawn."""
    hatched = [b for p in panels for b in p.bars if b.hatch and _draws(b)]
    if not hatched:
        return ""
    colour, edge = hatched[0].colour, hatched[0].edge or AXIS
    return (f'<defs><pattern id="{hatch_id}" patternUnits="userSpaceOnUse" width="6" '
            f'height="6" patternTransform="rotate(45)"><rect width="6" height="6" '
            f'fill="{colour}"/><line x1="1.5" y1="0" x2="1.5" y2="6" stroke="{edge}" '
            'stroke-width="1.3"/></pattern></defs>')


def _panel(panel: Panel, x0: float, y0: float, width: float, top: float, size: float,
           hatch_id: str) -> list[str]:
    """One panel, its plot area at ``top`` below ``y0``, ``width`` wide from ``x0``."""
    legend = _legend(panel)
    # The legend's rows are counted on a plot narrower than it will be (its left margin
    # depends on the y ticks, which depend on the legend's height): never too few.
    yticks = _yticks(panel, legend.height(width - 140))
    left = _left(panel, yticks)
    box = _Box(x0 + left, y0 + top, width - left - 14.0, PLOT_HEIGHT, panel.xlim,
               (yticks[0], yticks[-1]))
    out = ['<g class="chart-panel">']
    if panel.title:
        out.append(_text(box.left + box.width / 2, y0 + 13, fit(panel.title, box.width,
                                                                TITLE_SIZE),
                         TITLE_SIZE, cls="chart-title", anchor="middle",
                         extra=f' fill="{TEXT}"'))
    if panel.ylabel:
        out.append(_text(x0 + 10, box.top + box.height / 2, fit(panel.ylabel, PLOT_HEIGHT,
                                                                TICK_SIZE),
                         TICK_SIZE, cls="chart-ylabel", anchor="middle", rotate=90,
                         extra=f' fill="{TEXT}"'))
    out += _grid(box, yticks)
    out += _bars(box, panel, hatch_id)
    out += _rules(box, panel)
    out += _lines(box, panel)
    zero = box.y(0.0) if yticks[0] <= 0 <= yticks[-1] else box.top + box.height
    out.append(f'<line class="chart-baseline" x1="{_n(box.left)}" '
               f'x2="{_n(box.left + box.width)}" y1="{_n(zero)}" y2="{_n(zero)}" '
               f'stroke="{AXIS}" stroke-width="1"/>')
    out += _xticks(box, panel, size)
    out += _legend_svg(box, legend, panel.legend_at, hatch_id)
    out.append("</g>")
    return out


def chart_svg(panels: Sequence[Panel], *, name: str, label: str) -> str:
    """The panels as one inline ``<svg>``: ``name`` prefixes its ids (unique per page),
    ``label`` names the chart for screen readers."""
    cols = columns(panels)
    width = WIDTH / cols
    # Shrink crowded vertical labels before sizing the bottom margin on them.
    sizes = [_xtick_size(p, width - 80.0) for p in panels]
    top = 24.0 if any(p.title for p in panels) else 10.0
    bottom = max((_bottom(p, s) for p, s in zip(panels, sizes, strict=True)), default=8.0)
    row_height = top + PLOT_HEIGHT + bottom
    rows = math.ceil(len(panels) / cols) if panels else 0
    height = math.ceil(row_height * rows) + 4
    hatch_id = f"chart-{name}-hatch"
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-{_esc(name)}" '
           f'width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" '
           f'aria-label="{_esc(label)}" font-family="{_esc(FONT)}">',
           f"<title>{_esc(label)}</title>", _hatch(hatch_id, panels)]
    for i, (panel, size) in enumerate(zip(panels, sizes, strict=True)):
        x0 = (i % cols) * width
        y0 = (i // cols) * row_height + 2
        out += _panel(panel, x0, y0, width, top, size, hatch_id)
    out.append("</svg>")
    return "\n".join(part for part in out if part)
