"""PyTorch's functions that rearrange, repeat or pad elements, as composites of the movement
primitives: flip, roll, stack, tile and repeat, repeat_interleave, tril and triu, pad, diagonal,
meshgrid, pixel_shuffle and pixel_unshuffle. Each moves elements without computing any, so its
value is exact, and its gradient comes from its parts: a slice's is an unslice, a
concatenation's its slices, a take's a scatter-add, a broadcast's a sum, a where's a where.

Axes are graphdl's `axis=` or PyTorch's spelling (`dim=`, `dims=`), negative from the end. The
sizes a rearrangement depends on must be known at declaration. Each names its output node, so
that a drawing labels the gate (and `collapse=["pad"]` draws it as one).
"""

from __future__ import annotations

import math

import numpy as np

from graphdl.errors import GraphError
from graphdl.ir import describe, format_shape
from graphdl.ops import elementwise as ew
from graphdl.ops import leaf
from graphdl.ops import movement as mv
from graphdl.ops.composite import _named


def _node(x):
    (x,) = leaf.lift_all([x])
    return x


def _named_new(out, x, name):
    """`out` named `name`, unless it is x itself (nothing to rearrange: x keeps its name)."""
    return out if out is x else _named(out, name)


def _spelled(what, ours, theirs, torch_name, default=None, name="axis"):
    """The argument given in graphdl's spelling `name` (ours) or PyTorch's `torch_name`
    (theirs); `default` where neither is given."""
    if ours is not None and theirs is not None:
        raise GraphError(f"{what}: give {name} or {torch_name}, not both")
    return next((v for v in (ours, theirs) if v is not None), default)


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _ints(values, what, name, low=None):
    """`values` (an int or a sequence of them) as a tuple of ints, each at least `low`."""
    values = tuple(values) if isinstance(values, (tuple, list, np.ndarray)) else (values,)
    if not all(_is_int(v) and (low is None or v >= low) for v in values):
        bound = "" if low is None else f" of at least {low}"
        raise GraphError(f"{what}: {name} must be integers{bound}, got {values!r}")
    return tuple(int(v) for v in values)


def _axis(axis, ndim, what):
    if not _is_int(axis):
        raise GraphError(f"{what}: axis must be an int, got {axis!r}")
    return mv.normalize_axes(axis, ndim, what)[0]


def _sizes(x, axes, what):
    """x's sizes along `axes`, refused where one is unknown at declaration."""
    sizes = [x.shape[a] for a in axes]
    if None in sizes:
        raise GraphError(f"{what}: the sizes of axes {tuple(axes)} must be known at declaration; "
                         f"{describe(x)} has shape {format_shape(x.shape)}")
    return sizes


def _along(x, axis, start, stop, step=None):
    """x sliced along `axis` only."""
    index = [(None, None, None)] * x.ndim
    index[axis] = (start, stop, step)
    return mv.SLICE(x, index=tuple(index))


def flip(x, axis=None, *, dims=None):
    """x with its elements in reverse order along `axis` (PyTorch's `dims`: an int or a tuple;
    None: every axis, as NumPy's flip): one slice of step -1."""
    x = _node(x)
    what = f"flip of {describe(x)}"
    axes = mv.normalize_axes(_spelled(what, axis, dims, "dims"), x.ndim, what, scalar_axis=True)
    if not axes:
        return x
    index = tuple((None, None, -1) if a in axes else (None, None, None) for a in range(x.ndim))
    return _named(mv.SLICE(x, index=index), "flip")


def roll(x, shifts, axis=None, *, dims=None):
    """x shifted by `shifts` along `axis` (PyTorch's `dims`), elements past the end coming back
    at the start: torch.roll. One shift per axis (an axis may repeat: its shifts add up); no
    axis: x flattened, rolled and given its shape back. Each rolled axis is two slices joined."""
    x = _node(x)
    what = f"roll of {describe(x)}"
    axis = _spelled(what, axis, dims, "dims")
    shifts = _ints(shifts, what, "shifts")
    if axis is None:
        if len(shifts) != 1:
            raise GraphError(f"{what}: without an axis, give one shift (x is flattened), got "
                             f"{shifts}")
        flat = mv.reshape(x, (-1,))
        rolled = _rolled(flat, {0: shifts[0]}, what)
        out = x if rolled is flat else mv.reshape(rolled, _sizes(x, range(x.ndim), what))
        return _named_new(out, x, "roll")
    axes = [_axis(a, x.ndim, what) for a in ((axis,) if _is_int(axis) else axis)]
    if len(axes) != len(shifts):
        raise GraphError(f"{what}: {len(shifts)} shifts for {len(axes)} axes; give one shift "
                         f"per axis")
    total = dict.fromkeys(axes, 0)
    for a, s in zip(axes, shifts):
        total[a] += s
    return _named_new(_rolled(x, total, what), x, "roll")


