"""Reductions with NumPy's `axis` / `keepdims` conventions (PyTorch's `dim` / `keepdim` accepted
too): sum, max, min, prod, argmax, argmin (primitives); mean, var, std, norm, any, all, and
amax/amin (max/min under PyTorch's names), composed of primitives."""

from __future__ import annotations

import numpy as np

from graphdl.errors import GraphError
from graphdl.ir import describe
from graphdl.opdef import OpDef, register
from graphdl.ops import elementwise as ew
from graphdl.ops import leaf
from graphdl.ops import movement as mv


def _reduce_infer(inputs, attrs):
    x = inputs[0]
    axes, keep = attrs["axes"], attrs["keepdims"]
    shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape) if keep or i not in axes)
    dtype = x.dtype if x.dtype.kind == "f" else np.sum(np.zeros(1, x.dtype)).dtype
    return shape, dtype


def _spread(n, g):
    """g (the reduction's output gradient) broadcast back over the reduced input."""
    if not n.attrs["keepdims"]:
        g = mv.EXPAND_DIMS(g, axis=n.attrs["axes"])
    return mv.broadcast_like(g, n.inputs[0])


def _label(symbol):
    """Σ over every axis, `Σ axis 1` over some."""
    def label(node, folded):
        axes = node.attrs["axes"]
        if len(axes) == node.inputs[0].ndim:
            return symbol
        return f"{symbol} axis {','.join(map(str, axes))}"
    return label


# sum: every input element gets the gradient of its sum.
SUM = register(OpDef(
    "sum", infer=_reduce_infer, pullback=lambda n, g: [_spread(n, g)],
    impl=lambda x, axes, keepdims: np.sum(x, axis=axes, keepdims=keepdims),
    label=_label("Σ"),
    narration=lambda w: (f"{w.y} = Σ {w.x} over axes {list(w.node.attrs['axes'])}: every "
                         f"element of {w.x} gets {w.dy}, i.e. {w.dx} = broadcast({w.dy}) to "
                         f"{w.shape}"),
    closed_form=mv.scalar_identity, kinks="linear",
))


def tie_within(values, axis, reach, top=True):
    """Whether the `top` (largest, else smallest) two values along `axis` lie within `reach`:
    where the maximum (minimum) has a kink."""
    if values.shape[axis] < 2:
        return False
    s = np.sort(values, axis=axis)
    first, second = (-1, -2) if top else (0, 1)
    gap = np.abs(np.take(s, first, axis) - np.take(s, second, axis))
    return bool(np.any(gap <= reach))


def _tie_kink(node, arrays, reach):
    (x,) = arrays
    axes = node.attrs["axes"]
    flat = np.moveaxis(x, axes, range(-len(axes), 0)).reshape(*np.delete(x.shape, axes), -1)
    if not tie_within(flat, -1, reach, node.op is MAX):
        return None
    return (f"a tie for the {node.op.name} over axes {axes}; PyTorch's convention (amax/amin) "
            f"splits the gradient evenly among the tied elements")


def _extremum(name, impl):
    """max / min: the gradient goes to the arg-extremum, split evenly among ties (PyTorch amax)."""
    def pullback(n, g):
        x = n.inputs[0]
        hits = ew.cast(ew.EQUAL(x, _spread(n, n)), x.dtype)
        count = SUM(hits, axes=n.attrs["axes"], keepdims=True)
        return [_spread(n, g) * hits / mv.broadcast_like(count, x)]

    def infer(inputs, attrs):  # the extremum is one of the elements: x's dtype, as NumPy
        x = inputs[0]
        empty = [a for a in attrs["axes"] if x.shape[a] == 0]
        if empty:  # NumPy raises at run time; say so at declaration
            raise GraphError(f"{name} of {describe(x)} over axis {empty[0]}, which has size 0: "
                             f"an empty {name} has no value")
        return _reduce_infer(inputs, attrs)[0], x.dtype

    return register(OpDef(
        name, infer=infer, pullback=pullback,
        impl=lambda x, axes, keepdims: impl(x, axis=axes, keepdims=keepdims),
        label=_label(name),
        narration=lambda w: (f"{w.y} = {name} of {w.x}: {w.dx} = {w.dy} at the {name}imum "
                             "(split among ties), 0 elsewhere"),
        closed_form=mv.scalar_identity, kinks=_tie_kink,
    ))


