"""Scans: cumulative sums along an axis (NumPy's `cumsum`; `reverse` sums from the end, as
ONNX's CumSum). A cumulative sum is linear, and its transpose is the cumulative sum the other
way, so the op is closed under differentiation."""

from __future__ import annotations

import numpy as np

from graphdl.errors import GraphError
from graphdl.ir import describe
from graphdl.opdef import OpDef, register
from graphdl.ops import leaf
from graphdl.ops import movement as mv


def _cumsum_infer(inputs, attrs):
    x = inputs[0]
    if x.ndim == 0:
        raise GraphError(f"cumsum of {describe(x)}: a 0-d array has no axis to sum along")
    return x.shape, _cumsum_impl(np.zeros(1, x.dtype), 0, False).dtype  # ints widen as NumPy's


def _cumsum_impl(x, axis, reverse):
    if reverse:
        return np.flip(np.cumsum(np.flip(x, axis), axis), axis)
    return np.cumsum(x, axis)


def _cumsum_narration(w):
    way = "from the start" if w.node.attrs["reverse"] else "from the end"
    return (f"{w.dx} = the cumulative sum of {w.dy} {way} along axis {w.node.attrs['axis']} "
            f"(each element of {w.x} is in every sum after it) → {w.shape}")


# cumsum: out[..., i, ...] = Σ_{j ≤ i} x[..., j, ...] (j ≥ i with reverse) along `axis`.
CUMSUM = register(OpDef(
    "cumsum", infer=_cumsum_infer, impl=_cumsum_impl,
    pullback=lambda n, g: [CUMSUM(g, axis=n.attrs["axis"], reverse=not n.attrs["reverse"])],
    closed_form="needs an array of one or more dimensions", kinks="linear",
    narration=_cumsum_narration,
))


def cumsum(x, axis=None, *, reverse=False):
    """The cumulative sum of `x` along `axis` (None: of x flattened, as NumPy); `reverse`
    sums from the end. Integer and bool inputs give int64, as NumPy's cumsum."""
    (x,) = leaf.lift_all([x])
    if axis is None:
        x, axis = mv.reshape(x, (-1,)), 0
    (axis,) = mv.normalize_axes(axis, x.ndim, f"cumsum of {describe(x)}", scalar_axis=False)
    return CUMSUM(x, axis=axis, reverse=bool(reverse))
