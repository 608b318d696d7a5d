"""Gather and scatter along an axis, PyTorch's (torch.gather, torch.scatter, scatter_add,
index_select, index_add) and NumPy's (take_along_axis).

Two primitives, each the other's transpose: `gather_along` (out[..., i, ...] =
x[..., idx[..., i, ...], ...] along `axis`) and `scatter_add_along` (zeros like `like` with g
added where gather_along would have read it; repeated indices add up). Both need the indices
to have the input's shape off the axis; the public functions slice the input down to the
indices' shape first (PyTorch lets the indices be smaller there), and pad the scattered result
back up. Indices are range-checked by `check_index`, naming the user's node: PyTorch's forms
refuse negative indices, as PyTorch does; take_along_axis counts them from the end, as NumPy.
"""

from __future__ import annotations

import numpy as np

from graphdl.errors import GraphError
from graphdl.ir import describe, format_shape
from graphdl.opdef import OpDef, register
from graphdl.ops import movement as mv

_ARRAYS_ONLY = "needs arrays of one or more dimensions"


def _ranges(shape, axis, idx):
    """The index tuple that addresses, for every element of `idx`, its position with the
    axis coordinate replaced by the index itself."""
    grid = list(np.indices(shape, sparse=True))
    grid[axis] = idx
    return tuple(grid)


def _gather_along(x, idx, axis):
    return np.take_along_axis(x, idx.astype(np.intp, copy=False), axis=axis)


def _scatter_add_along(g, idx, shape, axis):
    """Zeros of `shape` with g's elements added at idx along `axis` (negatives count from the
    end; repeats add up): one bincount, summing in float64."""
    flat = np.ravel_multi_index(_ranges(idx.shape, axis, idx), shape, mode="wrap")
    total = int(np.prod(shape))
    sums = np.bincount(flat.reshape(-1), weights=g.reshape(-1), minlength=total)
    return sums.astype(g.dtype, copy=False).reshape(shape)


def _shapes_agree(idx, x, axis, what):
    if idx.dtype.kind not in "iu":
        raise GraphError(f"{what}: indices {describe(idx)} must be integers, got {idx.dtype}")
    if idx.ndim != x.ndim or not all(
            mv.shapes_match((i,), (d,)) for a, (i, d) in enumerate(zip(idx.shape, x.shape))
            if a != axis):
        raise GraphError(f"{what}: indices {describe(idx)} of shape {format_shape(idx.shape)} "
                         f"must have the shape of {describe(x)}, {format_shape(x.shape)}, "
                         f"off axis {axis}")


def _gather_infer(inputs, attrs):
    x, idx = inputs
    _shapes_agree(idx, x, attrs["axis"], "gather_along")
    return idx.shape, x.dtype


# gather_along: out = x read at idx along `axis` (idx has x's shape off the axis).
GATHER_ALONG = register(OpDef(
    "gather_along", infer=_gather_infer,
    impl=lambda x, idx, axis: _gather_along(x, idx, axis),
    pullback=lambda n, g: [
        SCATTER_ADD_ALONG(g, n.inputs[1], n.inputs[0], axis=n.attrs["axis"]), None],
    narration=lambda w: f"{w.dx} = {w.dy} scatter-added back where each element was read",
    closed_form=_ARRAYS_ONLY, kinks="linear",
))


def _scatter_infer(inputs, attrs):
    g, idx, like = inputs
    _shapes_agree(idx, like, attrs["axis"], "scatter_add_along")
    if not mv.shapes_match(g.shape, idx.shape):
        raise GraphError(f"scatter_add_along: {describe(g)} of shape {format_shape(g.shape)} "
                         f"must have the shape of its indices, {format_shape(idx.shape)}")
    return like.shape, g.dtype


# scatter_add_along: zeros like `like` with g added at idx along `axis` (gather_along's adjoint).
SCATTER_ADD_ALONG = register(OpDef(
    "scatter_add_along", shape_only=(2,), infer=_scatter_infer,
    impl=lambda g, idx, like, axis: _scatter_add_along(g, idx, like.shape, axis),
    pullback=lambda n, g: [GATHER_ALONG(g, n.inputs[1], axis=n.attrs["axis"]), None, None],
    narration=lambda w: f"{w.dx} = {w.dy} read back at the positions {w.x} was added to",
    closed_form=_ARRAYS_ONLY, kinks="linear",
))


def _lift(*xs):
    from graphdl.ops.leaf import lift_all

    return lift_all(list(xs))


def _axis(axis, x, what):
    return mv.normalize_axes(axis, x.ndim, what)[0]


