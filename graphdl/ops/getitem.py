"""x[key] with NumPy's indexing: basic (ints, slices, None, Ellipsis) and advanced (integer
arrays: lists, NumPy arrays or integer graph nodes; constant boolean masks).

Advanced indexing is lowered to the movement primitives, so its gradient (a scatter-add, where
repeated indices add up) and every backend come from theirs: the slices first, then one `take`
along the indexed axis, or, for several index arrays, along those axes moved to the front and
merged into one, at the flat position the indices name together. The broadcast shape of the
index arrays replaces the indexed axes where they were, if adjacent in the key, else it comes
first (NumPy's rule; a None between them separates them, an int counts as an index array).

A constant index is range-checked now, naming the indexed node; a fed one when the graph runs,
as `take`'s. A boolean mask's result has as many elements as it has True entries: a constant
mask is its integer positions (`numpy.nonzero`), a boolean graph node is refused (`gd.where`
keeps the shape).
"""

from __future__ import annotations

import math

import numpy as np

from graphdl.errors import GraphError
from graphdl.ir import Node, describe, format_shape
from graphdl.ops import elementwise as ew
from graphdl.ops import leaf
from graphdl.ops import movement as mv

_FULL = slice(None)


def getitem(x, key):
    """x[key] as NumPy's: see the module's docstring."""
    key = key if isinstance(key, tuple) else (key,)
    if all(isinstance(k, (int, slice)) and not isinstance(k, bool) for k in key):
        return mv.getitem(x, key)  # basic indexing of ints and slices
    what = f"indexing {describe(x)}"
    entries, origin = _per_axis(x, [_entry(k, what) for k in key], what)
    new = tuple(a for a, k in enumerate(entries) if k is None)
    if new:
        x = mv.EXPAND_DIMS(x, axis=new)
        entries = [_FULL if k is None else k for k in entries]
    arrays = [a for a, k in enumerate(entries) if not isinstance(k, (int, slice))]
    if not arrays:
        return mv.getitem(x, tuple(entries))
    cut = tuple(_FULL if a in arrays or isinstance(k, int) else k for a, k in enumerate(entries))
    if any(k != _FULL for k in cut):
        x = mv.getitem(x, cut)
    adv = [a for a, k in enumerate(entries) if a in arrays or isinstance(k, int)]
    indices = [_checked(entries[a], x, a, origin[a], what, len(adv) > 1) for a in adv]
    return _take(x, adv, indices, what)


def _entry(k, what):
    """One key entry as an int, slice, None, Ellipsis, integer index array (NumPy array or
    node) or boolean mask (a NumPy array of bools)."""
    if k is None or k is Ellipsis or isinstance(k, slice):
        return k
    if isinstance(k, Node):
        if k.dtype == np.bool_:
            raise GraphError(f"{what}: the boolean mask {describe(k)} is a graph node, so the "
                             f"number of elements it selects is not known until the graph runs; "
                             f"use gd.where(mask, x, 0) to keep the shape, or a constant NumPy "
                             f"mask")
        if k.dtype.kind not in "iu":
            raise GraphError(f"{what}: index {describe(k)} must be integers, got {k.dtype}")
        return k
    if isinstance(k, (bool, np.bool_)):
        raise GraphError(f"{what}: a scalar boolean index ({k!r}) is not supported")
    array = np.asarray(k)
    if array.size == 0 and array.dtype.kind == "f":
        array = array.astype(np.int64)  # an empty list, as NumPy's: no index at all
    if array.dtype == np.bool_:
        if array.ndim == 0:
            raise GraphError(f"{what}: a scalar boolean index ({k!r}) is not supported")
        return array
    if array.dtype.kind not in "iu":
        raise GraphError(f"{what}: only ints, slices, None, Ellipsis, integer arrays and boolean "
                         f"masks are indices, got {k!r}")
    return int(array) if array.ndim == 0 else array.astype(np.int64)


