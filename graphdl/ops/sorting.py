"""Sorting along an axis: argsort (a primitive: stable, int64 indices, no gradient), and sort
and topk, which gather their values at those indices with `take`, so that the gradient of a
value goes back to the element it came from (a scatter-add, as PyTorch routes it)."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from graphdl.errors import GraphError
from graphdl.ir import describe, format_shape
from graphdl.opdef import OpDef, register
from graphdl.ops import leaf
from graphdl.ops import movement as mv


class Sorted(NamedTuple):
    """What sort and topk return, as PyTorch's: the values and their int64 indices."""

    values: object
    indices: object


def _argsort(x, axis, descending):
    if not descending:
        return np.argsort(x, axis=axis, kind="stable")
    # the stable ascending order of x reversed, reversed: equal elements keep their order
    last = x.shape[axis] - 1
    return np.flip(last - np.argsort(np.flip(x, axis), axis=axis, kind="stable"), axis)


def _argsort_label(node, folded):
    return f"argsort{' ↓' if node.attrs['descending'] else ''} axis {node.attrs['axis']}"


# argsort: the positions that sort x along `axis`, ascending or descending; equal elements
# keep their order (a stable sort: NumPy's kind="stable", PyTorch's stable=True) and NaN sorts
# as the largest value (last ascending, first descending), as in both.
ARGSORT = register(OpDef(
    "argsort", infer=lambda inputs, attrs: (inputs[0].shape, np.dtype(np.int64)),
    impl=_argsort, pullback=lambda n, g: [None], label=_argsort_label,
    narration="no gradient flows through it: its value is indices",
    closed_form="needs an array of one or more dimensions",
    kinks="no gradient flows through it",
))


def _along(what, x, axis, dim):
    """(x as a node, the axis): PyTorch's `dim` or NumPy's `axis` (None: x flattened, as
    NumPy's sort)."""
    (x,) = leaf.lift_all([x])
    if dim is not None:
        axis = dim
    if axis is None:
        x, axis = mv.reshape(x, (-1,)), 0
    if not isinstance(axis, (int, np.integer)):
        raise GraphError(f"{what} of {describe(x)}: axis must be one int or None, got {axis!r}")
    (axis,) = mv.normalize_axes(axis, x.ndim, f"{what} of {describe(x)}")
    return x, axis


def _flag(what, x, name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise GraphError(f"{what} of {describe(x)}: {name} must be True or False, got {value!r}")
    return bool(value)


def argsort(x, axis=-1, descending=False, *, dim=None):
    """The int64 positions that sort x along `axis` (None: x flattened), stable: equal elements
    keep their order (PyTorch's stable=True, NumPy's kind="stable"); NaN sorts as the largest.
    No gradient."""
    x, axis = _along("argsort", x, axis, dim)
    return ARGSORT(x, axis=axis, descending=_flag("argsort", x, "descending", descending))


def _take_along(what, x, indices, axis):
    """x's elements at `indices` along `axis` (NumPy's take_along_axis), taken from x
    flattened, so that their gradient is take's: a scatter-add back to where they were read."""
    if None in x.shape:
        raise GraphError(f"{what} of {describe(x)}: its values need its whole shape at "
                         f"declaration, got {format_shape(x.shape)}")
    inner = math.prod(x.shape[axis + 1:])
    outer = np.arange(math.prod(x.shape[:axis]))[:, None] * x.shape[axis] * inner
    start = (outer + np.arange(inner)).reshape(x.shape[:axis] + (1,) + x.shape[axis + 1:])
    flat = indices * inner + leaf.constant(start.astype(np.int64))
    return mv.TAKE(mv.reshape(x, (-1,)), flat, axis=0)


def sort(x, axis=-1, descending=False, *, dim=None):
    """(values, indices) of x sorted along `axis` (None: x flattened), stable (see argsort), as
    PyTorch's sort(stable=True); each value's gradient goes back to the element it came from."""
    x, axis = _along("sort", x, axis, dim)
    indices = ARGSORT(x, axis=axis, descending=_flag("sort", x, "descending", descending))
    return Sorted(_take_along("sort", x, indices, axis), indices)


def topk(x, k, axis=-1, largest=True, sorted=True, *, dim=None):
    """(values, indices) of the k largest (smallest: `largest=False`) elements along `axis`,
    in order, PyTorch's topk: of tied elements the first ones (a stable sort's; PyTorch leaves
    its choice unspecified). `sorted=False` allows any order; they come sorted all the same.
    Each value's gradient goes back to the element it came from."""
    x, axis = _along("topk", x, axis, dim)
    _flag("topk", x, "sorted", sorted)
    size = x.shape[axis]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not (
            0 <= k and (size is None or k <= size)):
        raise GraphError(f"topk of {describe(x)}: k must be an int from 0 to the size of axis "
                         f"{axis}, {size}; got {k!r}")
    order = ARGSORT(x, axis=axis, descending=_flag("topk", x, "largest", largest))
    indices = order[(slice(None),) * axis + (slice(0, int(k)),)]
    return Sorted(_take_along("topk", x, indices, axis), indices)