def _cut(x, shape, axis):
    """x sliced to `shape` off `axis` (everywhere where axis is None: PyTorch's indices may be
    smaller than x there), and the slice's index (None where nothing is cut)."""
    if x.ndim != len(shape):
        return x, None
    index = tuple((None, None, None) if a == axis or s is None or d == s else (0, s, None)
                  for a, (d, s) in enumerate(zip(x.shape, shape)))
    if all(k == (None, None, None) for k in index):
        return x, None
    return mv.SLICE(x, index=index), index


def _checked(idx, x, axis, what, negative):
    return mv.check_index(idx, x, axis, f"{what}: indices {describe(idx)} into {describe(x)}",
                          negative=negative)


def _gather(x, axis, index, what, negative):
    x, index = _lift(x, index)
    axis = _axis(axis, x, f"{what} from {describe(x)}")
    index = _checked(index, x, axis, what, negative)
    if index.ndim != x.ndim:
        raise GraphError(f"{what}: indices {describe(index)} must have the rank of "
                         f"{describe(x)}, {x.ndim}; they have {index.ndim}")
    part, _ = _cut(x, index.shape, axis)
    return GATHER_ALONG(part, index, axis=axis)


def gather(x, axis=None, index=None, *, dim=None):
    """torch.gather: out[i][j][k] = x[index[i][j][k]][j][k] along `axis` (or `dim`). `index`
    has x's rank and at most its size off the axis; negative indices are refused, as
    PyTorch's. The gradient scatter-adds back where each element was read."""
    axis = dim if axis is None else axis
    if axis is None or index is None:
        raise GraphError("gather needs an axis (dim) and an index")
    return _gather(x, axis, index, "gather", negative=False)


def take_along_axis(x, indices, axis):
    """numpy.take_along_axis (gather's op): x and the indices broadcast against each other off
    the axis, as NumPy's; negative indices count from the end."""
    x, indices = _lift(x, indices)
    if indices.ndim == x.ndim and None not in x.shape + indices.shape:
        a = _axis(axis, x, f"take_along_axis from {describe(x)}")
        off = [(d, i) for k, (d, i) in enumerate(zip(x.shape, indices.shape)) if k != a]
        if any(d != i and 1 not in (d, i) for d, i in off):
            raise GraphError(f"take_along_axis: indices {describe(indices)} of shape "
                             f"{format_shape(indices.shape)} do not broadcast against "
                             f"{describe(x)} of shape {format_shape(x.shape)} off axis {a}")
        both = [max(d, i) for d, i in off]
        x_shape = tuple(both[:a]) + (x.shape[a],) + tuple(both[a:])
        i_shape = tuple(both[:a]) + (indices.shape[a],) + tuple(both[a:])
        x = x if x.shape == x_shape else mv.broadcast_to(x, x_shape)
        indices = indices if indices.shape == i_shape else mv.broadcast_to(indices, i_shape)
    return _gather(x, axis, indices, "take_along_axis", negative=True)


def _scattered(x, axis, index, src, what, negative=False):
    """(x, axis, index, the sum of src's elements scattered into zeros like x, and a count of
    the elements sent to each position, or None where no count is needed)."""
    x, index, src = _lift(x, index, src)
    axis = _axis(axis, x, f"{what} into {describe(x)}")
    index = _checked(index, x, axis, what, negative)
    if index.ndim != x.ndim or src.ndim != x.ndim:
        raise GraphError(f"{what}: indices {describe(index)} and source {describe(src)} must "
                         f"have the rank of {describe(x)}, {x.ndim}")
    src, _ = _cut(src, index.shape, None)
    part, cut = _cut(x, index.shape, axis)
    total = SCATTER_ADD_ALONG(src, index, part, axis=axis)
    return x, axis, index, src, part, cut, total


def _padded(y, x, cut):
    return y if cut is None else mv.UNSLICE(y, x, index=cut)


def scatter_add(x, axis, index, src, *, _negative=False):
    """torch.scatter_add: x with src's elements added at index along `axis` (repeated indices
    add up). The gradient is g for x and g gathered at index for src. (`_negative`: indices
    count from the end, as ONNX's ScatterElements.)"""
    x, axis, index, src, _, cut, total = _scattered(x, axis, index, src, "scatter_add",
                                                    _negative)
    return x + _padded(total, x, cut)


def _hits(index, src, part, axis):
    """How many of src's elements land on each position of part (a float count)."""
    from graphdl.ops.leaf import constant

    ones = mv.broadcast_like(constant(np.ones((), dtype=src.dtype)), src)
    return SCATTER_ADD_ALONG(ones, index, part, axis=axis)


