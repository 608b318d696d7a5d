"""Scans along an axis: cumulative sums and products (NumPy's cumsum, cumprod), running maxima
and minima with their indices (PyTorch's cummax, cummin) and the running log-sum-exp
(PyTorch's logcumsumexp). `reverse` scans from the end, as ONNX's CumSum.

A cumulative sum is linear, its transpose the cumulative sum the other way. The cumulative
product's gradient is written with scans of its own, exact where the input holds zeros, so it
is differentiable again; logcumsumexp's is a reverse logcumsumexp of the gradient's positive
and negative parts, so nothing overflows. cummax and cummin are a primitive that finds the
running extremum's index (no gradient) and `gather_along` at it, so the gradient of a value
goes back to the element it came from, as PyTorch routes it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from graphdl import runtime
from graphdl.errors import GraphError
from graphdl.ir import describe
from graphdl.opdef import OpDef, register
from graphdl.ops import elementwise as ew
from graphdl.ops import indexing as ix
from graphdl.ops import leaf
from graphdl.ops import movement as mv
from graphdl.ops import reduce as rd


class Running(NamedTuple):
    """What cummax and cummin return, as PyTorch's: the values and their int64 indices."""

    values: object
    indices: object


def _scanned(function, x, axis, reverse):
    """function(x, axis), a NumPy scan, run from the end of the axis with `reverse`."""
    if reverse:
        return np.flip(function(np.flip(x, axis), axis), axis)
    return function(x, axis)


def _infer(name, dtype):
    """The shape rule of the scan `name`: x's shape, in dtype(x's dtype)."""
    def infer(inputs, attrs):
        x = inputs[0]
        if x.ndim == 0:
            raise GraphError(f"{name} of {describe(x)}: a 0-d array has no axis to scan along")
        return x.shape, np.dtype(dtype(x.dtype))
    return infer


def _widened(function):
    """The dtype NumPy's `function` gives: integers and bools widen to int64."""
    return lambda dtype: function(np.zeros(1, dtype), 0).dtype


def _label(symbol):
    def label(node, folded):
        way = " ←" if node.attrs["reverse"] else ""
        return f"{symbol}{way} axis {node.attrs['axis']}"
    return label


def _back(node):
    """The scan's direction reversed: each element of x is in every scan after it."""
    return "from the start" if node.attrs["reverse"] else "from the end"


def _cumsum_narration(w):
    return (f"{w.dx} = the cumulative sum of {w.dy} {_back(w.node)} along axis "
            f"{w.node.attrs['axis']} (each element of {w.x} is in every sum after it) → {w.shape}")


_ARRAY = "needs an array of one or more dimensions"

# cumsum: out[..., i, ...] = Σ_{j ≤ i} x[..., j, ...] (j ≥ i with reverse) along `axis`.
CUMSUM = register(OpDef(
    "cumsum", infer=_infer("cumsum", _widened(np.cumsum)),
    impl=lambda x, axis, reverse: _scanned(np.cumsum, x, axis, reverse),
    pullback=lambda n, g: [CUMSUM(g, axis=n.attrs["axis"], reverse=not n.attrs["reverse"])],
    closed_form=_ARRAY, kinks="linear", narration=_cumsum_narration,
))


# ---------------------------------------------------------------- cumprod
def _cumprod_grad(node, g):
    """dx_k = Σ_{i at or after k} g_i · Π_{j up to i, j ≠ k} x_j, exact with zeros (PyTorch's).

    Where x_k ≠ 0 the product of the others is y_i / x_k. At the first zero of a line it is
    the cumulative product of x with that zero made 1; at the second, that product with both
    zeros made 1, times the first zero: 0 in value, with the slope in the first zero that the
    second derivative needs; past the second zero it is 0 whatever moves. Each branch is a
    function of x that is right near x, so the gradient is differentiable again."""
    x, axis, reverse = node.inputs[0], node.attrs["axis"], node.attrs["reverse"]

    def later(v):  # Σ over the elements at or after each one, in the scan's order
        return CUMSUM(v, axis=axis, reverse=not reverse)

    zero = ew.EQUAL(x, 0)
    seen = ew.WHERE(zero, CUMSUM(zero, axis=axis, reverse=reverse), 0)  # a zero's rank
    first, second = ew.EQUAL(seen, 1), ew.EQUAL(seen, 2)
    past_first = CUMPROD(ew.WHERE(first, 1, x), axis=axis, reverse=reverse)
    past_two = CUMPROD(ew.WHERE(first, 1, ew.WHERE(second, 1, x)), axis=axis, reverse=reverse)
    first_zero = rd.SUM(ew.WHERE(first, x, 0), axes=(axis,), keepdims=True)
    nonzero = later(g * node) / ew.WHERE(zero, 1, x)
    return ew.WHERE(first, later(g * past_first),
                    ew.WHERE(second, first_zero * later(g * past_two),
                             ew.WHERE(zero, 0, nonzero)))


