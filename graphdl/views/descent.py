"""Gradient descent drawn: `gd.descent_plot` for a loss of two scalar parameters.

    w1, w2 = gd.input("w1", ()), gd.input("w2", ())
    loss = 0.5 * (w1 * w1 + 10 * w2 * w2)
    plot = gd.descent_plot(loss, [w1, w2], steps=30, start=(-2.0, 1.0))
    plot.save("descent.svg"); plot.save("descent.png")   # the PNG needs matplotlib
    plot.paths["sgd"]                                      # (31, 2): the start, then each step

The picture is the lecture's argument, f(w + Δw) − f(w) ≈ ∇f·Δw, which falls fastest for Δw
along −∇f: the loss's contour lines, the downhill direction −∇f on a grid of points, and the
path of each optimizer from one start. Every number is graphdl's: the contours and the arrows
come from one compiled function of the loss and its gradient (`gd.compile([loss,
*gd.grad(loss, params)])`) called at each grid point, each path from that optimizer's compiled
training step (`gd.compile(loss, updates=opt.updates)`) taken `steps` times. Drawing is in
`descent_render`.
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass

import numpy as np

from graphdl import autodiff, codegen, ir, optim
from graphdl.errors import GraphError
from graphdl.ir import Node, describe
from graphdl.ops import leaf
from graphdl.views import descent_render

DEFAULT_OPTIMIZERS = {  # shown when `optimizers` is not given
    "sgd": functools.partial(optim.sgd, lr=0.1),
    "momentum": functools.partial(optim.sgd, lr=0.1, momentum=0.9),
    "adam": functools.partial(optim.adam, lr=0.1),
}
PAD = 0.15  # the default box: the paths' extent, widened by this fraction on each side
MAX_ASPECT = 2.0  # the default box is widened until neither side is over twice the other


@dataclass(eq=False, repr=False)
class DescentPlot:
    """What `descent_plot` computed, and its picture: `svg()`, `save(path)` (.svg, or .png with
    matplotlib), inline HTML in notebooks.

    names: the two parameters' names (the x and y axes). xs, ys, surface: the loss on the grid,
    surface[j, i] at (xs[i], ys[j]). levels, and contours: each level's line segments ((K, 2,
    2): two (x, y) ends each). arrow_points, arrow_gradients: the arrow grid
    ((K, 2)) and ∇f there; the arrows are drawn along −∇f. paths: optimizer label -> (steps + 1,
    2) parameter values, the start first; losses: label -> the loss at each of those points."""

    names: tuple
    xs: np.ndarray
    ys: np.ndarray
    surface: np.ndarray
    levels: np.ndarray
    contours: list
    arrow_points: np.ndarray
    arrow_gradients: np.ndarray
    paths: dict
    losses: dict
    title: str

    def svg(self):
        """The picture as SVG text."""
        return descent_render.svg(self)

    def save(self, path, dpi=100):
        """Write the picture to `path`: SVG for a .svg name; a .png needs matplotlib."""
        path = str(path)
        if path.endswith(".svg"):
            with open(path, "w", encoding="utf-8") as f:
                f.write(self.svg())
        elif path.endswith(".png"):
            descent_render.png(self, path, dpi)
        else:
            raise GraphError(f"descent_plot: save writes .svg or .png files, got {path!r}")
        return path

    def _repr_html_(self):
        return f'<div class="gd-descent">{self.svg()}</div>'

    def __repr__(self):
        steps = len(next(iter(self.paths.values()))) - 1
        return (f"<DescentPlot of {self.names[0]!r}, {self.names[1]!r}: {steps} steps of "
                f"{', '.join(self.paths)}>")


def descent_plot(loss, params, optimizers=None, steps=20, start=(-1.5, 1.5), *, values=None,
                 xlim=None, ylim=None, grid=81, arrows=15, levels=12, spacing="linear",
                 title=None):
    """Draw gradient descent on `loss`, a floating-point scalar of the two scalar inputs
    `params` (the x and y axes).

    optimizers: label -> a `gd.optim` optimizer of `loss` and `params`, or a function (loss,
        params) -> one (`functools.partial(gd.optim.sgd, lr=0.1)`); default `DEFAULT_OPTIMIZERS`
        (sgd, sgd with momentum 0.9, adam; lr 0.1). Each takes `steps` compiled steps from
        `start`, a pair of numbers. values: the other inputs of the loss (name -> value), fed
        unchanged to every call. xlim, ylim: the box drawn; default the paths' extent, padded.
        grid: points per side of the contour grid; arrows: per side of the arrow grid (0: none).
        levels: how many contour levels (evenly spaced in the grid's values, or, with
        spacing="log", in the logarithm of their height above the lowest) or the levels."""
    x, y = _two_scalars(loss, params)
    feeds = _other_inputs(loss, (x, y), values)
    start = _pair(start, "start")
    xlim, ylim = (None if lim is None else _pair(lim, name, increasing=True)
                  for lim, name in ((xlim, "xlim"), (ylim, "ylim")))
    _count(steps, "steps", 0)
    _count(grid, "grid", 3)
    if arrows != 0:
        _count(arrows, "arrows", 2)
    if spacing not in ("linear", "log"):
        raise GraphError(f"descent_plot: spacing must be 'linear' or 'log', got {spacing!r}")

    optimizers = DEFAULT_OPTIMIZERS if optimizers is None else dict(optimizers)
    if not optimizers:
        raise GraphError("descent_plot: no optimizers given")

    surface = _compiled(loss, x, y, feeds)
    paths, losses = {}, {}
    for label, spec in optimizers.items():
        path = _descend(loss, (x, y), spec, label, steps, start, feeds)
        on = np.array([surface(*point)[0] if np.isfinite(point).all() else np.nan
                       for point in path])
        gone = np.maximum.accumulate(~np.isfinite(on))  # the point or its loss overflowed
        path[gone], on[gone] = np.nan, np.nan
        paths[label], losses[label] = path, on

    xlim, ylim = _box(xlim, ylim, paths)
    xs, ys = np.linspace(*xlim, grid), np.linspace(*ylim, grid)
    heights = np.array([[surface(a, b)[0] for a in xs] for b in ys])
    levels = _levels(heights, levels, spacing)
    at = np.stack(np.meshgrid(np.linspace(*xlim, arrows), np.linspace(*ylim, arrows)),
                  axis=-1).reshape(-1, 2)
    gradients = np.array([surface(a, b)[1:] for a, b in at]).reshape(-1, 2)
    if title is None:
        title = (f"gradient descent on {loss.name or 'the loss'}: {steps} steps from "
                 f"({start[0]:g}, {start[1]:g})")
    return DescentPlot(
        (x.name, y.name), xs, ys, heights, levels,
        [descent_render.contour(xs, ys, heights, level) for level in levels],
        at, gradients, paths, losses, title)


def _two_scalars(loss, params):
    """The two parameters: distinct floating-point 0-d inputs of the scalar float `loss`."""
    if not isinstance(loss, Node) or loss.shape != () or loss.dtype.kind != "f":
        shown = describe(loss) if isinstance(loss, Node) else repr(loss)
        raise GraphError(f"descent_plot: the loss must be a floating-point scalar node, got "
                         f"{shown}" + (f" of shape {ir.format_shape(loss.shape)} and dtype "
                                       f"{loss.dtype}" if isinstance(loss, Node) else ""))
    params = [params] if isinstance(params, Node) else list(params)
    shown = ", ".join(_shown(p) for p in params)
    if len(params) != 2 or not all(isinstance(p, Node) and p.op is leaf.INPUT and p.shape == ()
                                   and p.dtype.kind == "f" for p in params):
        raise GraphError(f"descent_plot: params must be two scalar (0-d) floating-point "
                         f"gd.input nodes, the picture's x and y axes; got [{shown}]")
    if params[0] is params[1]:
        raise GraphError(f"descent_plot: params must be two different inputs, got [{shown}]")
    return params


def _shown(p):
    if not isinstance(p, Node):
        return repr(p)
    return f"{describe(p)} of shape {ir.format_shape(p.shape)} {p.dtype}"


def _other_inputs(loss, params, values):
    """The feeds of the loss's inputs other than `params`, from `values`; each one required."""
    values, known = dict(values or {}), {id(p) for p in params}
    for node in ir.topological_order([loss]):
        if node.op is leaf.INPUT and id(node) not in known and node.name not in values:
            raise GraphError(f"descent_plot: the loss also depends on input {describe(node)}; "
                             f"give its value in values={{{node.name!r}: ...}}")
    return values