def scatter(x, axis, index, src, *, _negative=False):
    """torch.scatter: x with src's elements written at index along `axis`. Where several
    indices name one position, PyTorch's result is undefined; here it is their mean. The
    gradient goes to x where nothing was written, and to src where it landed. (`_negative`:
    indices count from the end, as ONNX's ScatterElements.)"""
    from graphdl.ops import elementwise as ew

    x, axis, index, src, part, cut, total = _scattered(x, axis, index, src, "scatter", _negative)
    count = _padded(_hits(index, src, part, axis), x, cut)
    hit = count > 0
    written = _padded(total, x, cut) / ew.maximum(count, 1)
    return ew.where(hit, written, x)


def index_select(x, axis, index):
    """torch.index_select: the entries of x at the 1-D `index` along `axis` (take's op);
    negative indices are refused, as PyTorch's."""
    x, index = _lift(x, index)
    if index.ndim != 1:
        raise GraphError(f"index_select: indices {describe(index)} must be 1-D, got shape "
                         f"{format_shape(index.shape)}")
    axis = _axis(axis, x, f"index_select from {describe(x)}")
    index = _checked(index, x, axis, "index_select", negative=False)
    return mv.TAKE(x, index, axis=axis)


def index_add(x, axis, index, src, alpha=1):
    """torch.index_add: x with alpha * src's slices added at the 1-D `index` along `axis`
    (repeated indices add up); src has x's shape with len(index) along the axis."""
    x, index, src = _lift(x, index, src)
    if index.ndim != 1:
        raise GraphError(f"index_add: indices {describe(index)} must be 1-D, got shape "
                         f"{format_shape(index.shape)}")
    axis = _axis(axis, x, f"index_add into {describe(x)}")
    index = _checked(index, x, axis, "index_add", negative=False)
    expected = x.shape[:axis] + index.shape + x.shape[axis + 1:]
    if not mv.shapes_match(src.shape, expected):
        raise GraphError(f"index_add: source {describe(src)} of shape "
                         f"{format_shape(src.shape)} must have shape {format_shape(expected)}")
    added = mv.SCATTER_ADD(src, index, x, axis=axis)
    return x + (added if alpha == 1 else added * alpha)



def scatter_reduce(x, axis, index, src, reduce, *, include_self=True, _negative=False):
    """torch.scatter_reduce: x with src's elements combined at index along `axis` by `reduce`,
    "sum", "prod", "mean", "amax" or "amin"; with include_self, x's own value takes part,
    otherwise a position some element reaches holds the reduction of those elements alone.
    "prod", "amax" and "amin" compare every index with every position along the axis (memory
    of index's size times the axis's length); the gradient follows the maximum, minimum or
    product, as PyTorch's. (`_negative`: indices count from the end, as ONNX's.)"""
    import graphdl as gd
    from graphdl.ops.leaf import constant

    if reduce not in ("sum", "prod", "mean", "amax", "amin"):
        raise GraphError(f"scatter_reduce: reduce must be 'sum', 'prod', 'mean', 'amax' or "
                         f"'amin', got {reduce!r}")
    x, axis, index, src, part, cut, total = _scattered(x, axis, index, src, "scatter_reduce",
                                                       _negative)
    dtype = np.dtype(src.dtype)
    if reduce in ("sum", "mean"):
        count = _hits(index, src, part, axis)
        if reduce == "sum":
            combined = part + total if include_self else gd.where(count > 0, total, part)
        elif include_self:
            combined = (part + total) / (count + 1)
        else:
            combined = gd.where(count > 0, total / gd.maximum(count, 1), part)
    else:
        n = x.shape[axis]
        if _negative:
            index = gd.where(index < 0, index + n, index)
        positions = np.arange(n, dtype=index.dtype).reshape(
            (1,) * (axis + 1) + (n,) + (1,) * (x.ndim - axis - 1))
        sent = gd.equal(gd.expand_dims(index, axis + 1), constant(positions))
        values = gd.expand_dims(src, axis + 1)
        if reduce == "prod":
            fill, pick, both = np.ones((), dtype), gd.prod, lambda a, b: a * b
        elif reduce == "amax":
            fill, pick, both = np.array(-np.inf, dtype), gd.max, gd.maximum
        else:
            fill, pick, both = np.array(np.inf, dtype), gd.min, gd.minimum
        reduced = pick(gd.where(sent, values, constant(fill)), axis=axis)
        if include_self:
            combined = both(part, reduced)
        else:
            combined = gd.where(gd.any(sent, axis=axis), reduced, part)
    return combined if cut is None else x + mv.UNSLICE(combined - part, x, index=cut)
