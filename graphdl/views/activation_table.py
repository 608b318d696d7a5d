"""The lecture's table of activation functions (`gd.activation_table`): for each elementwise op,
built-in or user-defined, its name, its formula (from its SymPy form), its derivative as SymPy
gives it and in the lecture's simplified form where one exists, and plots of the function and
of its derivative. The plotted values are computed by graphdl: the op applied to a grid and its
gradient (`gd.grad`), compiled. Drawn by `activation_draw`: SVG always, PNG where matplotlib is
installed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy

from graphdl.errors import GraphError
from graphdl.ir import Node, describe, topological_order
from graphdl.ops import leaf
from graphdl.ops.composite import find_composite
from graphdl.ops.scalar import Sigmoid
from graphdl.views.activation_draw import to_png, to_svg
from graphdl.views.numbers import fmt
from graphdl.views.symbolic import to_sympy
from graphdl.views.teach_printers import as_text

DEFAULT = ("sigmoid", "tanh", "relu")
X = sympy.Symbol("x", real=True)
# Functions whose derivative may jump at 0: there the table states what graphdl's gradient gives.
STEPS = (sympy.Max, sympy.Min, sympy.Abs, sympy.Heaviside, sympy.sign, sympy.Piecewise,
         sympy.floor, sympy.ceiling)


# Simplified derivatives (the lecture's, and softplus′ = σ), by op name; kept only where they
# agree with the gradient graphdl computes (a user op may reuse a name). Each takes graphdl's
# gradient at 0 (relu′(0)).
SIMPLIFIED = {
    "sigmoid": lambda g0: (Sigmoid(X) * (1 - Sigmoid(X)), "σ′ = σ(1 − σ)"),
    "tanh": lambda g0: (1 - sympy.tanh(X) ** 2, "tanh′ = 1 − tanh²"),
    "relu": lambda g0: (sympy.Heaviside(X, sympy.nsimplify(g0)),
                        "relu′ = 1 for x > 0, 0 for x < 0"),
    "softplus": lambda g0: (Sigmoid(X), "softplus′ = σ(x)"),
}


@dataclass
class Row:
    """One op of the table: its SymPy forms and the values plotted (`y` = f(x), `dy` = f′(x),
    both computed by graphdl)."""

    name: str
    formula: sympy.Expr  # the op's SymPy form, in x
    elementary: sympy.Expr  # the same in elementary functions: σ(x) = 1/(1 + exp(-x))
    derivative: sympy.Expr  # sympy.diff of `elementary`
    simplified: sympy.Expr | None  # the simplified form (the lecture's), where one exists
    simplified_text: str
    at_zero: float | None  # graphdl's gradient at 0, where the derivative may jump there
    x: np.ndarray
    y: np.ndarray
    dy: np.ndarray

    def formula_text(self):
        lhs, rhs = f"{self.name}(x)", as_text(self.elementary)
        return lhs if rhs.lower() == lhs.lower() else f"{lhs} = {rhs}"  # abs(x) = Abs(x)

    def derivative_lines(self):
        lines = [f"SymPy: {self.name}′(x) = {as_text(self.derivative)}"]
        if self.simplified_text:
            lines.append(f"simplified: {self.simplified_text}")
        if self.at_zero is not None:
            lines.append(f"at x = 0 graphdl gives {fmt(self.at_zero, 3, True)} (the dot)")
        return lines


def activation_table(*ops, range=(-4, 4), points=161):
    """The lecture's activation table for `ops` (default sigmoid, tanh, relu): each a public
    function (`gd.gelu`), an op (`gd.relu`, a `gd.elementwise_op`) or its name ("softplus"),
    elementwise of one argument. `range`: the x interval plotted, `points` the grid's size."""
    lo, hi = (float(v) for v in range)
    if not lo < hi:
        raise GraphError(f"activation_table: range must be (low, high) with low < high, got "
                         f"{range!r}")
    grid = np.linspace(lo, hi, points)
    if lo < 0 < hi:
        grid = np.union1d(grid, [0.0])  # the value at 0 is stated: compute it
    return ActivationTable([_row(op, grid) for op in (ops or DEFAULT)])