def _per_axis(x, key, what):
    """The key with its Ellipsis expanded and its masks replaced by their integer positions:
    one entry per axis of x with the None entries' new axes, and the axis of x each names (None
    for the new axes)."""
    def width(k):
        return k.ndim if _is_mask(k) else 0 if k is None or k is Ellipsis else 1

    if sum(k is Ellipsis for k in key) > 1:
        raise GraphError(f"{what}: an index can only have a single ellipsis ('...')")
    used = sum(width(k) for k in key)
    if used > x.ndim:
        raise GraphError(f"{what}: too many indices: {describe(x)} has {x.ndim} dimensions, "
                         f"{used} were indexed")
    fill = [_FULL] * (x.ndim - used)
    key = ([e for k in key for e in (fill if k is Ellipsis else [k])]
           if any(k is Ellipsis for k in key) else key + fill)
    entries, origin, axis = [], [], 0
    for k in key:
        if _is_mask(k):
            _check_mask(k, x, axis, what)
            entries += list(np.nonzero(k))
            origin += range(axis, axis + k.ndim)
        else:
            if isinstance(k, int) and x.shape[axis] is not None:
                _check_range(np.asarray(k), x.shape[axis], axis, what)
            entries.append(k)
            origin.append(None if k is None else axis)
        axis += width(k)
    return entries, origin


def _is_mask(k):
    return isinstance(k, np.ndarray) and k.dtype == np.bool_


def _check_mask(mask, x, axis, what):
    sizes = x.shape[axis:axis + mask.ndim]
    if sizes != mask.shape:
        raise GraphError(f"{what}: the boolean mask of shape {format_shape(mask.shape)} must have "
                         f"the shape of the axes {axis}.. it indexes, "
                         f"{format_shape(sizes)} (of {format_shape(x.shape)})")


def _checked(k, x, axis, origin, what, several):
    """The index entry k into axis `axis` of x as a node of int64 in [-n, n): a constant's
    range checked now where x's size n is known, else at the call. In [0, n) where n is known
    and it is one of `several` indices, which the flat position adds up."""
    n = x.shape[axis]
    if isinstance(k, Node):
        k = mv.check_index(k, x, axis, f"{what}: indices {describe(k)} into axis {origin}")
        k = k if k.dtype == np.int64 else ew.cast(k, "int64")
        return ew.remainder(k, n) if several and n is not None else k
    k = np.asarray(k, dtype=np.int64)
    if n is None:
        return mv.check_index(leaf.constant(k), x, axis,
                              f"{what}: indices into axis {origin}")
    _check_range(k, n, origin, what)
    return leaf.constant(k % n if n else k)


def _check_range(k, n, axis, what):
    """Refuse the constant indices k unless all are in [-n, n)."""
    bad = k[(k < -n) | (k >= n)]
    if bad.size:
        raise GraphError(f"{what}: index {bad.flat[0]} is out of range for axis {axis} of size "
                         f"{n}")


def _take(x, adv, indices, what):
    """x read at the index arrays `indices` along the axes `adv` (see the module's docstring)."""
    shapes = [i.shape for i in indices]
    if all(None not in s for s in shapes):
        try:
            np.broadcast_shapes(*shapes)
        except ValueError:
            raise GraphError(f"{what}: the index arrays' shapes "
                             f"{', '.join(format_shape(s) for s in shapes)} do not broadcast "
                             f"together") from None
    if len(adv) == 1:
        return mv.TAKE(x, indices[0], axis=adv[0])
    sizes = [x.shape[a] for a in adv]
    rest = [a for a in range(x.ndim) if a not in adv]
    if None in sizes[1:] or [sizes[0], *(x.shape[a] for a in rest)].count(None) > 1:
        raise GraphError(f"{what}: several index arrays need the sizes of the indexed axes but "
                         f"the first known, and of all axes but one; {describe(x)} has shape "
                         f"{format_shape(x.shape)}")
    order = adv + rest
    moved = x if order == sorted(order) else mv.TRANSPOSE(x, axes=tuple(order))
    merged = mv.reshape(moved, [-1 if None in sizes else math.prod(sizes)] + [
        -1 if x.shape[a] is None else x.shape[a] for a in rest])
    # The first index may be negative (its axis's size unknown, so not made positive): the
    # flat position is then in [-size, 0), which take counts from the end, as it should.
    flat = indices[-1]
    for i, stride in zip(indices[-2::-1], np.cumprod(sizes[:0:-1])):
        flat = flat + i * int(stride)
    out = mv.TAKE(merged, flat, axis=0)
    if adv != list(range(adv[0], adv[0] + len(adv))) or adv[0] == 0:
        return out  # separated indices: the broadcast axes first
    b = out.ndim - len(rest)
    axes = list(range(b, b + adv[0])) + list(range(b)) + list(range(b + adv[0], out.ndim))
    return mv.TRANSPOSE(out, axes=tuple(axes))
