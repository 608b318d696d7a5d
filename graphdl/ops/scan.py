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


# ---------------------------------------------------------------- logcumsumexp
def _logcumsumexp_grad(node, g):
    """dx_k = Σ_{i at or after k} g_i e^(x_k − y_i): e^x_k times a reverse logcumsumexp of
    log g − y, the positive and negative parts of g apart (a log needs a positive argument),
    so that no exp overflows. Where a part is 0 its log is the lowest finite float, not -inf:
    the second derivative then meets no -inf − -inf."""
    x, axis, reverse = node.inputs[0], node.attrs["axis"], node.attrs["reverse"]
    lowest = float(np.finfo(node.dtype).min)

    def part(has):
        log_part = ew.WHERE(has, ew.LOG(ew.WHERE(has, ew.ABS(g), 1)), lowest)
        back = LOGCUMSUMEXP(log_part - node, axis=axis, reverse=not reverse)
        return ew.EXP(back + x)

    return part(ew.GREATER(g, 0)) - part(ew.LESS(g, 0))


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
