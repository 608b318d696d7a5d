"""The picture of a `DescentPlot` (graphdl/views/descent.py): contour lines by marching squares,
written as SVG here, or drawn with matplotlib as a PNG; both from the same segments, arrows
and paths."""

from __future__ import annotations

import html

import numpy as np

PLOT_WIDTH = 520  # pixels of the plotting area; its height follows the box, one unit per axis
MARGIN = {"left": 64, "right": 250, "top": 40, "bottom": 48}  # the legend is on the right
COLOURS = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2"]
ARROW = "#8a8a8a"
START = "#000000"


def contour(xs, ys, z, level):
    """Marching squares: the segments ((K, 2, 2), two (x, y) ends each) where the grid `z`
    (z[j, i] at (xs[i], ys[j])), interpolated linearly along cell edges, crosses `level`. A
    saddle cell (its corners alternately above and below) is split as its centre, the mean of
    its corners, says."""
    a, b, c, d = z[:-1, :-1], z[:-1, 1:], z[1:, 1:], z[1:, :-1]  # corners counter-clockwise
    x0, x1 = np.broadcast_arrays(xs[None, :-1], xs[None, 1:], z[:-1, :-1])[:2]
    y0, y1 = np.broadcast_arrays(ys[:-1, None], ys[1:, None], z[:-1, :-1])[:2]
    # the cell's edges bottom, right, top, left: (from corner, to corner, from point, to point)
    edges = [(a, b, (x0, y0), (x1, y0)), (b, c, (x1, y0), (x1, y1)),
             (c, d, (x1, y1), (x0, y1)), (d, a, (x0, y1), (x0, y0))]
    crosses, points = [], []
    with np.errstate(divide="ignore", invalid="ignore"):
        for u, v, (px, py), (qx, qy) in edges:
            crosses.append((u > level) != (v > level))
            t = (level - u) / (v - u)
            points.append(np.stack([px + t * (qx - px), py + t * (qy - py)], axis=-1))
    crosses, points = np.stack(crosses, axis=-1), np.stack(points, axis=-2)  # (..., 4), (..., 4, 2)
    count = crosses.sum(axis=-1)
    two = count == 2
    segments = [points[two][crosses[two]].reshape(-1, 2, 2)]  # each cell's two crossed edges
    saddle = count == 4
    if saddle.any():
        # centre on the side of corner a: a and c are joined, the lines cut off b and d
        joined = ((a + b + c + d) / 4 > level)[saddle] == (a > level)[saddle]
        first = np.where(joined[:, None], [0, 2], [3, 1])
        second = np.where(joined[:, None], [1, 3], [0, 2])
        rows = np.arange(joined.size)[:, None]
        cells = points[saddle]
        segments.append(np.stack([cells[rows, first], cells[rows, second]], axis=2)
                        .reshape(-1, 2, 2))
    segments = np.concatenate(segments)
    return segments[np.isfinite(segments).all(axis=(1, 2))]


def arrow_vectors(plot):
    """The drawn arrows ((K, 2) starts, (K, 2) vectors, in the parameters' units): along −∇f,
    as long as 0.8 of the arrow grid's spacing where |∇f| is at least its median over the grid,
    shorter in proportion where the loss is flatter."""
    points, grads = plot.arrow_points, plot.arrow_gradients
    keep = np.isfinite(grads).all(axis=1) & (np.abs(grads).sum(axis=1) > 0)
    points, grads = points[keep], grads[keep]
    if not len(points):
        return points, grads
    cell = min(np.ptp(points[:, k]) / max(len(np.unique(points[:, k])) - 1, 1) for k in (0, 1))
    size = np.linalg.norm(grads, axis=1)
    length = 0.8 * cell * np.minimum(1.0, size / np.median(size))
    return points, -grads / size[:, None] * length[:, None]