def _rolled(x, shifts, what):
    """x rolled by shifts[a] along each axis a: the last elements joined before the first."""
    for a, n in zip(shifts, _sizes(x, shifts, what)):
        s = shifts[a] % n if n else 0
        if s:
            x = mv.CONCATENATE(_along(x, a, n - s, n), _along(x, a, 0, n - s), axis=a)
    return x


def stack(xs, axis=None, *, dim=None):
    """The arrays `xs`, all of one shape, joined along a new axis `axis` (PyTorch's `dim`;
    default 0): each given a size-1 axis there, then concatenated."""
    xs = leaf.lift_all(list(xs))
    if not xs:
        raise GraphError("stack needs at least one array")
    first = xs[0]
    for x in xs[1:]:
        if not mv.shapes_match(x.shape, first.shape):
            raise GraphError(f"stack: {describe(x)} has shape {format_shape(x.shape)}, "
                             f"{describe(first)} has shape {format_shape(first.shape)}; they "
                             f"must be equal")
    axis = _axis(_spelled("stack", axis, dim, "dim", 0), first.ndim + 1, "stack")
    parts = [mv.EXPAND_DIMS(x, axis=(axis,)) for x in xs]
    return _named(parts[0] if len(parts) == 1 else mv.CONCATENATE(*parts, axis=axis), "stack")


def tile(x, reps=None, *, dims=None):
    """x repeated `reps[i]` times along axis i (PyTorch's `dims`): torch.tile and NumPy's tile.
    Fewer reps than axes repeat the last axes; more give x leading axes of size 1."""
    x = _node(x)
    what = f"tile of {describe(x)}"
    reps = _spelled(what, reps, dims, "dims", name="reps")
    if reps is None:
        raise GraphError(f"{what}: give the repetitions, reps (PyTorch's dims)")
    return _tiled(x, _ints(reps, what, "reps", 0), what, "tile")


def repeat(x, *sizes):
    """x repeated `sizes[i]` times along axis i: torch.Tensor.repeat (NumPy's repeat is
    `repeat_interleave`), whose sizes cover every axis of x; more give leading axes."""
    x = _node(x)
    what = f"repeat of {describe(x)}"
    if len(sizes) == 1 and not _is_int(sizes[0]):
        (sizes,) = sizes
    sizes = _ints(sizes, what, "sizes", 0)
    if len(sizes) < x.ndim:
        raise GraphError(f"{what}: {len(sizes)} sizes for {x.ndim} axes; give one per axis "
                         f"(tile repeats the last axes only)")
    return _tiled(x, sizes, what, "repeat")


def _tiled(x, reps, what, name):
    """x, given leading axes to len(reps), viewed with a size-1 axis before each axis, broadcast
    there to the repetitions and reshaped: one broadcast, whose gradient sums the copies."""
    ndim = max(len(reps), x.ndim)
    reps = (1,) * (ndim - len(reps)) + reps
    shape = (1,) * (ndim - x.ndim) + tuple(_sizes(x, range(x.ndim), what))
    spread = mv.reshape(x, [v for d in shape for v in (1, d)])
    copies = mv.broadcast_to(spread, [v for r, d in zip(reps, shape) for v in (r, d)])
    return _named(mv.reshape(copies, [r * d for r, d in zip(reps, shape)]), name)