def _compiled(loss, x, y, feeds):
    """(a, b) -> (loss, ∂loss/∂x, ∂loss/∂y) at x = a, y = b: one compiled function."""
    fn = codegen.compile([loss, *autodiff.grad(loss, [x, y])])

    def at(a, b):
        with np.errstate(all="ignore"):  # far from the valley a loss may overflow: drawn so
            return [float(v) for v in fn(**feeds, **{x.name: np.array(a, x.dtype),
                                                     y.name: np.array(b, y.dtype)})]

    return at


def _descend(loss, params, spec, label, steps, start, feeds):
    """(steps + 1, 2): `start`, then the parameters after each compiled step of the optimizer."""
    opt = spec if isinstance(spec, optim.Optimizer) else spec(loss, list(params))
    if not isinstance(opt, optim.Optimizer) or not all(p in opt.updates for p in params):
        raise GraphError(f"descent_plot: optimizer {label!r} must be a gd.optim optimizer of "
                         f"{params[0].name!r} and {params[1].name!r}, or a function (loss, "
                         f"params) -> one; got {opt!r}")
    step = codegen.compile(loss, updates=opt.updates)
    current = {p.name: np.array(v, p.dtype) for p, v in zip(params, start, strict=True)}
    state = opt.init()
    path = np.full((steps + 1, 2), np.nan)
    path[0] = start
    with np.errstate(all="ignore"):  # a diverging path (too large a step) is worth seeing
        for k in range(1, steps + 1):
            step(**feeds, **current, **state)  # updates `current` and `state` in place
            path[k] = [current[p.name] for p in params]
            if not np.isfinite(path[k]).all():
                break  # diverged: the rest stays NaN
    return path


