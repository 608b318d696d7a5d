"""Reductions with NumPy's `axis` / `keepdims` conventions: sum, max, min (primitives), mean."""

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


def _reduction(op):
    def reduce(x, axis=None, keepdims=False):
        (x,) = leaf.lift_all([x])
        axes = mv.normalize_axes(axis, x.ndim, f"{op.name} of {x!r}", scalar_axis=True)
        return op(x, axes=axes, keepdims=bool(keepdims))

    reduce.__name__ = reduce.__qualname__ = op.name
    reduce.__doc__ = f"{op.name} over `axis` (None: all), keeping reduced axes if `keepdims`."
    return reduce


sum, max, min = _reduction(SUM), _reduction(MAX), _reduction(MIN)


def _mean_dtypes(dtype):
    """(the dtype mean sums and divides in, the dtype of its result), as `numpy.mean`: integers
    and bools give float64; float16 accumulates in float32 and rounds the mean back to float16."""
    if dtype.kind != "f":
        return np.dtype("float64"), np.dtype("float64")
    if dtype == np.float16:
        return np.dtype("float32"), dtype
    return dtype, dtype


def mean(x, axis=None, keepdims=False):
    """The mean over `axis`: sum / count, in the dtypes NumPy's mean uses."""
    (x,) = leaf.lift_all([x])
    axes = mv.normalize_axes(axis, x.ndim, f"mean of {x!r}", scalar_axis=True)
    wide, result = _mean_dtypes(x.dtype)
    total = SUM(x if x.dtype == wide else ew.cast(x, wide), axes=axes, keepdims=bool(keepdims))
    average = total / leaf.size(x, axes, wide)
    return average if result == wide else ew.cast(average, result)