MAX = _extremum("max", np.max)
MIN = _extremum("min", np.min)


def _operand(what, x, axis, keepdims, dim=None, keepdim=None):
    """(x as a node, its axes, keepdims) of the reduction `what`, from NumPy's names (`axis`,
    `keepdims`) or PyTorch's (`dim`, `keepdim`): one of each pair at most."""
    (x,) = leaf.lift_all([x])
    for numpy_name, value, default, torch_name, alias in (
            ("axis", axis, None, "dim", dim), ("keepdims", keepdims, False, "keepdim", keepdim)):
        if alias is not None and value is not default:
            raise GraphError(f"{what} of {describe(x)}: give {numpy_name} or {torch_name} "
                             f"(PyTorch's name), not both")
    axis = axis if dim is None else dim
    keepdims = keepdims if keepdim is None else keepdim
    axes = mv.normalize_axes(axis, x.ndim, f"{what} of {describe(x)}", scalar_axis=True)
    return x, axes, bool(keepdims)


def _reduction(op, name=None, doc=None):
    def reduce(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
        x, axes, keepdims = _operand(name or op.name, x, axis, keepdims, dim, keepdim)
        return op(x, axes=axes, keepdims=keepdims)

    reduce.__name__ = reduce.__qualname__ = name or op.name
    reduce.__doc__ = doc or (f"{op.name} over `axis` (None: all), keeping reduced axes if "
                             f"`keepdims` (PyTorch's `dim`, `keepdim` too).")
    return reduce


sum, max, min = _reduction(SUM), _reduction(MAX), _reduction(MIN)
amax = _reduction(MAX, "amax", "gd.max under PyTorch's name, torch.amax: the gradient is split "
                                "evenly among tied maxima (torch.max(x, dim), which also returns "
                                "indices, gives it all to the index it returns).")
amin = _reduction(MIN, "amin", "gd.min under PyTorch's name, torch.amin: the gradient is split "
                                "evenly among tied minima (torch.min(x, dim), which also returns "
                                "indices, gives it all to the index it returns).")


def _mean_dtypes(dtype):
    """(the dtype mean sums and divides in, the dtype of its result), as `numpy.mean`: integers
    and bools give float64; float16 accumulates in float32 and rounds the mean back to float16."""
    if dtype.kind != "f":
        return np.dtype("float64"), np.dtype("float64")
    if dtype == np.float16:
        return np.dtype("float32"), dtype
    return dtype, dtype


def mean(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """The mean over `axis`: sum / count, in the dtypes NumPy's mean uses."""
    x, axes, keepdims = _operand("mean", x, axis, keepdims, dim, keepdim)
    wide, result = _mean_dtypes(x.dtype)
    total = SUM(x if x.dtype == wide else ew.cast(x, wide), axes=axes, keepdims=keepdims)
    average = total / leaf.size(x, axes, wide)
    return average if result == wide else ew.cast(average, result)


def _nonempty(name, x, axes):
    """Refuse, naming x, a reduction `name` over an axis of size 0: it has no value there."""
    empty = [a for a in axes if x.shape[a] == 0]
    if empty:  # NumPy and PyTorch raise at run time; say so at declaration
        raise GraphError(f"{name} of {describe(x)} over axis {empty[0]}, which has size 0: "
                         f"it has no value over no elements")


# ---------------------------------------------------------------- prod
def _others(x, axes):
    """Each element's product of the other elements of its slice over `axes`: prod's local
    gradient, PyTorch's where the slice holds zeros (result / x would be 0 / 0 there). Built
    from the product of the nonzero elements and the number of zeros, it is right in value
    for any number of zeros, and so is its own gradient (prod's second derivative): where one
    zero remains in a product, that factor is `zeros`, 0 with slope 1 at each zero."""
    zero = ew.EQUAL(x, 0)
    nonzero = ew.WHERE(zero, 1, x)
    rest = PROD(nonzero, axes=axes, keepdims=True)
    count = SUM(zero, axes=axes, keepdims=True)
    zeros = SUM(ew.WHERE(zero, x, 0), axes=axes, keepdims=True)
    # the product of the zeros beside a nonzero element, of the other zeros beside a zero
    beside_nonzero = ew.WHERE(ew.EQUAL(count, 0), 1, ew.WHERE(ew.EQUAL(count, 1), zeros, 0))
    beside_zero = ew.WHERE(ew.EQUAL(count, 1), 1, ew.WHERE(ew.EQUAL(count, 2), zeros - x, 0))
    return ew.WHERE(zero, rest * beside_zero, rest * beside_nonzero / nonzero)


# prod: every element gets the gradient times the product of the others.
PROD = register(OpDef(
    "prod", infer=_reduce_infer,
    pullback=lambda n, g: [_spread(n, g) * _others(n.inputs[0], n.attrs["axes"])],
    impl=lambda x, axes, keepdims: np.prod(x, axis=axes, keepdims=keepdims),
    label=_label("Π"),
    narration=lambda w: (f"{w.y} = Π {w.x} over axes {list(w.node.attrs['axes'])}: each element "
                         f"of {w.x} gets {w.dy} times the product of the others (PyTorch's, "
                         f"zeros included), {w.dx} of shape {w.shape}"),
    closed_form=mv.scalar_identity, kinks="smooth",
))
prod = _reduction(PROD, doc="The product over `axis` (None: all; 1 over an empty axis), keeping "
                            "reduced axes if `keepdims`; integers and bools as NumPy's (int64). "
                            "Its gradient is the product of the other elements, exact with "
                            "zeros (PyTorch's).")


# ---------------------------------------------------------------- argmax, argmin
def _arg_extremum(name, impl):
    """argmax / argmin along one axis: the first occurrence (NumPy's, PyTorch's); a NaN counts
    as the extremum. int64 indices, no gradient."""
    def infer(inputs, attrs):
        x, axis = inputs[0], attrs["axis"]
        _nonempty(name, x, (axis,))
        return _reduce_infer(inputs, {"axes": (axis,), **attrs})[0], np.dtype(np.int64)

    return register(OpDef(
        name, infer=infer, pullback=lambda n, g: [None],
        impl=lambda x, axis, keepdims: impl(x, axis=axis, keepdims=keepdims),
        label=lambda node, folded: f"{name} axis {node.attrs['axis']}",
        narration="no gradient flows through it: its value is an index",
        closed_form="needs an array of one or more dimensions (of a 0-d one it is 0)",
        kinks="no gradient flows through it",
    ))


ARGMAX = _arg_extremum("argmax", np.argmax)
ARGMIN = _arg_extremum("argmin", np.argmin)


def _arg_reduction(op):
    def reduce(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
        whole = axis is None and dim is None
        x, axes, keepdims = _operand(op.name, x, axis, keepdims, dim, keepdim)
        if not whole and len(axes) != 1 and x.ndim:
            raise GraphError(f"{op.name} of {describe(x)}: axis must be one axis or None, got "
                             f"{axis if dim is None else dim!r}")
        if x.ndim == 0:  # the one element's index, read from x so that x stays its input
            return ew.cast(leaf.zeros_like(x), "int64")
        if not whole:
            return op(x, axis=axes[0], keepdims=keepdims)
        index = op(mv.reshape(x, (-1,)), axis=0, keepdims=False)  # of x flattened
        return mv.reshape(index, (1,) * x.ndim) if keepdims else index

    reduce.__name__ = reduce.__qualname__ = op.name
    reduce.__doc__ = (f"The int64 index of the first {op.name[3:]}imum along `axis` (None: of x "
                      f"flattened), NumPy's and PyTorch's {op.name}; a NaN counts as the "
                      f"{op.name[3:]}imum. No gradient.")
    return reduce


argmax, argmin = _arg_reduction(ARGMAX), _arg_reduction(ARGMIN)


# ---------------------------------------------------------------- any, all
def any(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """Whether some element over `axis` is nonzero (True, NaN), as a bool: False over an empty
    axis (NumPy's, PyTorch's any)."""
    x, axes, keepdims = _operand("any", x, axis, keepdims, dim, keepdim)
    return ew.GREATER(SUM(ew.NOT_EQUAL(x, 0), axes=axes, keepdims=keepdims), 0)


def all(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """Whether every element over `axis` is nonzero (True, NaN), as a bool: True over an empty
    axis (NumPy's, PyTorch's all)."""
    x, axes, keepdims = _operand("all", x, axis, keepdims, dim, keepdim)
    return ew.EQUAL(SUM(ew.EQUAL(x, 0), axes=axes, keepdims=keepdims), 0)


# ---------------------------------------------------------------- var, std, norm
def _flat_at_zero(fn, v):
    """fn(v) with gradient 0 where v is 0, PyTorch's convention where fn's slope is infinite
    there (√ of a zero variance or norm, |x|^p with p < 1): elsewhere fn is applied as it is,
    at zeros to 1, so that the chain rule never multiplies an infinite slope by 0."""
    at = ew.EQUAL(v, 0)
    return ew.WHERE(at, ew.stop_gradient(fn(v)), fn(ew.WHERE(at, 1, v)))


def _number(what, x, name, value):
    real = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not real or np.isnan(value):
        raise GraphError(f"{what} of {describe(x)}: {name} must be a number, got {value!r}")
    return value


def var(x, axis=None, keepdims=False, *, correction=1, dim=None, keepdim=None):
    """The variance over `axis`: Σ(x − mean)² / max(N − correction, 0), PyTorch's var (Bessel's
    correction=1 by default; NumPy's default, ddof=0, is correction=0). N − correction ≤ 0
    divides by 0 (inf, or NaN for equal values), as PyTorch does. Integers and bools give
    float64 and float16 is computed in float32, as NumPy's mean."""
    return _variance("var", x, axis, keepdims, correction, dim, keepdim)


def std(x, axis=None, keepdims=False, *, correction=1, dim=None, keepdim=None):
    """The standard deviation over `axis`, √var (see var); its gradient is 0 where it is 0
    (equal values), as PyTorch's."""
    return _flat_at_zero(ew.SQRT, _variance("std", x, axis, keepdims, correction, dim, keepdim))


def _variance(what, x, axis, keepdims, correction, dim, keepdim):
    x, axes, keepdims = _operand(what, x, axis, keepdims, dim, keepdim)
    correction = _number(what, x, "correction", correction)
    wide, result = _mean_dtypes(x.dtype)
    x = x if x.dtype == wide else ew.cast(x, wide)
    deviation = x - mean(x, axes, keepdims=True)
    dof = ew.MAXIMUM(leaf.size(x, axes, wide) - correction, 0)
    out = SUM(deviation * deviation, axes=axes, keepdims=keepdims) / dof
    return out if result == wide else ew.cast(out, result)


def norm(x, p=2, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """The vector p-norm over `axis` (None: all of x), PyTorch's linalg.vector_norm (and norm
    with a number or 'fro'): p = 2 or 'fro' √Σx², 1 Σ|x|, inf max |x|, -inf min |x|, 0 the
    number of nonzero elements, any other p (Σ|x|^p)^(1/p). Gradients as PyTorch's: 0 where
    the norm is 0 and, for p < 1, at x = 0 (subgradients); split evenly among ties of |x| for
    ±inf; none for p = 0."""
    x, axes, keepdims = _operand("norm", x, axis, keepdims, dim, keepdim)
    ew.floating("norm")([x], {})
    if isinstance(p, str) and p != "fro":
        raise GraphError(f"norm of {describe(x)}: p must be a number, inf, -inf or 'fro' (the "
                         f"vector norms), got {p!r}")
    p = 2.0 if isinstance(p, str) else float(_number("norm", x, "p", p))
    if p < 0 or np.isinf(p):
        _nonempty(f"norm (p={p:g})", x, axes)  # max, min and (Σ|x|^p)^(1/p) of nothing
    a = ew.ABS(x)
    if np.isinf(p):
        return (MAX if p > 0 else MIN)(a, axes=axes, keepdims=keepdims)
    if p == 0:
        return SUM(ew.cast(ew.NOT_EQUAL(x, 0), x.dtype), axes=axes, keepdims=keepdims)
    if p == 1:
        return SUM(a, axes=axes, keepdims=keepdims)
    if p == 2:
        powers = x * x
    elif p > 1:
        powers = ew.POW(a, exponent=p)
    else:
        powers = _flat_at_zero(lambda v: ew.POW(v, exponent=p), a)
    total = SUM(powers, axes=axes, keepdims=keepdims)
    return _flat_at_zero(ew.SQRT if p == 2 else lambda v: ew.POW(v, exponent=1 / p), total)