def svg(plot):
    """The picture as an SVG document: contours, arrows, paths, axes and the legend."""
    (x_lo, x_hi), (y_lo, y_hi) = (plot.xs[0], plot.xs[-1]), (plot.ys[0], plot.ys[-1])
    scale = PLOT_WIDTH / (x_hi - x_lo)  # pixels per unit, the same on both axes
    height = (y_hi - y_lo) * scale
    left, top = MARGIN["left"], MARGIN["top"]
    width_all = left + PLOT_WIDTH + MARGIN["right"]
    height_all = max(top + height + MARGIN["bottom"], top + _legend_height(plot) + 10)

    def px(x, y):  # parameter values -> pixels inside the plotting area
        return (x - x_lo) * scale, (y_hi - y) * scale

    out = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width_all:.0f}" '
            f'height="{height_all:.0f}" viewBox="0 0 {width_all:.0f} {height_all:.0f}" '
            'font-family="sans-serif" font-size="12">'),
           '<rect width="100%" height="100%" fill="white"/>',
           (f'<text x="{left + PLOT_WIDTH / 2:.1f}" y="{top - 14}" text-anchor="middle" '
            f'font-size="14">{_text(plot.title)}</text>'),
           # a nested svg clips what leaves the box (a diverging path) to the plotting area
           f'<svg x="{left}" y="{top}" width="{PLOT_WIDTH}" height="{height:.1f}">']
    for k, (level, segs) in enumerate(zip(plot.levels, plot.contours)):
        if len(segs):
            (sx, sy), (ex, ey) = px(*segs[:, 0].T), px(*segs[:, 1].T)
            d = " ".join(f"M{a:.1f} {b:.1f}L{c:.1f} {e:.1f}" for a, b, c, e in zip(sx, sy, ex, ey))
            out.append(f'<path d="{d}" fill="none" stroke="{_shade(k, len(plot.levels))}" '
                       f'stroke-width="1"><title>loss = {level:.4g}</title></path>')
    points, vectors = arrow_vectors(plot)
    for (x, y), (u, v) in zip(points, vectors):
        out.append(_arrow(*px(x, y), *px(x + u, y + v)))
    for k, (label, path) in enumerate(plot.paths.items()):
        out.extend(_path(path, px, COLOURS[k % len(COLOURS)], label))
    sx, sy = px(*_start(plot))
    out.append(f'<circle cx="{sx:.1f}" cy="{sy:.1f}" r="5" fill="white" stroke="{START}" '
               'stroke-width="2"/>')
    out.append("</svg>")
    out.append(f'<rect x="{left}" y="{top}" width="{PLOT_WIDTH}" height="{height:.1f}" '
               'fill="none" stroke="black"/>')
    out.extend(_axes(plot, left, top, height, scale))
    out.extend(_legend(plot, left + PLOT_WIDTH + 16, top))
    out.append("</svg>")
    return "\n".join(out)


def _path(path, px, colour, label):
    """One optimizer's path: a line through its points, a dot at each, the last one larger."""
    path = path[: _finite_prefix(path)]
    x, y = px(path[:, 0], path[:, 1])
    line = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x, y))
    yield (f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2" '
           f'stroke-opacity="0.85"><title>{_text(label)}</title></polyline>')
    for k, (a, b) in enumerate(zip(x, y)):
        r = 4.5 if k == len(x) - 1 else 2.5
        yield f'<circle cx="{a:.1f}" cy="{b:.1f}" r="{r}" fill="{colour}"/>'


def _start(plot):
    """Where every path starts."""
    return next(iter(plot.paths.values()))[0]


def _finite_prefix(path):
    """How many points of `path` come before its first non-finite one (a diverged step)."""
    bad = ~np.isfinite(path).all(axis=1)
    return int(np.argmax(bad)) if bad.any() else len(path)


def _arrow(x0, y0, x1, y1):
    """A grey arrow from (x0, y0) to (x1, y1), pixels; its head a small triangle."""
    dx, dy = x1 - x0, y1 - y0
    size = np.hypot(dx, dy)
    if size < 1:
        return ""
    ux, uy = dx / size, dy / size
    head = min(6.0, 0.45 * size)
    bx, by = x1 - head * ux, y1 - head * uy
    wing = head * 0.45
    return (f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{bx:.1f}" y2="{by:.1f}" stroke="{ARROW}" '
            f'stroke-width="1.2"/><polygon points="{x1:.1f},{y1:.1f} {bx - wing * uy:.1f},'
            f'{by + wing * ux:.1f} {bx + wing * uy:.1f},{by - wing * ux:.1f}" fill="{ARROW}"/>')


def _axes(plot, left, top, height, scale):
    """Ticks and numbers on both axes, and the parameters' names."""
    bottom = top + height
    for t in _ticks(plot.xs[0], plot.xs[-1]):
        x = left + (t - plot.xs[0]) * scale
        yield f'<line x1="{x:.1f}" y1="{bottom:.1f}" x2="{x:.1f}" y2="{bottom + 5:.1f}" ' \
              'stroke="black"/>'
        yield f'<text x="{x:.1f}" y="{bottom + 18:.1f}" text-anchor="middle">{_num(t)}</text>'
    for t in _ticks(plot.ys[0], plot.ys[-1]):
        y = top + (plot.ys[-1] - t) * scale
        yield f'<line x1="{left - 5}" y1="{y:.1f}" x2="{left}" y2="{y:.1f}" stroke="black"/>'
        yield f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{_num(t)}</text>'
    yield (f'<text x="{left + PLOT_WIDTH / 2:.1f}" y="{bottom + 38:.1f}" text-anchor="middle" '
           f'font-size="13">{_text(plot.names[0])}</text>')
    yield (f'<text x="{left - 48}" y="{top + height / 2:.1f}" text-anchor="middle" '
           f'font-size="13" transform="rotate(-90 {left - 48} {top + height / 2:.1f})">'
           f'{_text(plot.names[1])}</text>')


