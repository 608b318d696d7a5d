"""Convolution and pooling window by window: the model of `Explanation.windows`.

For each `conv2d`, `max_pool2d` or `avg_pool2d` gate of a small explained graph, one `Position`
per output cell: the window's input cells with their numbers, what is summed (the products with
the kernel, the values to average) or compared (max), and the output cell, read from graphdl's
own evaluation of the gate. With a gradient, each position also says where its upstream gradient
flows back: the kernel weight times the gradient into every window cell (conv), g ÷ the divisor
into every cell (average), all of g into the window's arg-max (max: the cell graphdl's pullback
picks, the first maximum in scan order). The contributions summed per input cell are checked
against the gradient graphdl's pullback computed for the wire (`checked`).

Bounded: a gate whose input is larger than `MAX_SIDE` × `MAX_SIDE` (or whose kernel reads more
than `MAX_PLANES` channels) has no positions and a `note` saying why; beyond `MAX_POSITIONS`
output cells only the first are told. Written out by `window_render`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graphdl import runtime
from graphdl.ops import conv as cv

MAX_SIDE = 8  # the largest input height and width drawn as a grid
MAX_POSITIONS = 40  # output cells told, in (batch, channel, row, column) order
MAX_PLANES = 3  # input channels one convolution window may read

KINDS = {cv.CONV2D: "conv", cv.MAX_POOL2D: "max", cv.AVG_POOL2D: "avg"}


@dataclass
class Position:
    """One output cell (n, c, row, col) of the gate and the window it reads.

    `cells`: the window's input cells (channel, row, col) in scan order, rows and columns of the
    unpadded input (outside it: padding); `inputs` their values (the padding's fill); `weights`
    the kernel entries (conv); `terms` what is summed or compared; `total` their sum (conv),
    mean (avg) or maximum, as told; `output` the gate's value from graphdl's evaluation.
    `upstream`: the output's gradient at the cell; `routes`: [(cell, contribution)] it sends to
    the input's gradient; `divisor`: an average's divisor; `winner`: the arg-max's index."""

    index: tuple
    cells: list
    inputs: list
    weights: list | None
    terms: list
    total: float
    output: float
    divisor: float | None = None
    winner: int | None = None
    upstream: float | None = None
    routes: list = field(default_factory=list)


class WindowSteps:
    """The windows of one conv/pool gate of an explained circuit (see the module's doc)."""

    def __init__(self, ex, gate):
        c = ex.circuit
        self.ex, self.gate, self.node = ex, gate, gate.node
        self.kind = KINDS[gate.node.op]
        self.attrs = dict(gate.node.attrs)
        self.x = np.asarray(c.value(gate.node.inputs[0]))
        self.w = np.asarray(c.value(gate.node.inputs[1])) if self.kind == "conv" else None
        self.y = np.asarray(c.value(gate.node))
        self.g = c.grad(gate.node)
        wire = c.wire_grad(gate, 0)
        self.input_grad = None if wire is None else np.asarray(wire)  # graphdl's pullback's
        self.total_positions = int(np.prod(self.y.shape))
        self.note = self._too_big()
        self.positions = [] if self.note else self._positions()
        if not self.note and len(self.positions) < self.total_positions:
            self.note = (f"the first {len(self.positions)} of {self.total_positions} output "
                         f"cells are shown (at most {MAX_POSITIONS})")
        self.checked = self._check() if self.positions and self.has_grad else None

    @property
    def has_grad(self):
        return self.g is not None and self.input_grad is not None

    @property
    def handle(self):
        return self.gate.handle

    @property
    def x_handle(self):
        return self.ex.circuit.handle(self.node.inputs[0])

    @property
    def w_handle(self):
        return self.ex.circuit.handle(self.node.inputs[1]) if self.kind == "conv" else None

    @property
    def padding(self):
        return self.attrs["padding"]  # (top, bottom, left, right)

    @property
    def kernel(self):
        return self.w.shape[2:] if self.kind == "conv" else self.attrs["kernel"]

    @property
    def title(self):
        k, s, p = self.kernel, self.attrs["stride"], self.padding
        d = self.attrs.get("dilation", (1, 1))
        what = self.node.op.name
        pad = ""
        if any(p):  # one number per axis where both sides agree, else all four sides
            pad = f", padding {_pair_text(p[::2]) if p[::2] == p[1::2] else p}"
        dil = f", dilation {_pair_text(d)}" if d != (1, 1) else ""
        return (f"{what} {self.handle}: {_pair_text(k, '×')} window at stride "
                f"{_pair_text(s)}{pad}{dil} over {self.x_handle} "
                f"{_pair_text(self.x.shape[2:], '×')}")

    def _too_big(self):
        h, w = self.x.shape[2:]
        if max(h, w) > MAX_SIDE:
            return (f"{self.x_handle} is {h}×{w}: windows are drawn for inputs up to "
                    f"{MAX_SIDE}×{MAX_SIDE} only (explain a smaller example)")
        if self.kind == "conv" and self.w.shape[1] > MAX_PLANES:
            return (f"each window reads {self.w.shape[1]} input channels: windows are drawn "
                    f"for up to {MAX_PLANES} only")
        return ""

    # -- the positions --------------------------------------------------------------------------
    def _positions(self):
        index = list(np.ndindex(*self.y.shape))[:MAX_POSITIONS]
        arg = self._argmax() if self.kind == "max" else None
        div = self._divisors() if self.kind == "avg" else None
        return [self._position(i, arg, div) for i in index]

    def _window(self, index):
        """The input cells (channel, row, col) the output cell `index` reads, in scan order."""
        _, c, r, q = index
        (kh, kw), (sh, sw) = self.kernel, self.attrs["stride"]
        dh, dw = self.attrs.get("dilation", (1, 1))
        top, left = r * sh - self.padding[0], q * sw - self.padding[2]
        planes = [c]
        if self.kind == "conv":
            per_group = self.w.shape[0] // self.attrs["groups"]
            cg = self.w.shape[1]
            planes = range((c // per_group) * cg, (c // per_group + 1) * cg)
        return [(p, top + i * dh, left + j * dw) for p in planes for i in range(kh)
                for j in range(kw)]

    def inside(self, cell):
        _, r, q = cell
        h, w = self.x.shape[2:]
        return 0 <= r < h and 0 <= q < w

    def _read(self, n, cell):
        """The input's value at `cell`, or what the op pads with."""
        if self.inside(cell):
            return float(self.x[(n, *cell)])
        return float(cv.lowest(self.x.dtype)) if self.kind == "max" else 0.0

    def _position(self, index, arg, div):
        n, c = index[:2]
        cells = self._window(index)
        inputs = [self._read(n, cell) for cell in cells]
        output = float(self.y[index])
        up = None if not self.has_grad else float(self.g[index])
        if self.kind == "conv":
            weights = [float(v) for v in self.w[c].ravel()]
            terms = [a * b for a, b in zip(inputs, weights)]
            pos = Position(index, cells, inputs, weights, terms, float(sum(terms)), output)
            if up is not None:
                pos.routes = [(cell, wt * up) for cell, wt in zip(cells, weights)
                              if self.inside(cell)]
        elif self.kind == "avg":
            d = float(div[index[2:]])
            pos = Position(index, cells, inputs, None, inputs, sum(inputs) / d, output, divisor=d)
            if up is not None:
                pos.routes = [(cell, up / d) for cell in cells if self.inside(cell)]
        else:
            best, real = arg
            k = int(best[index]) if real[index] else None
            pos = Position(index, cells, inputs, None, inputs, max(inputs), output, winner=k)
            if up is not None and k is not None:
                pos.routes = [(cells[k], up)]
        pos.upstream = up
        return pos

    def _argmax(self):
        """Each window's arg-max as graphdl's max-pool gradient routes it (its own helper)."""
        best, real, _ = cv._argmax(self.x, **{k: self.attrs[k] for k in cv.POOL_ATTRS})
        return best, real

    def _divisors(self):
        out = self.y.shape[2:]
        names = ("kernel", "stride", "padding", "count_include_pad")
        kernel, stride, padding, count = (self.attrs[k] for k in names)
        return runtime._avg_divisor(self.x.shape[2:], kernel, stride, padding, out, count)

    # -- renderings ------------------------------------------------------------------------------
    def __str__(self):
        from graphdl.views import window_render

        return window_render.text(self)

    def __repr__(self):
        return f"<WindowSteps: {len(self.positions)} windows of {self.handle}>"

    def strip(self, which="both", per_row=4):
        """The frames side by side as a Graphviz `Drawing` (`.render(outfile="w.png")`, SVG in
        a notebook): "forward", "backward" or "both"."""
        from graphdl.views import window_render

        return window_render.strip(self, which, per_row)

    def _repr_html_(self):
        """Jupyter's display: these frames alone in a stepper."""
        from graphdl.views.stepper import windows_fragment

        return windows_fragment(self)

    # -- the gradient, cell by cell -------------------------------------------------------------
    def accumulated(self, upto=None):
        """The input's gradient summed from the routes of the first `upto` positions."""
        acc = np.zeros(self.x.shape, np.float64)
        for pos in self.positions[:upto]:
            for cell, v in pos.routes:
                acc[(pos.index[0], *cell)] += v
        return acc

    def _check(self):
        """Whether the routes, summed per cell, give graphdl's gradient of the input (when every
        output cell is told; within the graph's precision)."""
        if len(self.positions) < self.total_positions:
            return None
        tol = self.ex.rel_tol
        scale = max(float(np.max(np.abs(self.input_grad))), 1.0)
        return bool(np.allclose(self.accumulated(), self.input_grad, rtol=tol, atol=tol * scale))


def window_gates(ex):
    """The `WindowSteps` of every conv/pool gate of the explanation, in the graph's order."""
    return [WindowSteps(ex, g) for g in ex.circuit.gates
            if g.kind == "op" and g.node.op in KINDS and ex.circuit.value(g.node) is not None]


def _pair_text(pair, sep=", "):
    a, b = pair
    return str(a) if a == b and sep == ", " else f"{a}{sep}{b}"
