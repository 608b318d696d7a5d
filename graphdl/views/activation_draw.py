"""The activation table drawn: laid out once in pixels as shapes (text, polylines, rectangles,
dots), then written as SVG text or painted by matplotlib into a PNG, the same picture."""

from __future__ import annotations

import html
import textwrap
from dataclasses import dataclass

import numpy as np

from graphdl.views.numbers import fmt

# Columns: (header, width in px); the plots' columns hold a plot, the others text.
COLUMNS = (("name", 100), ("function f", 280), ("plot of f", 250), ("derivative f′", 370),
           ("plot of f′", 250))
FONT, SMALL, LINE = 15, 12, 20  # px: text, tick labels, text line height
PAD, HEADER, PLOT_H = 10, 34, 150
CHAR = 0.53 * FONT  # px per character, to wrap text in its column
FUNCTION, DERIVATIVE, GRID = "#1f5fa8", "#c62828", "#9e9e9e"  # gradients red, as in drawings


@dataclass
class Text:
    x: float
    y: float  # baseline
    text: str
    size: int = FONT
    anchor: str = "start"  # start | middle | end
    bold: bool = False
    color: str = "#000"


@dataclass
class Poly:
    points: np.ndarray  # (n, 2) pixels
    color: str
    width: float = 1.0


@dataclass
class Rect:
    x: float
    y: float
    w: float
    h: float
    stroke: str = GRID
    fill: str = "none"


@dataclass
class Dot:
    x: float
    y: float
    color: str
    r: float = 4.0


def layout(rows):
    """The shapes of the table and its size (width, height) in px."""
    width = sum(w for _, w in COLUMNS)
    shapes, left = [], 0
    for header, w in COLUMNS:
        shapes.append(Text(left + PAD, HEADER - 11, header, bold=True))
        left += w
    top = HEADER
    for row in rows:
        texts = [[row.name], _wrap(row.formula_text(), COLUMNS[1][1]),
                 [line for text in row.derivative_lines()
                  for line in _wrap(text, COLUMNS[3][1])]]
        height = max(PLOT_H + 2 * PAD, max(len(t) for t in texts) * LINE + 2 * PAD)
        shapes.append(Poly(np.array([[0, top], [width, top]]), GRID))
        cells = iter(texts)
        left = 0
        for k, (_, w) in enumerate(COLUMNS):
            if k in (2, 4):
                dot = row.at_zero if k == 4 else None
                shapes += _plot(row.x, row.y if k == 2 else row.dy, left + 44, top + PAD,
                                w - 54, height - 2 * PAD - 18,
                                FUNCTION if k == 2 else DERIVATIVE, dot)
            else:
                for i, line in enumerate(next(cells)):
                    shapes.append(Text(left + PAD, top + PAD + FONT + i * LINE, line,
                                       bold=k == 0))
            left += w
        top += height
    return shapes, (width, top)


def _wrap(text, column_width):
    return textwrap.wrap(text, int((column_width - 2 * PAD) / CHAR),
                         break_on_hyphens=False) or [""]