def _legend_lines(plot):
    """(kind, colour, first line, second line) for each entry of the legend."""
    start = _start(plot)
    for k, (label, losses) in enumerate(plot.losses.items()):
        steps, done = len(losses) - 1, _finite_prefix(losses[:, None])
        yield ("path", COLOURS[k % len(COLOURS)], label,
               f"loss {losses[0]:.3g} → {losses[-1]:.3g} in {steps} steps" if done > steps
               else f"loss {losses[0]:.3g}, diverged at step {done}")
    yield "start", START, f"start ({start[0]:g}, {start[1]:g})", ""
    yield "arrow", ARROW, "−∇f: downhill, the step's way", "(shorter where flatter)"
    yield ("contour", _shade(0, 2), "contours of the loss",
           f"{len(plot.levels)} levels, {plot.levels[0]:.3g} to {plot.levels[-1]:.3g}")


def _legend_height(plot):
    return 34 * sum(1 for _ in _legend_lines(plot))


def _legend(plot, x, y):
    for kind, colour, first, second in _legend_lines(plot):
        mid = y + 8
        if kind == "path":
            yield (f'<line x1="{x}" y1="{mid}" x2="{x + 22}" y2="{mid}" stroke="{colour}" '
                   f'stroke-width="2"/><circle cx="{x + 22}" cy="{mid}" r="4" fill="{colour}"/>')
        elif kind == "start":
            yield (f'<circle cx="{x + 11}" cy="{mid}" r="5" fill="white" stroke="{colour}" '
                   'stroke-width="2"/>')
        elif kind == "arrow":
            yield _arrow(x, mid, x + 24, mid)
        else:
            yield f'<line x1="{x}" y1="{mid}" x2="{x + 24}" y2="{mid}" stroke="{colour}"/>'
        yield f'<text x="{x + 32}" y="{mid + 4}">{_text(first)}</text>'
        if second:
            yield f'<text x="{x + 32}" y="{mid + 19}" font-size="11" fill="#555">' \
                  f'{_text(second)}</text>'
        y += 34


def _ticks(lo, hi, about=6):
    """Round tick values inside [lo, hi], about `about` of them (steps of 1, 2 or 5 × 10^k)."""
    rough = (hi - lo) / about
    power = 10.0 ** np.floor(np.log10(rough))
    step = power * min((m for m in (1, 2, 5, 10) if m * power >= rough), default=10)
    return np.arange(np.ceil(lo / step), np.floor(hi / step) + 1) * step


def _shade(k, n):
    """The k-th of n contour levels: darker for lower loss, so the valley reads as the bottom."""
    t = k / max(n - 1, 1)
    low, high = np.array([0x1f, 0x4e, 0x79]), np.array([0xb8, 0xc9, 0xd9])
    r, g, b = (low + t * (high - low)).round().astype(int)
    return f"#{r:02x}{g:02x}{b:02x}"


def _num(t):
    return f"{t:g}".replace("-", "−")


def _text(s):
    return html.escape(str(s))


def png(plot, path, dpi):
    """The same picture drawn with matplotlib (without pyplot: no backend is chosen here)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.collections import LineCollection
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError("descent_plot: a PNG needs matplotlib (pip install matplotlib); "
                          "save(...svg) needs nothing") from e
    ratio = (plot.ys[-1] - plot.ys[0]) / (plot.xs[-1] - plot.xs[0])
    fig = Figure(figsize=(9.0, max(3.0, 5.2 * ratio + 0.9)))
    FigureCanvasAgg(fig)
    ax = fig.add_axes([0.09, 0.1, 0.58, 0.8])
    for k, segs in enumerate(plot.contours):
        ax.add_collection(LineCollection(segs, colors=_shade(k, len(plot.levels)), linewidths=0.9))
    points, vectors = arrow_vectors(plot)
    if len(points):
        ax.quiver(points[:, 0], points[:, 1], vectors[:, 0], vectors[:, 1], angles="xy",
                  scale_units="xy", scale=1, color=ARROW, width=0.003, zorder=2)
    entries = [(colour, f"{first}\n{second}" if second else first)
               for _, colour, first, second in _legend_lines(plot)]
    for (colour, label), points in zip(entries, plot.paths.values()):  # the paths come first
        done = points[: _finite_prefix(points)]
        ax.plot(done[:, 0], done[:, 1], "-o", color=colour, ms=3, lw=1.8, alpha=0.9, zorder=3,
                label=label)
        ax.plot(*done[-1], "o", color=colour, ms=6, zorder=3)
    (start, label), (arrow, arrow_label), (shade, contour_label) = entries[len(plot.paths):]
    ax.plot(*_start(plot), "o", mfc="white", mec=start, mew=2, ms=8,
            zorder=4, label=label)
    ax.plot([], [], color=arrow, marker=r"$\rightarrow$", ls="", ms=14, label=arrow_label)
    ax.plot([], [], color=shade, lw=1, label=contour_label)
    ax.set_xlim(plot.xs[0], plot.xs[-1])
    ax.set_ylim(plot.ys[0], plot.ys[-1])
    ax.set_aspect("equal")
    ax.set_xlabel(plot.names[0])
    ax.set_ylabel(plot.names[1])
    ax.set_title(plot.title, fontsize=11)
    ax.legend(loc="upper left", bbox_to_anchor=(1.03, 1.0), fontsize=9, frameon=False,
              labelspacing=1.0)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