def _row(op, grid):
    fn, name = _resolve(op)
    xs = _input(())
    try:
        formula = _formula(_apply(fn, name, xs), xs)
    except TypeError as e:  # an op of two arguments given one: maximum(x)
        raise _not_unary(name, e) from e
    elementary = formula.replace(lambda e: type(e).__module__ == Sigmoid.__module__,
                                 lambda e: e.rewrite(sympy.exp))
    derivative = sympy.diff(elementary, X)
    y, dy = _values(fn, name, grid)
    at_zero = float(dy[grid == 0][0]) if elementary.has(*STEPS) and 0 in grid else None
    simplified, text = _simplified(name, grid, dy)
    return Row(name, formula, elementary, derivative, simplified, text, at_zero, grid, y, dy)


def _not_unary(name, error):
    return GraphError(f"activation_table: {name} is not an elementwise function of one "
                      f"argument: {error}")


def _resolve(op):
    """The function to apply and the name to show."""
    if isinstance(op, str):
        import graphdl

        fn = getattr(graphdl, op, None)
        if not callable(fn):
            raise GraphError(f"activation_table: graphdl has no op named {op!r}")
        return fn, op
    if not callable(op):
        raise GraphError(f"activation_table: expected an op, a function or an op's name, got "
                         f"{op!r}")
    return op, getattr(op, "name", None) or getattr(op, "__name__", repr(op))


def _input(shape):
    return leaf.input("x", shape, "float64")


def _apply(fn, name, x):
    """fn(x), refused unless it is elementwise: built of elementwise ops and constants only."""
    try:
        y = fn(x)
    except (GraphError, TypeError) as e:
        raise _not_unary(name, e) from e
    if not isinstance(y, Node) or y.shape != x.shape:
        raise GraphError(f"activation_table: {name} is not elementwise: it maps an input of "
                         f"shape {x.shape} to {getattr(y, 'shape', y)!r}")
    for n in topological_order([y]):
        if n is not x and n.op is not leaf.CONST and n.op.kind != "elementwise":
            raise GraphError(f"activation_table: {name} is not elementwise: it computes "
                             f"{describe(n)} (a {n.op.kind} op)")
    return y


def _formula(y, x):
    """The SymPy form of the scalar graph y = op(x): an elementwise composite's own (tanh(x),
    not 2σ(2x) - 1), else the closed form of its gates."""
    comp = find_composite(y.name) if y.name else None
    if comp is not None and comp.sym is not None and comp.arity == 1 and comp.fn(x) is y:
        return comp.sym(X)
    return to_sympy(y, sigmoid=True).xreplace({sympy.Symbol(x.name): X})


def _values(fn, name, grid):
    """fn on the grid and its derivative there, as graphdl computes them: the compiled op and
    its compiled gradient (of the sum, elementwise: the derivative at each point)."""
    import graphdl as gd

    x = _input(grid.shape)
    y = _apply(fn, name, x)
    with np.errstate(all="ignore"):  # outside an op's domain: NaN, left out of the plot
        y_val, dy_val = gd.compile([y, gd.grad(gd.sum(y), x)])(x=grid)
    y_val, dy_val = np.asarray(y_val, np.float64), np.asarray(dy_val, np.float64)
    # no slope where there is no value (the gradient of log is 1/x for x < 0 too)
    return y_val, np.where(np.isnan(y_val), np.nan, dy_val)


def _simplified(name, grid, dy):
    """The simplified form of the derivative and its text, where the op has one and it agrees
    with graphdl's gradient on the grid."""
    if name not in SIMPLIFIED:
        return None, ""
    g0 = float(np.interp(0.0, grid, dy))
    expr, text = SIMPLIFIED[name](g0)
    f = sympy.lambdify(X, expr.rewrite(sympy.exp), modules="numpy")
    with np.errstate(all="ignore"):
        ok = np.allclose(np.broadcast_to(f(grid), grid.shape), dy, rtol=1e-9, atol=1e-12,
                         equal_nan=True)
    return (expr, text) if ok else (None, "")


class ActivationTable:
    """The table: `rows` (`Row`), `svg()`, `png(path)`, and inline in notebooks."""

    def __init__(self, rows):
        self.rows = rows

    def svg(self, path=None):
        """The table as SVG text; written to `path` too where given."""
        text = to_svg(self.rows)
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        return text

    def png(self, path, dpi=100):
        """The table as a PNG at `path`, drawn with matplotlib (needed for this only)."""
        to_png(self.rows, path, dpi)
        return path

    def _repr_html_(self):
        return self.svg()

    def __repr__(self):
        return f"ActivationTable({', '.join(r.name for r in self.rows)})"