def repeat_interleave(x, repeats, axis=None, *, dim=None):
    """Each element of x repeated `repeats` times in place along `axis` (PyTorch's `dim`; None:
    x flattened): torch.repeat_interleave with an int, NumPy's repeat. A broadcast along a new
    axis after `axis`, merged into it."""
    x = _node(x)
    what = f"repeat_interleave of {describe(x)}"
    if not _is_int(repeats) or repeats < 0:
        raise GraphError(f"{what}: repeats must be an int of at least 0, got {repeats!r}")
    axis = _spelled(what, axis, dim, "dim")
    shape = _sizes(x, range(x.ndim), what)
    if axis is None:
        x, shape, axis = mv.reshape(x, (-1,)), [math.prod(shape)], 0
    axis = _axis(axis, x.ndim, what)
    copies = mv.broadcast_to(mv.expand_dims(x, axis + 1),
                             shape[:axis + 1] + [repeats] + shape[axis + 1:])
    merged = shape[:axis] + [shape[axis] * repeats] + shape[axis + 1:]
    return _named(mv.reshape(copies, merged), "repeat_interleave")


def tril(x, diagonal=0):
    """x with the elements above its `diagonal`-th diagonal zeroed, over its last two axes
    (torch.tril): a where with a constant mask."""
    return _triangle(x, diagonal, True, "tril")


def triu(x, diagonal=0):
    """x with the elements below its `diagonal`-th diagonal zeroed, over its last two axes
    (torch.triu): a where with a constant mask."""
    return _triangle(x, diagonal, False, "triu")


def _triangle(x, diagonal, lower, name):
    x = _node(x)
    what = f"{name} of {describe(x)}"
    if not _is_int(diagonal):
        raise GraphError(f"{what}: diagonal must be an int, got {diagonal!r}")
    if x.ndim < 2:
        raise GraphError(f"{what}: needs two or more axes (a matrix, or a batch of them), got "
                         f"shape {format_shape(x.shape)}")
    n, m = _sizes(x, (x.ndim - 2, x.ndim - 1), what)
    mask = np.tri(n, m, diagonal, bool) if lower else ~np.tri(n, m, diagonal - 1, bool)
    return _named(ew.WHERE(leaf.constant(mask), x, leaf.constant(0, x.dtype)), name)


PAD_MODES = ("constant", "reflect", "replicate", "circular")