def _box(xlim, ylim, paths):
    """The box drawn: as given, else the extent of the paths that did not diverge (and the
    start) padded by PAD, widened so that one unit is as long on both axes in a picture of
    aspect at most MAX_ASPECT."""
    points = np.concatenate([path[:1] for path in paths.values()]
                            + [path for path in paths.values() if np.isfinite(path).all()])
    lo, hi = points.min(axis=0), points.max(axis=0)
    span = np.where(hi > lo, hi - lo, np.maximum(1.0, np.abs(lo)))  # a path that stays put
    lo, hi = lo - PAD * span, hi + PAD * span
    span = np.maximum(hi - lo, (hi - lo).max() / MAX_ASPECT)
    middle = (lo + hi) / 2
    box = [(m - s / 2, m + s / 2) for m, s in zip(middle, span)]
    return [g if g is not None else b for g, b in zip((xlim, ylim), box)]


def _levels(heights, levels, spacing):
    """The contour levels: `levels` of them strictly inside the grid's range of values, or the
    sorted values given."""
    if not isinstance(levels, numbers.Integral):
        chosen = np.sort(np.asarray(levels, dtype=float).ravel())
        if chosen.size == 0 or not np.isfinite(chosen).all():
            raise GraphError(f"descent_plot: levels must be a count or finite numbers, got "
                             f"{levels!r}")
        return chosen
    _count(levels, "levels", 1)
    finite = heights[np.isfinite(heights)]
    if not finite.size:
        raise GraphError("descent_plot: the loss is not finite anywhere in the box drawn; give "
                         "xlim and ylim")
    lo, hi = finite.min(), finite.max()
    if hi <= lo:  # a flat loss: one level, its value (no range to space levels over)
        return np.array([lo])
    if spacing == "log":
        return lo + np.geomspace((hi - lo) * 1e-3, hi - lo, levels + 1)[:-1]
    return np.linspace(lo, hi, levels + 2)[1:-1]


def _pair(value, what, increasing=False):
    """Two finite numbers (in increasing order where `increasing`)."""
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise GraphError(f"descent_plot: {what} must be a pair of numbers, got {value!r}")
    if not (math.isfinite(a) and math.isfinite(b)) or (increasing and not a < b):
        raise GraphError(f"descent_plot: {what} must be two finite numbers"
                         + (" (low, high)" if increasing else "") + f", got {value!r}")
    return a, b


def _count(value, what, least):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise GraphError(f"descent_plot: {what} must be an integer >= {least}, got {value!r}")