def _cumprod_narration(w):
    return (f"{w.dx} = Σ of {w.dy} times the product of the other elements of {w.x}, over the "
            f"products {_back(w.node)} along axis {w.node.attrs['axis']} that hold each element "
            f"(exact where {w.x} holds zeros, as PyTorch's) → {w.shape}")


# cumprod: out[..., i, ...] = Π_{j ≤ i} x[..., j, ...] (j ≥ i with reverse) along `axis`.
CUMPROD = register(OpDef(
    "cumprod", infer=_infer("cumprod", _widened(np.cumprod)),
    impl=lambda x, axis, reverse: _scanned(np.cumprod, x, axis, reverse),
    pullback=lambda n, g: [_cumprod_grad(n, g)], label=_label("Π cumulative"),
    closed_form=_ARRAY, kinks="smooth", narration=_cumprod_narration,
))


# ---------------------------------------------------------------- linear_scan
def _step(v, axis, forward):
    """v moved one place along `axis`, toward the end (`forward`) or the start, 0 filling the
    place left."""
    source, target = ((None, -1, None), (1, None, None))[::1 if forward else -1]
    everything = ((None, None, None),) * v.ndim

    def at(where):
        return everything[:axis] + (where,) + everything[axis + 1:]
    return mv.UNSLICE(mv.SLICE(v, index=at(source)), v, index=at(target))


def _linear_scan_grad(node, u):
    """s = L(a, g) is linear in g; its transpose runs the other way, each factor a moved to
    the element it joins: v_k = u_k + a_next · v_next. And ∂s/∂a_k = s before k times the sums
    after it: v_k · s_previous."""
    a, axis, reverse = node.inputs[0], node.attrs["axis"], node.attrs["reverse"]
    v = LINEAR_SCAN(_step(a, axis, reverse), u, axis=axis, reverse=not reverse)
    return [_step(node, axis, not reverse) * v, v]


def _linear_scan_infer(inputs, attrs):
    a, g = inputs
    if not mv.shapes_match(a.shape, g.shape) or a.dtype != g.dtype or g.ndim == 0:
        raise GraphError(f"linear_scan: {describe(a)} and {describe(g)} must be arrays of one "
                         f"shape and dtype, of one or more dimensions")
    return g.shape, g.dtype


# linear_scan: s_k = g_k + a_k · s_(k-1) along `axis` (s_(k+1) with `reverse`), s = g at the
# scan's first element (a is unused there): a first-order linear recurrence, the exact and
# stable form of logcumsumexp's gradient, and closed under differentiation.
LINEAR_SCAN = register(OpDef(
    "linear_scan", infer=_linear_scan_infer,
    impl=lambda a, g, axis, reverse: runtime._linear_scan(a, g, axis, reverse),
    pullback=_linear_scan_grad, label=_label("linear scan"),
    closed_form="needs arrays of one or more dimensions", kinks="smooth",
    narration=lambda w: (f"{w.dx}: the recurrence run the other way over {w.dy}, for g; times "
                         f"the previous sums, for a → {w.shape}"),
))


# ---------------------------------------------------------------- logcumsumexp
def _logcumsumexp_grad(node, g):
    """dx_k = Σ_{i at or after k} g_i e^(x_k − y_i) = e^(x_k − y_k) · s_k, where s runs back
    over g with the factors a_k = e^(y_k − y_next) = σ(y_k − x_next), all in [0, 1]: nothing
    overflows, and the gradient is linear in g, so its own gradient is right where g is 0.

    Where y_k is infinite (-inf: x is -inf up to k; +inf: an x before was +inf) the weight is
    0 (PyTorch's NaN where x_k is that infinity too) and a_k is 0, so that no NaN reaches the
    other elements, nor their second derivatives (each branch is cut twice: no NaN slope)."""
    x, axis, reverse = node.inputs[0], node.attrs["axis"], node.attrs["reverse"]
    infinite = ew.EQUAL(ew.ABS(node), np.inf)

    def finite(v):
        return ew.WHERE(infinite, 0, v)

    x_next = _step(x, axis, forward=reverse)  # x_(k+1), or x_(k-1) with reverse
    a = finite(ew.SIGMOID(finite(node - x_next)))
    s = LINEAR_SCAN(a, g, axis=axis, reverse=not reverse)
    at_infinity = ew.WHERE(ew.EQUAL(x, node), np.nan, 0)
    return ew.WHERE(infinite, at_infinity, ew.EXP(finite(x - node)) * s)


def _logcumsumexp_infer(inputs, attrs):
    if inputs[0].dtype.kind != "f":
        raise GraphError(f"logcumsumexp of {describe(inputs[0])}: expects floating-point "
                         f"input, got {inputs[0].dtype}; convert it first with gd.cast")
    return _infer("logcumsumexp", lambda dtype: dtype)(inputs, attrs)


