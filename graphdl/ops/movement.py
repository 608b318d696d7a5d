"""Movement primitives: reshape, transpose, broadcasting, slicing, concatenation, gather.

Ops whose output shape must follow another node's shape (`reshape`, `broadcast_to`, `sum_to`
with a `like` input) take that node as an extra input instead of a shape attribute, so that
gradient graphs declared with unknown (None) dimensions stay valid once those are bound.
"""

from __future__ import annotations

import math

import numpy as np

from graphdl import runtime
from graphdl.errors import GraphError
from graphdl.ir import describe, format_shape
from graphdl.opdef import OpDef, register
from graphdl.ops import elementwise as ew


def normalize_axes(axes, ndim, what, scalar_axis=False):
    """NumPy-style axis argument (None, int or tuple; negatives count from the end) -> sorted
    tuple. `scalar_axis` (reductions, squeeze): a 0-d array has the one axis 0 (alias -1),
    which names the array itself, so nothing is reduced (NumPy's sum/max/min, PyTorch's every
    reduction)."""
    if axes is None:
        return tuple(range(ndim))
    if isinstance(axes, (int, np.integer)):
        axes = (axes,)
    size = 1 if scalar_axis and ndim == 0 else ndim
    out = []
    for a in axes:
        if not isinstance(a, (int, np.integer)) or not -size <= a < size:
            raise GraphError(f"{what}: axis {a!r} is out of range for {ndim} dimensions")
        out.append(int(a) % size)
    if len(set(out)) != len(out):
        raise GraphError(f"{what}: repeated axis in {tuple(axes)!r}")
    return tuple(sorted(out)) if ndim else ()


def shapes_match(shape, expected):
    """Whether `shape` is `expected`, an unknown (None) dimension on either side matching any."""
    return len(shape) == len(expected) and all(
        None in (d, e) or d == e for d, e in zip(shape, expected))


def scalar_identity(node, args):
    """The closed form of an op that is the identity on a scalar (a reshape, a sum of one)."""
    return args[0]


_ARRAYS_ONLY = "needs arrays of one or more dimensions"  # no closed form: never in a scalar graph


