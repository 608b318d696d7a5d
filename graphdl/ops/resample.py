"""Resampling along axes: `interpolate` (nearest, nearest-exact, (bi)linear, area), adaptive
pooling and sliding windows (`unfold`), as PyTorch has them.

All are reads at constant indices, computed here from the static sizes of the axes: gathers
(`take`) followed by constant weights and sums or by a first arg-max, or, where the indices
have a stride or a period, strided and shifted slices (whose gradients, pads and sums, are
cheaper than a gather's scatter-add). Linear in x wherever they are differentiable, so their
gradients are exact, and both backends' kernels and the ONNX export come from the parts. A 2-D
resampling is separable: one axis after the other, the last axis first, as PyTorch's kernels
weigh it.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from graphdl.errors import GraphError
from graphdl.ir import describe, format_shape
from graphdl.ops import elementwise as ew
from graphdl.ops import indexing as ix
from graphdl.ops import leaf
from graphdl.ops import movement as mv
from graphdl.ops import rearrange as rg
from graphdl.ops import reduce as rd
from graphdl.ops.composite import _floating
from graphdl.ops.conv import avg_pool2d, max_pool2d

_MODES = {"nearest": (3, 4), "nearest-exact": (3, 4), "linear": (3,), "bilinear": (4,),
          "area": (3, 4)}


# ---------------------------------------------------------------- gathers along one axis
def _gathered(x, axis, idx):
    """x read at the constant indices `idx` along `axis` (idx's axes replace it)."""
    return mv.TAKE(x, leaf.constant(np.asarray(idx, np.int64)), axis=axis)


def _cut(x, axis, start, stop, step=1):
    return mv.getitem(x, (slice(None),) * axis + (slice(start, stop, step),))


def _weighted(x, axis, idx, weights, mask=None):
    """Σ_k weights[i, k] · x[..., idx[i, k], ...] along `axis`: a gather and a weighted sum,
    over the taps where `mask` holds (the others are 0 however large the value read)."""
    taps = _gathered(x, axis, idx)
    trail = (1,) * (x.ndim - axis - 1)
    if mask is not None:
        taps = ew.where(leaf.constant(mask.reshape(mask.shape + trail)), taps, 0)
    weights = np.broadcast_to(weights, idx.shape).reshape(idx.shape + trail)
    return rd.sum(taps * leaf.constant(weights.astype(x.dtype)), axis + 1)


def _bin_mean(x, axis, out):
    """The mean of each of PyTorch's adaptive bins along `axis` (see `_bins`)."""
    idx, length = _bins(x.shape[axis], out)
    return _weighted(x, axis, idx, 1 / length[:, None], np.arange(idx.shape[1]) < length[:, None])


def _static(x, axes, what):
    for a in axes:
        if x.shape[a] is None:
            raise GraphError(f"{what}: axis {a} of {describe(x)} (shape {format_shape(x.shape)}) "
                             f"must be known at declaration: the indices read are computed "
                             f"from its size")


# ---------------------------------------------------------------- interpolate
def nearest_index(src, size, rounding="floor"):
    """The input index a nearest resize reads for the source coordinates `src`, rounded by
    ONNX's `nearest_mode` and clipped into [0, size)."""
    rounded = {"floor": np.floor, "ceil": np.ceil,
               "round_prefer_floor": lambda s: np.ceil(s - 0.5),
               "round_prefer_ceil": lambda s: np.floor(s + 0.5)}[rounding](src)
    return np.clip(rounded, 0, size - 1).astype(np.int64)


def linear_taps(src, size):
    """The two input indices and their weights a linear resize reads for the source
    coordinates `src`: PyTorch's rule (a coordinate below 0 reads index 0; the upper neighbour
    of the last index is itself)."""
    src = np.maximum(src, 0)
    low = np.minimum(np.floor(src).astype(np.int64), size - 1)
    frac = np.clip(src - low, 0, 1).astype(src.dtype)
    high = np.where(low < size - 1, low + 1, low)
    return np.stack([low, high], -1), np.stack([1 - frac, frac], -1)


def resample_axis(x, axis, out, src, linear, rounding="floor"):
    """x resized along `axis` to `out` entries read at the source coordinates `src` (nearest,
    or linear between the two neighbours)."""
    size = x.shape[axis]
    if out == size and np.array_equal(src, np.arange(size)):
        return x  # PyTorch copies
    if linear:
        return _linear(x, axis, *linear_taps(src, size))
    return _nearest(x, axis, nearest_index(src, size, rounding))


def _linear(x, axis, idx, weights):
    """The taps `idx` weighted by `weights` along `axis`: where an integer upscale makes them
    periodic (half-pixel or asymmetric), as shifted slices of x whose phases interleave (their
    gradient is pads and sums: cheaper than the scatter-add of a gather), else gathered."""
    size, out = x.shape[axis], len(idx)
    phases = _phases(idx, weights, size, out // size) if out % size == 0 < size < out else None
    if phases is None or None in x.shape:
        return _weighted(x, axis, idx, weights)
    shifts, taps = phases
    lo, hi = max(0, -shifts.min()), max(0, shifts.max())
    edges = [_cut(x, axis, 0, 1)] * lo + [x] + [_cut(x, axis, size - 1, size)] * hi
    padded = mv.concatenate(edges, axis)  # the edges repeated: the clipped taps
    ys = []
    for offsets, w in zip(shifts, taps):
        terms = [_cut(padded, axis, lo + o, lo + o + size) * float(c)
                 for o, c in zip(offsets, w) if c != 0]
        ys.append(terms[0] if len(terms) == 1 else terms[0] + terms[1])
    merged = x.shape[:axis] + (out,) + x.shape[axis + 1:]
    return mv.reshape(rg.stack(ys, axis + 1), merged)


def _phases(idx, weights, size, k):
    """(shifts, weights), each (k, 2), where output k·i + r reads x[clip(i + shifts[r, t])]
    with weights[r, t]: the periodic form of the taps, or None where they have none. A row whose
    two taps clip onto one entry may read it as one tap of weight 1 instead (PyTorch's edges)."""
    rows = np.arange(len(idx)).reshape(size, k)
    middle = rows[size // 2]
    shifts, taps = idx[middle] - size // 2, weights[middle]
    periodic = np.clip(np.arange(size)[:, None, None] + shifts, 0, size - 1)  # (i, r, t)
    same = (idx[rows] == periodic).all(-1) & (weights[rows] == taps).all(-1)
    single = ((periodic[..., 0] == periodic[..., 1]) & (idx[rows][..., 0] == periodic[..., 0])
              & (weights[rows][..., 0] == 1) & (weights[rows][..., 1] == 0))
    return (shifts, taps) if (same | single).all() else None


def _nearest(x, axis, idx):
    """x read at `idx` along `axis`; every k-th entry (an integer downscale) as a strided
    slice, whose gradient is a pad: cheaper than the scatter-add of a gather."""
    size, out = x.shape[axis], len(idx)
    k = size // out
    if k and np.array_equal(idx, np.arange(out) * k):
        return _cut(x, axis, 0, (out - 1) * k + 1, k)
    return _gathered(x, axis, idx)


def _torch_source(size, out, factor, mode, align_corners, ct):
    """PyTorch's source coordinate of each output index, computed as its kernels do (in
    float32 for nearest, else in `ct`); the scale is 1/factor where a scale factor was given,
    else size/out."""
    ct = np.float32 if mode.startswith("nearest") else ct
    dst = np.arange(out, dtype=ct)
    scale = ct(1.0 / factor) if factor else ct(size) / ct(out)
    if mode == "nearest-exact":  # (dst + ½) · scale in double, floored as a float
        return ((np.arange(out) + 0.5) * np.float64(scale)).astype(np.float32)
    if out == size:  # PyTorch copies
        return dst
    if mode == "nearest":
        return dst // 2 if out == 2 * size else dst * scale  # PyTorch shifts at twice the size
    if align_corners:
        return dst * (ct(size - 1) / ct(out - 1) if out > 1 else ct(0))
    return scale * (dst + ct(0.5)) - ct(0.5)


def _per_axis(value, n, what, name, kind):
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,) * n
    if len(values) != n or not all(isinstance(v, kind) and not isinstance(v, bool)
                                   for v in values):
        raise GraphError(f"{what}: {name} must be one number or {n} of them, got {value!r}")
    return values


def interpolate(x, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None):
    """torch.nn.functional.interpolate for (N, C, L) ('nearest', 'nearest-exact', 'linear',
    'area') and (N, C, H, W) ('nearest', 'nearest-exact', 'bilinear', 'area') inputs: PyTorch's
    output sizes (floor(size · scale_factor)) and source coordinates (nearest: floor(dst ·
    scale); nearest-exact: floor((dst + ½) · scale); linear: align_corners or half-pixel,
    clamped at 0), with scale = 1/scale_factor where one is given; 'area' is the adaptive
    average pool to the output size."""
    x = _floating(x, "interpolate")
    what = f"interpolate of {describe(x)}"
    if mode not in _MODES:
        raise GraphError(f"{what}: mode must be one of {sorted(_MODES)}, got {mode!r}")
    if x.ndim not in _MODES[mode]:
        raise GraphError(f"{what}: mode {mode!r} needs input of {_MODES[mode]} dimensions "
                         f"(N, C, spatial...), got shape {format_shape(x.shape)}")
    linear = mode in ("linear", "bilinear")
    if align_corners is not None and not linear:
        raise GraphError(f"{what}: align_corners applies to the linear modes only, not {mode!r}")
    axes = tuple(range(2, x.ndim))
    _static(x, axes, what)
    sizes = [x.shape[a] for a in axes]
    outs, factors = _output_sizes(what, sizes, size, scale_factor, recompute_scale_factor)
    ct = np.float64 if x.dtype == np.float64 else np.float32
    for a, n, out, factor in reversed(list(zip(axes, sizes, outs, factors))):
        if mode == "area":
            x = x if out == n else _bin_mean(x, a, out)
            continue
        src = _torch_source(n, out, factor, mode, bool(align_corners), ct)
        x = resample_axis(x, a, out, src, linear)
    return x


def _output_sizes(what, sizes, size, scale_factor, recompute):
    """PyTorch's output sizes, and the scale factors its coordinates use (None: in/out)."""
    if (size is None) == (scale_factor is None):
        raise GraphError(f"{what}: give exactly one of size and scale_factor")
    n = len(sizes)
    if size is not None:
        outs = _per_axis(size, n, what, "size", numbers.Integral)
        factors = [None] * n
    else:
        factors = _per_axis(scale_factor, n, what, "scale_factor", numbers.Real)
        outs = [math.floor(float(d) * float(f)) for d, f in zip(sizes, factors)]
        if any(f <= 0 for f in factors):
            raise GraphError(f"{what}: scale_factor must be positive, got {scale_factor!r}")
        factors = [None if recompute else float(f) for f in factors]
    if any(o <= 0 for o in outs):
        raise GraphError(f"{what}: output size {tuple(outs)} from input {tuple(sizes)} must be "
                         f"positive")
    return [int(o) for o in outs], factors


# ---------------------------------------------------------------- adaptive pooling
def _bins(size, out):
    """PyTorch's adaptive bins of `size` entries into `out`: [floor(i·size/out),
    ceil((i+1)·size/out)). Each bin's indices, the short ones padded by repeating their last
    (after it, so that a first arg-max is never a repeat), and each bin's length."""
    start = np.arange(out) * size // out
    stop = -(-(np.arange(out) + 1) * size // out)
    width = int((stop - start).max())
    idx = np.minimum(start[:, None] + np.arange(width), stop[:, None] - 1)
    return idx, stop - start


def _output_size(x, output_size, what):
    x = _floating(x, what)
    if x.ndim not in (3, 4):
        raise GraphError(f"{what} of {describe(x)}: needs (N, C, H, W) or (C, H, W) input, got "
                         f"shape {format_shape(x.shape)}")
    values = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size,) * 2
    if len(values) != 2 or not all(v is None or isinstance(v, numbers.Integral)
                                   and not isinstance(v, bool) and v > 0 for v in values):
        raise GraphError(f"{what} of {describe(x)}: output_size must be a positive int or a pair "
                         f"of them (None keeps the input's size), got {output_size!r}")
    axes = (x.ndim - 2, x.ndim - 1)
    if None in values:  # None keeps that axis as it is: its size must then be known
        _static(x, [a for a, v in zip(axes, values) if v is None], f"{what} of {describe(x)}")
    return x, axes, tuple(x.shape[a] if v is None else int(v) for a, v in zip(axes, values))


def _evenly(x, axes, outs):
    """The pooling window where the output divides the (known) input evenly, else None."""
    sizes = [x.shape[a] for a in axes]
    if None in sizes or any(n % o for n, o in zip(sizes, outs)):
        return None
    return tuple(n // o for n, o in zip(sizes, outs))


def adaptive_avg_pool2d(x, output_size):
    """torch.nn.functional.adaptive_avg_pool2d: the mean over PyTorch's adaptive bins
    [floor(i·H/out), ceil((i+1)·H/out)) of each axis; output_size entries of None keep that
    axis. An output of 1×1 is the mean over H and W; one that divides the input is avg_pool2d."""
    x, axes, outs = _output_size(x, output_size, "adaptive_avg_pool2d")
    if outs == (1, 1):
        return rd.mean(x, axes, keepdims=True)
    window = _evenly(x, axes, outs)
    if window is not None and x.ndim == 4:
        return avg_pool2d(x, window)
    _static(x, axes, f"adaptive_avg_pool2d of {describe(x)}")
    for a, out in reversed(list(zip(axes, outs))):
        x = _bin_mean(x, a, out)
    return x


def adaptive_max_pool2d(x, output_size, return_indices=False):
    """torch.nn.functional.adaptive_max_pool2d over PyTorch's adaptive bins (see
    adaptive_avg_pool2d); the gradient goes to each bin's first maximum in row-major order, and
    `return_indices` also gives its int64 index into the flattened H×W plane, as PyTorch."""
    x, axes, outs = _output_size(x, output_size, "adaptive_max_pool2d")
    window = _evenly(x, axes, outs)
    if not return_indices and window is not None and x.ndim == 4:
        return max_pool2d(x, window)
    what = f"adaptive_max_pool2d of {describe(x)}"
    _static(x, axes if return_indices else [a for a, o in zip(axes, outs) if o > 1], what)
    # one bin of a whole axis (None) needs no gather, nor its size
    rows, cols = (None if o == 1 else _bins(x.shape[a], o)[0] for a, o in zip(axes, outs))
    ah, aw = axes
    row_max, k_col = _first_max(x, aw, cols)  # of each row of each bin
    y, k_row = _first_max(row_max, ah, rows)  # the first row holding the bin's maximum
    if not return_indices:
        return y
    col = _position(k_col, aw, cols)  # of each row's maximum, for every row
    col = _first_axis(col, ah, rows)
    col = mv.squeeze(ix.GATHER_ALONG(col, k_row, axis=ah + 1), ah + 1)
    return y, _position(k_row, ah, rows) * x.shape[aw] + col


def _first_axis(x, axis, idx):
    """x's entries of each bin idx[i] along `axis` on an axis after it (idx None: one bin of
    the whole axis)."""
    return mv.expand_dims(x, axis) if idx is None else _gathered(x, axis, idx)


def _first_max(x, axis, idx):
    """The maximum of each bin idx[i] along `axis` and the int64 place in the bin (kept as an
    axis after it) of its first occurrence, which the gradient goes to, as PyTorch's."""
    taps = _first_axis(x, axis, idx)
    k = rd.argmax(taps, axis + 1, keepdims=True)
    return mv.squeeze(ix.GATHER_ALONG(taps, k, axis=axis + 1), axis + 1), k


def _position(k, axis, idx):
    """The input index of the bin places `k` (a bin's indices count up from its first)."""
    place = mv.squeeze(k, axis + 1)
    if idx is None:
        return place
    return place + leaf.constant(idx[:, 0].reshape((-1,) + (1,) * (k.ndim - axis - 2)))


# ---------------------------------------------------------------- sliding windows
def unfold(x, dimension, size, step):
    """torch.Tensor.unfold: the windows of `size` entries every `step` along `dimension`, which
    becomes the number of windows, the window a new last axis. A gather at constant indices:
    the gradient sums where windows overlap."""
    (x,) = leaf.lift_all([x])
    what = f"unfold of {describe(x)}"
    for name, v, least in (("size", size, 0), ("step", step, 1)):
        if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < least:
            raise GraphError(f"{what}: {name} must be an int of at least {least}, got {v!r}")
    scalar = x.ndim == 0  # PyTorch's: one entry along dimension 0 (or -1), windows not stacked
    x = mv.reshape(x, (1,)) if scalar else x
    axis = mv.normalize_axes(dimension, x.ndim, what)[0]
    _static(x, [axis], what)
    if size > x.shape[axis]:
        raise GraphError(f"{what}: size {size} exceeds the {x.shape[axis]} entries of axis "
                         f"{axis} (shape {format_shape(x.shape)})")
    if scalar:
        return _gathered(x, 0, np.arange(size))
    starts = np.arange(0, x.shape[axis] - size + 1, step)
    windows = _gathered(x, axis, starts[:, None] + np.arange(size))
    order = [a for a in range(windows.ndim) if a != axis + 1] + [axis + 1]
    return mv.transpose(windows, order)