# logcumsumexp: out[..., i, ...] = log Σ_{j ≤ i} e^x[..., j, ...] (j ≥ i with reverse).
LOGCUMSUMEXP = register(OpDef(
    "logcumsumexp", infer=_logcumsumexp_infer,
    impl=lambda x, axis, reverse: _scanned(runtime._logcumsumexp, x, axis, reverse),
    pullback=lambda n, g: [_logcumsumexp_grad(n, g)], label=_label("log Σ exp cumulative"),
    closed_form=_ARRAY, kinks="smooth",
    narration=lambda w: (f"{w.dx} = Σ of {w.dy} times softmax weights e^({w.x} − {w.y}) over the "
                         f"sums {_back(w.node)} along axis {w.node.attrs['axis']} that hold each "
                         f"element → {w.shape}"),
))


# ---------------------------------------------------------------- cumargmax, cumargmin
def _running_arg(name, largest):
    """The int64 index of the running maximum (minimum) along `axis`, PyTorch's: of equal
    values the one seen last; a NaN is the extremum from where it stands, the last NaN seen
    its index. No gradient: its value is an index."""
    return register(OpDef(
        name, infer=_infer(name, lambda dtype: np.int64),
        impl=lambda x, axis, reverse: runtime._running_arg(x, axis, reverse, largest),
        pullback=lambda n, g: [None], label=_label(name),
        narration="no gradient flows through it: its value is indices",
        closed_form=_ARRAY, kinks="no gradient flows through it",
    ))


CUMARGMAX = _running_arg("cumargmax", True)
CUMARGMIN = _running_arg("cumargmin", False)


# ---------------------------------------------------------------- public functions
def _operand(what, x, axis, dim):
    """(x as a node, the axis): NumPy's `axis` or PyTorch's `dim`, one at most; None scans x
    flattened (NumPy's; PyTorch requires the axis)."""
    (x,) = leaf.lift_all([x])
    if dim is not None:
        if axis is not None:
            raise GraphError(f"{what} of {describe(x)}: give axis or dim (PyTorch's name), not "
                             f"both")
        axis = dim
    if axis is None:
        x, axis = mv.reshape(x, (-1,)), 0
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise GraphError(f"{what} of {describe(x)}: axis must be one int or None, got {axis!r}")
    (axis,) = mv.normalize_axes(axis, x.ndim, f"{what} of {describe(x)}")
    return x, axis


def cumsum(x, axis=None, *, reverse=False, dim=None):
    """The cumulative sum of `x` along `axis` (PyTorch's `dim`; None: of x flattened, as
    NumPy); `reverse` sums from the end. Integer and bool inputs give int64, as NumPy's."""
    x, axis = _operand("cumsum", x, axis, dim)
    return CUMSUM(x, axis=axis, reverse=bool(reverse))


def cumprod(x, axis=None, *, reverse=False, dim=None):
    """The cumulative product of `x` along `axis` (PyTorch's `dim`; None: of x flattened, as
    NumPy, where PyTorch requires dim); `reverse` multiplies from the end. Integer and bool
    inputs give int64, as NumPy's and PyTorch's. The gradient is exact where x holds zeros."""
    x, axis = _operand("cumprod", x, axis, dim)
    return CUMPROD(x, axis=axis, reverse=bool(reverse))


def logcumsumexp(x, axis=None, *, reverse=False, dim=None):
    """log(cumsum(exp(x))) along `axis` (PyTorch's `dim`; None: of x flattened, where PyTorch
    requires dim), computed without overflow; `reverse` sums from the end. Floating-point
    input only, as PyTorch's. Entries of -inf add nothing; where every entry so far is -inf
    the value is -inf and the gradient NaN, as PyTorch's."""
    x, axis = _operand("logcumsumexp", x, axis, dim)
    return LOGCUMSUMEXP(x, axis=axis, reverse=bool(reverse))


def _running(op, what, x, axis, reverse, dim):
    x, axis = _operand(what, x, axis, dim)
    indices = op(x, axis=axis, reverse=bool(reverse))
    return Running(ix.GATHER_ALONG(x, indices, axis=axis), indices)


def cummax(x, axis=None, *, reverse=False, dim=None):
    """(values, indices) of the running maximum of `x` along `axis` (PyTorch's `dim`; None: of
    x flattened, where PyTorch requires dim), as PyTorch's cummax: of equal values the index is
    the one seen last, and from a NaN on the value is NaN, its index the last NaN's. `reverse`
    runs from the end (there, of equal values, the lowest index). Indices are int64; the
    gradient of a value goes to the element at its index."""
    return _running(CUMARGMAX, "cummax", x, axis, reverse, dim)


def cummin(x, axis=None, *, reverse=False, dim=None):
    """(values, indices) of the running minimum of `x` along `axis`: cummax's conventions."""
    return _running(CUMARGMIN, "cummin", x, axis, reverse, dim)