def _plot(xs, ys, left, top, w, h, color, dot):
    """A plot of ys over xs in the box (left, top, w, h): frame, the axes through 0, tick labels
    at the ends and at 0, the curve (broken where not finite) and the value at 0 as a dot."""
    finite = np.isfinite(ys)
    lo, hi = (ys[finite].min(), ys[finite].max()) if finite.any() else (-1.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    lo, hi = lo - 0.08 * (hi - lo), hi + 0.08 * (hi - lo)
    x0, x1 = xs[0], xs[-1]

    def px(x):
        return left + (x - x0) / (x1 - x0) * w

    def py(y):
        return top + (hi - y) / (hi - lo) * h

    shapes = [Rect(left, top, w, h)]
    if lo < 0 < hi:
        shapes.append(Poly(np.array([[left, py(0)], [left + w, py(0)]]), GRID))
    if x0 < 0 < x1:
        shapes.append(Poly(np.array([[px(0), top], [px(0), top + h]]), GRID))
        shapes.append(Text(px(0), top + h + SMALL + 3, "0", SMALL, "middle"))
    shapes += [Text(left, top + h + SMALL + 3, fmt(x0, 3, True), SMALL, "middle"),
               Text(left + w, top + h + SMALL + 3, fmt(x1, 3, True), SMALL, "middle")]
    if finite.any():  # the extremes, labelled where they are
        for y in {ys[finite].min(), ys[finite].max()}:
            shapes += [Poly(np.array([[left - 3, py(y)], [left, py(y)]]), "#000"),
                       Text(left - 5, py(y) + SMALL / 3, fmt(y, 3, True), SMALL, "end")]
    points = np.stack([px(xs), py(np.where(finite, ys, 0))], axis=1)
    breaks = np.flatnonzero(~finite)
    for run in np.split(np.arange(len(xs)), breaks):
        run = run[finite[run]]
        if len(run) > 1:
            shapes.append(Poly(points[run], color, 2.2))
    if dot is not None and np.isfinite(dot):
        shapes.append(Dot(px(0), py(dot), color))
    return shapes


def to_svg(rows):
    shapes, (width, height) = layout(rows)
    out = [(f'<svg xmlns="http://www.w3.org/2000/svg" class="gd-activation-table" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'font-family="DejaVu Sans, Arial, sans-serif">'),
           f'<rect width="{width}" height="{height}" fill="#fff"/>']
    for s in shapes:
        if isinstance(s, Text):
            weight = ' font-weight="bold"' if s.bold else ""
            out.append(f'<text x="{s.x:.1f}" y="{s.y:.1f}" font-size="{s.size}" '
                       f'text-anchor="{s.anchor}" fill="{s.color}"{weight}>'
                       f"{html.escape(s.text, quote=False)}</text>")
        elif isinstance(s, Poly):
            points = " ".join(f"{x:.2f},{y:.2f}" for x, y in s.points)
            out.append(f'<polyline points="{points}" fill="none" stroke="{s.color}" '
                       f'stroke-width="{s.width}"/>')
        elif isinstance(s, Rect):
            out.append(f'<rect x="{s.x:.1f}" y="{s.y:.1f}" width="{s.w:.1f}" '
                       f'height="{s.h:.1f}" fill="{s.fill}" stroke="{s.stroke}"/>')
        else:
            out.append(f'<circle cx="{s.x:.2f}" cy="{s.y:.2f}" r="{s.r}" fill="{s.color}"/>')
    out.append("</svg>")
    return "\n".join(out)


def to_png(rows, path, dpi=100):
    """The same shapes painted by matplotlib (imported here: needed for PNG only)."""
    try:  # a Figure of its own, not pyplot's: a notebook's backend and figures stay as they are
        from matplotlib.figure import Figure
        from matplotlib.patches import Circle, Rectangle
    except ImportError as e:
        raise ImportError("activation_table(...).png needs matplotlib (pip install "
                          "matplotlib); .svg() needs nothing") from e
    shapes, (width, height) = layout(rows)
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    pt = 72 / dpi  # points per px
    for s in shapes:
        if isinstance(s, Text):
            ax.text(s.x, s.y, s.text, fontsize=s.size * pt, ha={"start": "left"}.get(
                s.anchor, "center" if s.anchor == "middle" else "right"), va="baseline",
                color=s.color, fontweight="bold" if s.bold else "normal")
        elif isinstance(s, Poly):
            ax.plot(s.points[:, 0], s.points[:, 1], color=s.color, linewidth=s.width * pt)
        elif isinstance(s, Rect):
            ax.add_patch(Rectangle((s.x, s.y), s.w, s.h, fill=False, edgecolor=s.stroke,
                                   linewidth=pt))
        else:
            ax.add_patch(Circle((s.x, s.y), s.r, color=s.color))
    fig.savefig(path, dpi=dpi, facecolor="white")