def pad(x, pad, mode="constant", value=None):
    """x padded as PyTorch's F.pad: `pad` holds (before, after) pairs, the last axis's first
    (`(1, 1)` pads the last axis, `(1, 1, 2, 0)` also the one before it); a negative pad crops.
    `mode`: "constant" (`value`, default 0, in x's dtype), "reflect" (mirrored about the edge
    element; pads smaller than the axis), "replicate" (the edge element repeated) or
    "circular" (wrapped around from the other end of the cropped axis, at most once).

    Constant padding is a crop (slice) and a concatenation with the fill broadcast; the other
    modes gather each padded axis at constant indices (a take, whose gradient adds up the
    copies). Unlike F.pad, the other modes pad any axes, of an input of any rank."""
    x = _node(x)
    what = f"pad of {describe(x)}"
    pad = _ints(pad, what, "pad")
    if len(pad) % 2 or len(pad) > 2 * x.ndim:
        raise GraphError(f"{what}: pad must hold a (before, after) pair per padded axis, the "
                         f"last axis first, for at most its {x.ndim} axes; got {len(pad)} "
                         f"numbers {pad}")
    if mode not in PAD_MODES:
        raise GraphError(f"{what}: mode must be one of {', '.join(map(repr, PAD_MODES))}, got "
                         f"{mode!r}")
    real = np.ndim(value) == 0 and np.asarray(value).dtype.kind in "biuf"  # 0-d arrays too
    if value is not None and (mode != "constant" or not real):
        raise GraphError(f"{what}: value must be a number, for mode 'constant' only; got "
                         f"{value!r} with mode {mode!r}")
    pairs = {x.ndim - 1 - k: pad[2 * k: 2 * k + 2] for k in range(len(pad) // 2)}
    pairs = {a: p for a, p in pairs.items() if p != (0, 0)}
    for (a, (before, after)), n in zip(pairs.items(), _sizes(x, pairs, what)):
        _check_pad(what, mode, a, n, before, after)
    if mode == "constant":
        out = _pad_constant(x, pairs, 0 if value is None else value, what)
    else:
        out = x
        for a, (before, after) in pairs.items():
            index = _PAD_INDEX[mode](x.shape[a], before, after)
            out = mv.TAKE(out, leaf.constant(index), axis=a)
    return _named_new(out, x, "pad")


def _check_pad(what, mode, axis, n, before, after):
    """Refuse pads of axis `axis` (size n) that PyTorch refuses or computes wrongly."""
    kept = n - max(-before, 0) - max(-after, 0)  # the elements no negative pad crops
    refusal = None
    if kept < 0:
        refusal = "crop more than the axis holds"
    elif mode == "reflect" and max(before, after) >= n:
        refusal = "must be smaller than the axis for reflect padding"
    elif mode == "replicate" and n == 0:
        refusal = "have no element to replicate"
    elif mode == "circular" and max(before, after) > kept:
        refusal = f"wrap around more than once: the crops keep {kept} elements"
    if refusal:
        raise GraphError(f"{what}: the pads ({before}, {after}) of axis {axis}, of size {n}, "
                         f"{refusal}")


def _pad_constant(x, pairs, value, what):
    """x cropped by the negative pads, then joined with the fill broadcast to each positive
    pad's block, one axis after the other."""
    crop = [(None, None, None)] * x.ndim
    for a, (before, after) in pairs.items():
        if min(before, after) < 0:
            crop[a] = (max(-before, 0), x.shape[a] - max(-after, 0), None)
    out = mv.SLICE(x, index=tuple(crop)) if any(c[0] is not None for c in crop) else x
    fill = leaf.constant(value, x.dtype)
    for a, (before, after) in pairs.items():
        shape = _sizes(out, range(out.ndim), what)
        blocks = [mv.broadcast_to(fill, shape[:a] + [p] + shape[a + 1:]) if p > 0 else None
                  for p in (before, after)]
        if any(b is not None for b in blocks):
            parts = [blocks[0], out, blocks[1]]
            out = mv.CONCATENATE(*[p for p in parts if p is not None], axis=a)
    return out


def _reflect(n, before, after):
    """Positions -before .. n + after - 1 mirrored about the end elements (|pads| < n)."""
    p = np.arange(-before, n + after)
    return np.where(p < 0, -p, np.where(p >= n, 2 * (n - 1) - p, p))


def _replicate(n, before, after):
    return np.clip(np.arange(-before, n + after), 0, max(n - 1, 0))


def _circular(n, before, after):
    """PyTorch's: the axis cropped by the negative pads, then wrapped around by the positive."""
    start, kept = max(-before, 0), n - max(-before, 0) - max(-after, 0)
    return start + np.arange(-max(before, 0), kept + max(after, 0)) % max(kept, 1)


_PAD_INDEX = {"reflect": _reflect, "replicate": _replicate, "circular": _circular}


def diagonal(x, offset=0, axis1=None, axis2=None, *, dim1=None, dim2=None):
    """The diagonal of x over axes axis1 and axis2 (PyTorch's dim1 and dim2; default 0 and 1),
    `offset` above the main one (below where negative), as a new last axis: torch.diagonal,
    NumPy's diagonal. Those axes moved last and merged into one, then a slice of step m + 1 (m
    the columns): one row down and one column right."""
    x = _node(x)
    what = f"diagonal of {describe(x)}"
    if not _is_int(offset):
        raise GraphError(f"{what}: offset must be an int, got {offset!r}")
    if x.ndim < 2:
        raise GraphError(f"{what}: needs two or more axes, got shape {format_shape(x.shape)}")
    a1 = _axis(_spelled(what, axis1, dim1, "dim1", 0, "axis1"), x.ndim, what)
    a2 = _axis(_spelled(what, axis2, dim2, "dim2", 1, "axis2"), x.ndim, what)
    if a1 == a2:
        raise GraphError(f"{what}: axis1 and axis2 are both axis {a1}; they must differ")
    shape = _sizes(x, range(x.ndim), what)
    n, m = shape[a1], shape[a2]
    rest = [a for a in range(x.ndim) if a not in (a1, a2)]
    order = rest + [a1, a2]
    moved = x if order == sorted(order) else mv.TRANSPOSE(x, axes=tuple(order))
    flat = mv.reshape(moved, [shape[a] for a in rest] + [n * m])
    length = max(0, min(n, m - offset) if offset >= 0 else min(n + offset, m))
    start = offset if offset >= 0 else -offset * m
    end = start + (length - 1) * (m + 1) + 1 if length else start
    return _named(_along(flat, flat.ndim - 1, start, end, m + 1), "diagonal")


def meshgrid(*xs, indexing="ij"):
    """One array per 1-d (or 0-d) input, each broadcast to the grid of all their sizes:
    torch.meshgrid and NumPy's. indexing "ij": the k-th input varies along axis k; "xy" (the
    Cartesian layout) swaps the first two axes. The inputs may also come as one list."""
    if len(xs) == 1 and isinstance(xs[0], (list, tuple)):
        (xs,) = xs
    xs = leaf.lift_all(list(xs))
    if not xs:
        raise GraphError("meshgrid needs at least one array")
    if indexing not in ("ij", "xy"):
        raise GraphError(f"meshgrid: indexing must be 'ij' or 'xy', got {indexing!r}")
    for x in xs:
        if x.ndim > 1:
            raise GraphError(f"meshgrid: {describe(x)} has shape {format_shape(x.shape)}; "
                             f"each input must be 0-d or 1-d")
    sizes = [_sizes(x, range(x.ndim), "meshgrid")[0] if x.ndim else 1 for x in xs]
    axes = list(range(len(xs)))
    if indexing == "xy" and len(xs) > 1:
        axes[:2] = [1, 0]
    shape = [0] * len(xs)
    for a, d in zip(axes, sizes):
        shape[a] = d
    grids = []
    for x, a in zip(xs, axes):
        view = [1] * len(xs)
        view[a] = -1
        grids.append(_named(mv.broadcast_to(mv.reshape(x, view), shape), "meshgrid"))
    return tuple(grids)


def pixel_shuffle(x, upscale_factor):
    """torch.nn.functional.pixel_shuffle: (*, C·r², H, W) to (*, C, H·r, W·r), channel
    c·r² + i·r + j of each pixel moved to row i, column j of its r×r block (a sub-pixel
    convolution's last step). One leading axis may be unknown until the call."""
    x = _node(x)
    what = f"pixel_shuffle of {describe(x)}"
    r, lead, (c, h, w) = _pixels(x, upscale_factor, what, "upscale_factor")
    if c % (r * r):
        raise GraphError(f"{what}: its {c} channels (axis {x.ndim - 3}) must be a multiple of "
                         f"upscale_factor² = {r * r}")
    k = len(lead)
    blocks = mv.reshape(x, (*lead, c // (r * r), r, r, h, w))
    moved = mv.transpose(blocks, (*range(k), k, k + 3, k + 1, k + 4, k + 2))
    return _named_new(mv.reshape(moved, (*lead, c // (r * r), h * r, w * r)), x,
                      "pixel_shuffle")


def pixel_unshuffle(x, downscale_factor):
    """torch.nn.functional.pixel_unshuffle, pixel_shuffle's inverse: (*, C, H·r, W·r) to
    (*, C·r², H, W), each r×r block of pixels stacked as r² channels."""
    x = _node(x)
    what = f"pixel_unshuffle of {describe(x)}"
    r, lead, (c, h, w) = _pixels(x, downscale_factor, what, "downscale_factor")
    if h % r or w % r:
        raise GraphError(f"{what}: its height {h} and width {w} must be multiples of "
                         f"downscale_factor {r}")
    k = len(lead)
    blocks = mv.reshape(x, (*lead, c, h // r, r, w // r, r))
    moved = mv.transpose(blocks, (*range(k), k, k + 2, k + 4, k + 1, k + 3))
    return _named_new(mv.reshape(moved, (*lead, c * r * r, h // r, w // r)), x,
                      "pixel_unshuffle")


def _pixels(x, factor, what, name):
    """The factor, x's leading sizes (-1 for the one that may be unknown) and its (C, H, W)."""
    if not _is_int(factor) or factor < 1:
        raise GraphError(f"{what}: {name} must be a positive int, got {factor!r}")
    if x.ndim < 3:
        raise GraphError(f"{what}: needs (*, C, H, W) input, got shape {format_shape(x.shape)}")
    lead = x.shape[:-3]
    if sum(d is None for d in lead) > 1:
        raise GraphError(f"{what}: at most one leading axis may be unknown, got shape "
                         f"{format_shape(x.shape)}")
    return (int(factor), tuple(-1 if d is None else d for d in lead),
            _sizes(x, range(x.ndim - 3, x.ndim), what))