# reshape: x viewed with `shape` (one entry may be -1), or with the shape of a `like` input.
def _reshape_infer(inputs, attrs):
    x = inputs[0]
    if len(inputs) == 2:
        return inputs[1].shape, x.dtype
    shape = attrs["shape"]
    known = math.prod(d for d in x.shape if d is not None)
    if None in x.shape:
        return tuple(None if d == -1 else d for d in shape), x.dtype
    rest = math.prod(d for d in shape if d != -1)
    if -1 in shape:
        if rest == 0 or known % rest:
            raise GraphError(
                f"reshape: cannot reshape {describe(x)} of shape {format_shape(x.shape)} "
                f"({known} elements) to {format_shape(shape)}"
            )
        shape = tuple(known // rest if d == -1 else d for d in shape)
    elif rest != known:
        raise GraphError(
            f"reshape: cannot reshape {describe(x)} of shape {format_shape(x.shape)} "
            f"({known} elements) to {format_shape(shape)} ({rest} elements)"
        )
    return shape, x.dtype


RESHAPE = register(OpDef(
    "reshape", infer=_reshape_infer, shape_only=(1,), view=True,
    impl=lambda x, like=None, shape=None: x.reshape(shape if like is None else like.shape),
    pullback=lambda n, g: [RESHAPE(g, n.inputs[0]), None][: len(n.inputs)],
    narration=lambda w: f"{w.dx} = reshape({w.dy}) to {w.x}'s shape {w.shape}",
    closed_form=scalar_identity, kinks="linear",
))


def reshape(x, shape):
    shape = (shape,) if isinstance(shape, int) else tuple(int(d) for d in shape)
    if sum(d == -1 for d in shape) > 1 or any(d < -1 for d in shape):
        raise GraphError(f"reshape: {describe(x)}: shape {shape} may hold one -1 and no other "
                         "negative")
    return RESHAPE(x, shape=shape)


# transpose: permute axes (reversed by default, as NumPy); the gradient permutes back.
def _transpose_infer(inputs, attrs):
    x = inputs[0]
    axes = attrs["axes"]
    if sorted(axes) != list(range(x.ndim)):
        raise GraphError(f"transpose: {axes} is not a permutation of {describe(x)}'s {x.ndim} axes")
    return tuple(x.shape[a] for a in axes), x.dtype


TRANSPOSE = register(OpDef(
    "transpose", infer=_transpose_infer, impl=lambda x, axes: np.transpose(x, axes),
    view=True,
    pullback=lambda n, g: [TRANSPOSE(g, axes=tuple(np.argsort(n.attrs["axes"]).tolist()))],
    label=lambda node, folded: "ᵀ" if node.ndim <= 2 else f"transpose {node.attrs['axes']}",
    narration=lambda w: (f"{w.dx} = {w.dy} transposed back "
                         f"(axes {tuple(np.argsort(w.node.attrs['axes']))})"),
    closed_form=scalar_identity, kinks="linear",
))


def transpose(x, axes=None):
    if axes is not None and any(not -x.ndim <= int(a) < x.ndim for a in axes):
        raise GraphError(f"transpose: axes {tuple(axes)} are out of range for {describe(x)}'s "
                         f"{x.ndim} axes")
    axes = (tuple(range(x.ndim))[::-1] if axes is None
            else tuple(int(a) % max(x.ndim, 1) for a in axes))
    return TRANSPOSE(x, axes=axes)


def swap_last(x):
    """x with its last two axes exchanged (matmul's transpose)."""
    axes = list(range(x.ndim))
    axes[-2], axes[-1] = axes[-1], axes[-2]
    return TRANSPOSE(x, axes=tuple(axes))


def _shape_restored(w):
    return f"{w.dx} = {w.dy} with {w.x}'s shape {w.shape} restored"


# expand_dims: insert size-1 axes (positions in the output); the gradient squeezes them.
def _expand_infer(inputs, attrs):
    x = inputs[0]
    shape = list(x.shape)
    for a in attrs["axis"]:
        shape.insert(a, 1)
    return tuple(shape), x.dtype


EXPAND_DIMS = register(OpDef(
    "expand_dims", infer=_expand_infer, impl=lambda x, axis: np.expand_dims(x, axis),
    view=True,
    pullback=lambda n, g: [SQUEEZE(g, axis=n.attrs["axis"])],
    label="expand", narration=_shape_restored, closed_form=scalar_identity, kinks="linear",
))


def expand_dims(x, axis):
    ndim = x.ndim + (1 if isinstance(axis, int) else len(axis))
    return EXPAND_DIMS(x, axis=normalize_axes(axis, ndim, f"expand_dims of {describe(x)}"))


# squeeze: remove size-1 axes; the gradient puts them back.
def _squeeze_infer(inputs, attrs):
    x = inputs[0]
    for a in attrs["axis"]:
        if x.shape[a] not in (1, None):
            raise GraphError(f"squeeze: axis {a} of {describe(x)} has size {x.shape[a]}, not 1")
    return tuple(d for i, d in enumerate(x.shape) if i not in attrs["axis"]), x.dtype


SQUEEZE = register(OpDef(
    "squeeze", infer=_squeeze_infer, impl=lambda x, axis: np.squeeze(x, axis),
    view=True,
    pullback=lambda n, g: [EXPAND_DIMS(g, axis=n.attrs["axis"])],
    narration=_shape_restored, closed_form=scalar_identity, kinks="linear",
))


def squeeze(x, axis=None):
    if axis is None:
        axis = tuple(i for i, d in enumerate(x.shape) if d == 1)
    return SQUEEZE(x, axis=normalize_axes(axis, x.ndim, f"squeeze of {describe(x)}",
                                          scalar_axis=True))


# broadcast_to: x repeated to `shape` (or to a `like` input's shape); autodiff sums it back.
def _broadcast_infer(inputs, attrs):
    x = inputs[0]
    target = inputs[1].shape if len(inputs) == 2 else attrs["shape"]
    if len(target) < x.ndim:
        raise GraphError(
            f"broadcast_to: cannot broadcast {describe(x)} of shape {format_shape(x.shape)} "
            f"to fewer dimensions {format_shape(target)}"
        )
    for d, t in zip(x.shape[::-1], target[::-1]):
        if d not in (1, None) and t is not None and d != t:
            raise GraphError(
                f"broadcast_to: cannot broadcast {describe(x)} of shape {format_shape(x.shape)} "
                f"to {format_shape(target)}"
            )
    return tuple(target), x.dtype


BROADCAST_TO = register(OpDef(
    "broadcast_to", infer=_broadcast_infer, broadcasts=True, shape_only=(1,), view=True,
    impl=lambda x, like=None, shape=None: np.broadcast_to(x, shape if like is None else like.shape),
    pullback=lambda n, g: [g, None][: len(n.inputs)],
    label="broadcast",
    narration=lambda w: f"{w.dx} = {w.dy} summed over the broadcast axes to {w.shape}",
    closed_form=scalar_identity, kinks="linear",
))


def broadcast_to(x, shape):
    return BROADCAST_TO(x, shape=tuple(shape))


def broadcast_like(x, like):
    return BROADCAST_TO(x, like)


# sum_to: undo broadcasting, summing g down to the shape of `like` (autodiff's unbroadcast).
def _sum_to_impl(x, like):
    return runtime._sum_to(x, like.shape)


SUM_TO = register(OpDef(
    "sum_to", shape_only=(1,), aliases=True,  # nothing to sum: the input itself
    infer=lambda inputs, a: (inputs[1].shape, inputs[0].dtype), impl=_sum_to_impl,
    pullback=lambda n, g: [BROADCAST_TO(g, n.inputs[0]), None],
    narration=lambda w: f"{w.dx} = {w.dy} broadcast back to {w.shape}",
    closed_form=scalar_identity, kinks="linear",
))


def sum_to(x, like):
    return SUM_TO(x, like)


# slice: basic indexing with (start, stop, step) per axis; the gradient pads with zeros.
def _slice_infer(inputs, attrs):
    x = inputs[0]
    shape = tuple(
        None if d is None else len(range(*slice(*s).indices(d)))
        for d, s in zip(x.shape, attrs["index"])
    )
    return shape, x.dtype


def _unslice_impl(g, like, index):
    return runtime._unslice(g, like.shape, g.dtype, tuple(slice(*s) for s in index))


SLICE = register(OpDef(
    "slice", infer=_slice_infer, impl=lambda x, index: x[tuple(slice(*s) for s in index)],
    view=True,
    pullback=lambda n, g: [UNSLICE(g, n.inputs[0], index=n.attrs["index"])],
    narration=lambda w: f"{w.dx} = zeros of {w.x}'s shape with {w.dy} written into the slice",
    closed_form=_ARRAYS_ONLY, kinks="linear",
))

# unslice: zeros shaped like `like` with g written into the slice (slice's pullback).
UNSLICE = register(OpDef(
    "unslice", shape_only=(1,), infer=lambda inputs, a: (inputs[1].shape, inputs[0].dtype),
    impl=_unslice_impl,
    pullback=lambda n, g: [SLICE(g, index=n.attrs["index"]), None],
    narration=lambda w: f"{w.dx} = the slice of {w.dy} where {w.x} was written",
    closed_form=_ARRAYS_ONLY, kinks="linear",
))


def getitem(x, key):
    """x[key] for ints and slices (basic indexing)."""
    key = key if isinstance(key, tuple) else (key,)
    if len(key) > x.ndim or any(not isinstance(k, (int, slice)) for k in key):
        raise GraphError(f"indexing {describe(x)}: only ints and slices are supported, got {key!r}")
    index, drop = [], []
    for axis, k in enumerate(key + (slice(None),) * (x.ndim - len(key))):
        if isinstance(k, int):
            d = x.shape[axis]
            if d is not None and not -d <= k < d:
                raise GraphError(f"index {k} is out of range for axis {axis} of {describe(x)}")
            k = slice(k, k + 1 or None)
            drop.append(axis)
        index.append((k.start, k.stop, k.step))
    out = SLICE(x, index=tuple(index))
    return SQUEEZE(out, axis=tuple(drop)) if drop else out


# concatenate: join along `axis`; each input's gradient is its slice of g.
def _concat_infer(inputs, attrs):
    axis = attrs["axis"]
    first = inputs[0]
    for x in inputs[1:]:
        if x.ndim != first.ndim or any(
            i != axis and None not in (a, b) and a != b
            for i, (a, b) in enumerate(zip(x.shape, first.shape))
        ):
            raise GraphError(
                f"concatenate: {describe(x)} of shape {format_shape(x.shape)} does not fit "
                f"{describe(first)} of shape {format_shape(first.shape)} along axis {axis}"
            )
    sizes = [x.shape[axis] for x in inputs]
    # Off the axis the sizes agree (checked above); take the known one where some are None.
    shape = [next((x.shape[i] for x in inputs if x.shape[i] is not None), None)
             for i in range(first.ndim)]
    shape[axis] = None if None in sizes else sum(sizes)
    return tuple(shape), ew.promote(inputs, attrs)


def _concat_pullback(n, g):
    axis, start, grads = n.attrs["axis"], 0, []
    for x in n.inputs:
        if x.shape[axis] is None:
            raise GraphError(
                f"concatenate: the gradient needs {describe(x)}'s size along axis {axis}"
            )
        index = [(None, None, None)] * n.ndim
        index[axis] = (start, start + x.shape[axis], None)
        grads.append(SLICE(g, index=tuple(index)))
        start += x.shape[axis]
    return grads


CONCATENATE = register(OpDef(
    "concatenate", infer=_concat_infer, pullback=_concat_pullback,
    impl=lambda *xs, axis: np.concatenate(xs, axis=axis),
    label="concat",
    narration=lambda w: f"{w.dx} = the part of {w.dy} where {w.x} was concatenated",
    closed_form=_ARRAYS_ONLY, kinks="linear",
))


def concatenate(xs, axis=0):
    from graphdl.ops.leaf import lift_all

    xs = lift_all(list(xs))
    if not xs or xs[0].ndim == 0:
        raise GraphError("concatenate needs at least one array of one or more dimensions")
    return CONCATENATE(*xs, axis=normalize_axes(axis, xs[0].ndim, "concatenate")[0])


# check_index: the identity on integer indices that raises, naming the user's node, when one
# falls outside [-n, n) (`negative`: NumPy's indexing from the end) or [0, n) (class labels),
# n being the size of axis `axis` of `like` (read at call time: it may be unknown until then).
# `rows` (class labels of the scores `like`): one index per row, so idx must have like's shape
# without that axis; checked wherever shapes are inferred, at declaration and, for dimensions
# unknown until then, when the graph is specialized to the fed shapes.
def _check_index_impl(idx, like, axis, what, negative, rows=False):
    return runtime._check_index(idx, like.shape[axis], negative, what)


def _check_index_infer(inputs, attrs):
    idx, like = inputs
    if idx.dtype.kind not in "iu":
        raise GraphError(f"{attrs['what']} must be integers, got {describe(idx)} of dtype "
                         f"{idx.dtype}")
    if attrs.get("rows"):
        axis = attrs["axis"]
        expected = like.shape[:axis] + like.shape[axis + 1:]
        if not shapes_match(idx.shape, expected):
            raise GraphError(f"{attrs['what']} must have the shape of {describe(like)} without "
                             f"its class axis, {format_shape(expected)}; they have shape "
                             f"{format_shape(idx.shape)}; {describe(like)} has shape "
                             f"{format_shape(like.shape)}")
    return idx.shape, idx.dtype


CHECK_INDEX = register(OpDef(
    "check_index", infer=_check_index_infer, impl=_check_index_impl, shape_only=(1,),
    aliases=True,  # returns the indices it checked
    pullback=lambda n, g: [None, None],
    narration="no gradient flows through it", closed_form="needs integer indices",
    kinks="no gradient flows through it",
))


def check_index(idx, like, axis, what, negative=True, rows=False):
    """idx, checked at call time to index axis `axis` of `like`; `what` names it in the error.
    `rows`: idx holds one class label per row of the scores `like` (see above)."""
    return CHECK_INDEX(idx, like, axis=axis, what=what, negative=negative, rows=rows)


# check_shape: the identity on x, whose shape rule requires x to have the shape of `like` (an
# unknown dimension matching any) and otherwise raises the text `explain(x, like, what)`: the
# caller's own message (a loss naming its operands), at declaration and again when the graph
# is specialized to the fed shapes. Once shapes are bound it has nothing left to do, and the
# optimizer removes it.
def _check_shape_infer(inputs, attrs):
    x, like = inputs
    if not shapes_match(x.shape, like.shape):
        raise GraphError(attrs["explain"](x, like, attrs["what"]))
    return x.shape, x.dtype


CHECK_SHAPE = register(OpDef(
    "check_shape", infer=_check_shape_infer, impl=lambda x, like, explain, what: x,
    shape_only=(1,), aliases=True,  # returns x itself
    pullback=lambda n, g: [g, None],
    narration=lambda w: f"{w.dx} = {w.dy} (a shape check: the identity)",
    closed_form=scalar_identity, kinks="linear",
))


def check_shape(x, like, explain, what):
    """x, held to the shape of `like` now and, where a dimension is unknown until the call, at
    the call; a mismatch raises GraphError(explain(x, like, what)). Where every dimension is
    known the check now is the whole check, and x is returned as it is (no node)."""
    attrs = {"explain": explain, "what": what}
    if None in x.shape + like.shape:
        return CHECK_SHAPE(x, like, **attrs)
    _check_shape_infer((x, like), attrs)
    return x


# take: gather along `axis` (an embedding lookup); the gradient is a scatter-add.
# Indices follow NumPy: -1 is the last entry; outside [-n, n) they raise, naming the indices.
def _take_infer(inputs, attrs):
    a, idx = inputs
    if idx.dtype.kind not in "iu":
        raise GraphError(f"take: indices {describe(idx)} must be integers, got {idx.dtype}")
    ax = attrs["axis"]
    return a.shape[:ax] + idx.shape + a.shape[ax + 1:], a.dtype


TAKE = register(OpDef(
    "take", infer=_take_infer, impl=lambda a, idx, axis: np.take(a, idx, axis=axis),
    pullback=lambda n, g: [SCATTER_ADD(g, n.inputs[1], n.inputs[0], axis=n.attrs["axis"]), None],
    narration=lambda w: f"{w.dx} = {w.dy} scatter-added into the gathered positions of {w.x}",
    closed_form=_ARRAYS_ONLY, kinks="linear",
))


def _scatter_add_impl(g, idx, like, axis):
    return runtime._scatter_add(g, idx, like.shape, g.dtype, axis)


# scatter_add: zeros shaped like `like`, with g's slices added at `idx` along `axis`.
SCATTER_ADD = register(OpDef(
    "scatter_add", shape_only=(2,), infer=lambda inputs, a: (inputs[2].shape, inputs[0].dtype),
    impl=_scatter_add_impl,
    pullback=lambda n, g: [TAKE(g, n.inputs[1], axis=n.attrs["axis"]), None, None],
    narration=lambda w: f"{w.dx} = {w.dy} gathered at the positions {w.x} was added to",
    closed_form=_ARRAYS_ONLY, kinks="linear",
))


def take(a, indices, axis=None):
    from graphdl.ops.leaf import lift_all

    a, indices = lift_all([a, indices])
    if axis is None:
        a, axis = reshape(a, (-1,)), 0
    axis = normalize_axes(axis, a.ndim, f"take from {describe(a)}")[0]
    indices = check_index(indices, a, axis, f"take: indices {describe(indices)} into {describe(a)}")
    return TAKE(a, indices, axis=axis)
