"""Convolution and pooling, PyTorch's functional conventions: NCHW input, OIHW weights.

The primitives and their gradient ops form a set closed under differentiation. With C(x, w) the
convolution, T(g, w) the transposed convolution and W(x, g) the correlation of input and output
gradient, <C(x, w), g> = <x, T(g, w)> = <w, W(x, g)>, so every pullback is one of the three:

    conv2d(x, w)                       pullback [T(g, w), W(x, g)]
    conv2d_input_grad(g, w, like=x)    pullback [C(u, w), W(u, g)]     (u: its cotangent)
    conv2d_weight_grad(x, g, like=w)   pullback [T(g, v), C(x, v)]     (v: its cotangent)
    max_pool2d(x)                      pullback [max_pool2d_grad(g, x)]
    max_pool2d_grad(g, x)              linear in g, routing fixed by x: [max_pool2d_select(u, x)]
    max_pool2d_select(u, x)            u read at each window's arg-max: [max_pool2d_grad(v, x)]
    avg_pool2d(x)                      pullback [avg_pool2d_grad(g, like=x)]
    avg_pool2d_grad(g, like=x)         pullback [avg_pool2d(u)]

Padding is four-sided in the IR, (top, bottom, left, right): `padding="same"` with an even kernel
pads one more on the bottom/right, as PyTorch does. Max-pooling takes any numeric dtype (as
ONNX and NumPy's max; convolution and average pooling are floating-point only) and pads with the
dtype's lowest value (-inf for floats: a padded cell never wins); average pooling pads with zeros
(the divisor follows `count_include_pad`). Both accept padding beyond half the window as ONNX
does; a window lying wholly in the padding gives the lowest value (max, no gradient) or 0
(average without counting padding). In ceil mode, as in PyTorch, the last window must start
inside the input or its left padding and is clipped where it reaches past the padded input,
even where the kernel is larger than the padded input; an axis with no window is an error.

The `impl`s are the reference semantics (sliding-window views and einsum, written for clarity);
the NumPy backend lowers the same ops to im2col + one matrix product (`codegen/conv_kernels.py`).
Both take the pieces they agree on by definition (output size, padding, the average's divisors,
the lowest value) from `graphdl.runtime`, written once.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from graphdl import runtime
from graphdl.errors import GraphError
from graphdl.ir import describe, format_shape
from graphdl.opdef import OpDef, register
from graphdl.ops import elementwise as ew
from graphdl.ops import leaf
from graphdl.ops import movement as mv
from graphdl.ops import reduce as rd


# ---------------------------------------------------------------- output sizes
def conv_out(size, k, s, p0, p1, d):
    """PyTorch's convolution output size along one axis (None stays unknown)."""
    return None if size is None else runtime._conv_out(size, k, s, p0, p1, d)


def pool_out(size, k, s, p0, p1, d, ceil_mode):
    """PyTorch's pooling output size; in ceil mode a last window starting in the padding is
    dropped."""
    if size is None:
        return None
    span = size + p0 + p1 - d * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p0:
        out -= 1
    return out


def _float_dtype(inputs, what):
    bad = next((i for i in inputs if i.dtype.kind != "f"), None)
    if bad is not None:
        raise GraphError(f"{what} expects floating-point input, got {describe(bad)} of dtype "
                         f"{bad.dtype}; convert it first with gd.cast(x, 'float32')")
    return ew.promote(inputs, {})


lowest = runtime._lowest  # what max-pooling pads with: -inf, the integer minimum, or False


def _rank(x, ndim, what, layout):
    if x.ndim != ndim:
        raise GraphError(f"{what}: {describe(x)} must be {ndim}-D {layout}, got shape "
                         f"{format_shape(x.shape)}")


def _rank4(x, what, layout):
    _rank(x, 4, what, layout)


def _fits(x, kernel, padding, dilation, what):
    """The (dilated) kernel must fit into the padded input (`padding`: two sides per axis)."""
    for a, (k, d) in enumerate(zip(kernel, dilation)):
        axis, (p0, p1) = 2 + a, padding[2 * a:2 * a + 2]
        size = x.shape[axis]
        if size is not None and size + p0 + p1 < d * (k - 1) + 1:
            raise GraphError(
                f"{what}: the kernel ({k} wide with dilation {d}, spanning {d * (k - 1) + 1}) is "
                f"larger than {describe(x)}'s axis {axis} of size {size} padded by {p0}+{p1}"
            )


# ---------------------------------------------------------------- reference helpers
def _windows(xp, kernel, stride, dilation, out):
    """(N, C, OH, OW, kh, kw) view of the windows of the padded input `xp`."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    v = sliding_window_view(xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    return v[:, :, ::sh, ::sw, ::dh, ::dw][:, :, :out[0], :out[1]]


def _scatter_windows(g, shape, kernel, stride, padding, dilation, extra=(0, 0)):
    """The transpose of taking windows: g (N, C, OH, OW, kh, kw) summed into an input-shaped
    array (the padding cropped off)."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    pt, pb, pl, pr = padding
    n, c, h, w = shape
    oh, ow = g.shape[2:4]
    out = np.zeros((n, c, h + pt + pb + extra[0], w + pl + pr + extra[1]), dtype=g.dtype)
    for i in range(kh):  # a loop over kernel positions, not pixels
        for j in range(kw):
            out[:, :, i * dh:i * dh + (oh - 1) * sh + 1:sh,
                j * dw:j * dw + (ow - 1) * sw + 1:sw] += g[..., i, j]
    return np.ascontiguousarray(out[:, :, pt:pt + h, pl:pl + w])


# ---------------------------------------------------------------- convolution
CONV_ATTRS = ("stride", "padding", "dilation", "groups")


def _conv_geometry(x, w, attrs, what):
    _rank4(x, what, "(N, C, H, W)")
    _rank4(w, what, "(O, C/groups, kH, kW)")
    check_channels(x, w, attrs["groups"], what)
    check_kernel(x, w, attrs["padding"], attrs["dilation"], what)


def check_kernel(x, w, padding, dilation, what):
    """The kernel's size must be known and fit into x padded (two sides per spatial axis)."""
    if None in w.shape[2:]:
        raise GraphError(f"{what}: weight {describe(w)} needs a known kernel size")
    _fits(x, w.shape[2:], padding, dilation, what)


def check_channels(x, w, groups, what):
    """x (N, C, ...) and weights (O, C/groups, ...) of a convolution of any rank."""
    c, (o, cg) = x.shape[1], w.shape[:2]
    if o is not None and o % groups:
        raise GraphError(f"{what}: groups={groups} does not divide the {o} output channels of "
                         f"weight {describe(w)} (shape {format_shape(w.shape)})")
    if c is not None and c % groups:
        raise GraphError(f"{what}: groups={groups} does not divide the {c} channels of "
                         f"{describe(x)} (shape {format_shape(x.shape)})")
    if None not in (c, cg) and c != cg * groups:
        raise GraphError(
            f"{what}: {describe(x)} (shape {format_shape(x.shape)}) has {c} channels but weight "
            f"{describe(w)} (shape {format_shape(w.shape)}) expects {cg} per group x {groups} "
            f"group(s) = {cg * groups}"
        )


def _conv_infer(inputs, attrs):
    x, w = inputs
    dtype = _float_dtype(inputs, "conv2d")
    _conv_geometry(x, w, attrs, "conv2d")
    (sh, sw), (pt, pb, pl, pr), (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    oh = conv_out(x.shape[2], w.shape[2], sh, pt, pb, dh)
    ow = conv_out(x.shape[3], w.shape[3], sw, pl, pr, dw)
    return (x.shape[0], w.shape[0], oh, ow), dtype


def _conv_impl(x, w, stride, padding, dilation, groups):
    n, _, h, wd = x.shape
    o, cg, kh, kw = w.shape
    out = (conv_out(h, kh, stride[0], *padding[:2], dilation[0]),
           conv_out(wd, kw, stride[1], *padding[2:], dilation[1]))
    win = _windows(runtime._pad(x, padding), (kh, kw), stride, dilation, out)
    win = win.reshape(n, groups, cg, *out, kh, kw)
    y = np.einsum("ngchwij,gocij->ngohw", win, w.reshape(groups, o // groups, cg, kh, kw))
    return y.reshape(n, o, *out)


def _input_grad_impl(g, w, like, stride, padding, dilation, groups):
    n, o, oh, ow = g.shape
    _, cg, kh, kw = w.shape
    cols = np.einsum("ngohw,gocij->ngchwij", g.reshape(n, groups, o // groups, oh, ow),
                     w.reshape(groups, o // groups, cg, kh, kw))
    cols = cols.reshape(n, groups * cg, oh, ow, kh, kw)
    return _scatter_windows(cols, like.shape, (kh, kw), stride, padding, dilation)


def _weight_grad_impl(x, g, like, stride, padding, dilation, groups):
    n, o, oh, ow = g.shape
    _, cg, kh, kw = like.shape
    win = _windows(runtime._pad(x, padding), (kh, kw), stride, dilation, (oh, ow))
    win = win.reshape(n, groups, cg, oh, ow, kh, kw)
    dw = np.einsum("ngchwij,ngohw->gocij", win, g.reshape(n, groups, o // groups, oh, ow))
    return dw.reshape(like.shape)


def _like_infer(what, like_pos):
    def infer(inputs, attrs):
        data = [i for k, i in enumerate(inputs) if k != like_pos]
        for i in inputs:
            _rank4(i, what, "(N, C, H, W)")
        return inputs[like_pos].shape, _float_dtype(data, what)
    return infer


def _conv_attrs(n):
    return {k: n.attrs[k] for k in CONV_ATTRS}


def _conv_narration(w):
    if w.k == 0:
        return (f"{w.dx} = {w.dy} convolved back through the kernel {w.args[1]} (the transposed "
                f"convolution) → {w.shape}")
    return (f"{w.dx} = the correlation of {w.args[0]} with {w.dy}: each weight gets Σ over "
            f"positions of its input window × {w.dy} → {w.shape}")


# What the views say of these ops: none is in a scalar graph, and a gradient op is narrated by
# the generic rule (its pullback applied to the upstream gradient).
_RANK4 = "needs 4-D arrays"
_GRADIENT_OP = "a gradient op: its own derivative is second order"

CONV2D = register(OpDef(
    "conv2d", infer=_conv_infer, impl=_conv_impl,
    pullback=lambda n, g: [CONV2D_INPUT_GRAD(g, n.inputs[1], n.inputs[0], **_conv_attrs(n)),
                           CONV2D_WEIGHT_GRAD(n.inputs[0], g, n.inputs[1], **_conv_attrs(n))],
    doc="2-D convolution (cross-correlation, as PyTorch), NCHW x OIHW",
    narration=_conv_narration, closed_form=_RANK4, kinks="linear in each input",
))

# conv2d_input_grad(g, w, like=x): the transposed convolution, conv2d's adjoint in x.
CONV2D_INPUT_GRAD = register(OpDef(
    "conv2d_input_grad", infer=_like_infer("conv2d_input_grad", 2), impl=_input_grad_impl,
    shape_only=(2,),
    pullback=lambda n, u: [CONV2D(u, n.inputs[1], **_conv_attrs(n)),
                           CONV2D_WEIGHT_GRAD(u, n.inputs[0], n.inputs[1], **_conv_attrs(n)),
                           None],
    narration=_GRADIENT_OP, closed_form=_RANK4, kinks="linear in each input",
))

# conv2d_weight_grad(x, g, like=w): the correlation of x with g, conv2d's adjoint in w.
CONV2D_WEIGHT_GRAD = register(OpDef(
    "conv2d_weight_grad", infer=_like_infer("conv2d_weight_grad", 2), impl=_weight_grad_impl,
    shape_only=(2,),
    pullback=lambda n, v: [CONV2D_INPUT_GRAD(n.inputs[1], v, n.inputs[0], **_conv_attrs(n)),
                           CONV2D(n.inputs[0], v, **_conv_attrs(n)),
                           None],
    narration=_GRADIENT_OP, closed_form=_RANK4, kinks="linear in each input",
))


# ---------------------------------------------------------------- pooling
def _pool_geometry(x, attrs, what):
    """The pooled shape. As PyTorch, a window may reach past the padded input in ceil mode
    (it is clipped), but there must be at least one window along each axis."""
    _rank4(x, what, "(N, C, H, W)")
    kernel, stride, padding = attrs["kernel"], attrs["stride"], attrs["padding"]
    dilation, ceil_mode = attrs.get("dilation", (1, 1)), attrs["ceil_mode"]
    out = tuple(pool_out(x.shape[2 + a], kernel[a], stride[a], padding[2 * a],
                         padding[2 * a + 1], dilation[a], ceil_mode) for a in (0, 1))
    for a, o in enumerate(out):
        if o is not None and o < 1:
            k, d, s = kernel[a], dilation[a], stride[a]
            raise GraphError(
                f"{what}: the kernel ({k} wide with dilation {d}, spanning {d * (k - 1) + 1}) is "
                f"larger than {describe(x)} along axis {2 + a} (size {x.shape[2 + a]}, padded "
                f"by {padding[2 * a]}+{padding[2 * a + 1]}): "
                + (f"even in ceil mode at stride {s} " if ceil_mode else "")
                + "no window fits (PyTorch refuses this too)")
    return x.shape[:2] + out


def _pool_infer(what, floating):
    def infer(inputs, attrs):
        dtype = _float_dtype(inputs, what) if floating else inputs[0].dtype
        return _pool_geometry(inputs[0], attrs, what), dtype
    return infer


def _pool_setup(shape, kernel, stride, padding, dilation, ceil_mode):
    out = tuple(pool_out(shape[2 + a], kernel[a], stride[a], padding[2 * a],
                         padding[2 * a + 1], dilation[a], ceil_mode) for a in (0, 1))
    return out, runtime._pool_extra(shape[2:], kernel, stride, padding, dilation, out)


def _max_windows(x, kernel, stride, padding, dilation, ceil_mode):
    """The flattened windows (N, C, OH, OW, kh*kw) of x padded with its dtype's lowest value,
    in scan order."""
    out, extra = _pool_setup(x.shape, kernel, stride, padding, dilation, ceil_mode)
    win = _windows(runtime._pad(x, padding, lowest(x.dtype), extra), kernel, stride, dilation,
                   out)
    return win.reshape(*win.shape[:4], math.prod(win.shape[4:])), out, extra


def _max_pool_impl(x, kernel, stride, padding, dilation, ceil_mode):
    flat, _, _ = _max_windows(x, kernel, stride, padding, dilation, ceil_mode)
    return flat.max(axis=-1)


def _argmax(x, kernel, stride, padding, dilation, ceil_mode):
    """Each window's arg-max among its real (unpadded) cells, the first in scan order as in
    PyTorch, and whether the window has a real cell at all."""
    flat, out, extra = _max_windows(x, kernel, stride, padding, dilation, ceil_mode)
    real = _windows(runtime._pad(np.ones((1, 1) + x.shape[2:], bool), padding, False, extra),
                    kernel, stride, dilation, out)
    real = real.reshape(*real.shape[:4], math.prod(real.shape[4:]))
    best = np.max(np.where(real, flat, lowest(x.dtype)), axis=-1, keepdims=True)
    hits = ((flat == best) | np.isnan(flat)) & real
    return np.argmax(hits, axis=-1), hits.any(axis=-1), extra


def _max_pool_grad_impl(g, x, kernel, stride, padding, dilation, ceil_mode):
    arg, real, extra = _argmax(x, kernel, stride, padding, dilation, ceil_mode)
    k = kernel[0] * kernel[1]
    onehot = (arg[..., None] == np.arange(k)) & real[..., None]
    spread = np.where(onehot, g[..., None], 0).astype(g.dtype)
    spread = spread.reshape(*spread.shape[:4], *kernel)
    return _scatter_windows(spread, x.shape, kernel, stride, padding, dilation, extra)


def _max_pool_select_impl(u, x, kernel, stride, padding, dilation, ceil_mode):
    arg, real, extra = _argmax(x, kernel, stride, padding, dilation, ceil_mode)
    out = arg.shape[2:]
    win = _windows(runtime._pad(u, padding, 0.0, extra), kernel, stride, dilation, out)
    flat = win.reshape(*win.shape[:4], math.prod(win.shape[4:]))
    picked = np.take_along_axis(flat, arg[..., None], -1)[..., 0]
    return np.where(real, picked, 0).astype(u.dtype)


POOL_ATTRS = ("kernel", "stride", "padding", "dilation", "ceil_mode")
AVG_ATTRS = ("kernel", "stride", "padding", "ceil_mode", "count_include_pad")


def _pool_attrs(n, names):
    return {k: n.attrs[k] for k in names}


def _tie_kink(node, arrays, reach):
    # the windows padded with -inf: a padded cell never ties with a real maximum
    windows, _, _ = _max_windows(arrays[0], **_pool_attrs(node, POOL_ATTRS))
    if not rd.tie_within(windows, -1, reach):
        return None
    return ("a max-pool window with tied maxima; PyTorch's convention gives the whole gradient "
            "to the first maximum in scan order")


# The gradient ops of max_pool2d are linear in the gradient they route: the arg-maxes are not
# differentiated, so a tie does not make their checks straddle a kink.
_ROUTES = "linear in the gradient it routes (the arg-maxes are not differentiated)"

MAX_POOL2D = register(OpDef(
    "max_pool2d", infer=_pool_infer("max_pool2d", floating=False), impl=_max_pool_impl,
    shares=("max_pool2d_route", 0),  # window maxima and arg-maxes of x, for its gradients too
    pullback=lambda n, g: [MAX_POOL2D_GRAD(g, n.inputs[0], **_pool_attrs(n, POOL_ATTRS))],
    narration=lambda w: (f"{w.dx} = {w.dy} routed to the maximum of each window (0 elsewhere) "
                         f"→ {w.shape}"),
    closed_form=_RANK4, kinks=_tie_kink,
))


def _grad_like_infer(what):
    """(g, x): g spread over x's shape, in g's dtype; x (read for its shape or its arg-maxes)
    may be of any dtype."""
    def infer(inputs, attrs):
        g, x = inputs
        out = _pool_geometry(x, attrs, what)
        if None not in out + g.shape and g.shape != out:
            raise GraphError(f"{what}: gradient {describe(g)} has shape {format_shape(g.shape)}, "
                             f"the pooled shape is {format_shape(out)}")
        return x.shape, _float_dtype(inputs[:1], what)
    return infer


def _select_infer(inputs, attrs):
    what = "max_pool2d_select"
    return _pool_geometry(inputs[1], attrs, what), _float_dtype(inputs[:1], what)


# max_pool2d_grad(g, x): g routed to each window's arg-max in x (summed where windows overlap).
MAX_POOL2D_GRAD = register(OpDef(
    "max_pool2d_grad", infer=_grad_like_infer("max_pool2d_grad"), impl=_max_pool_grad_impl,
    shares=("max_pool2d_route", 1),
    pullback=lambda n, u: [MAX_POOL2D_SELECT(u, n.inputs[1], **_pool_attrs(n, POOL_ATTRS)),
                           None],  # piecewise constant in x: zero almost everywhere
    narration=_GRADIENT_OP, closed_form=_RANK4, kinks=_ROUTES,
))

# max_pool2d_select(u, x): u read at each window's arg-max in x (max_pool2d(x) is select(x, x)).
MAX_POOL2D_SELECT = register(OpDef(
    "max_pool2d_select", infer=_select_infer, impl=_max_pool_select_impl,
    shares=("max_pool2d_route", 1),
    pullback=lambda n, v: [MAX_POOL2D_GRAD(v, n.inputs[1], **_pool_attrs(n, POOL_ATTRS)), None],
    narration=_GRADIENT_OP, closed_form=_RANK4, kinks=_ROUTES,
))


def _avg_pool_impl(x, kernel, stride, padding, ceil_mode, count_include_pad):
    out, extra = _pool_setup(x.shape, kernel, stride, padding, (1, 1), ceil_mode)
    win = _windows(runtime._pad(x, padding, 0.0, extra), kernel, stride, (1, 1), out)
    div = runtime._avg_divisor(x.shape[2:], kernel, stride, padding, out, count_include_pad)
    return (win.sum(axis=(-2, -1)) / div).astype(x.dtype)


def _avg_pool_grad_impl(g, like, kernel, stride, padding, ceil_mode, count_include_pad):
    out, extra = _pool_setup(like.shape, kernel, stride, padding, (1, 1), ceil_mode)
    div = runtime._avg_divisor(like.shape[2:], kernel, stride, padding, out, count_include_pad)
    share = (g / div).astype(g.dtype)
    spread = np.broadcast_to(share[..., None, None], share.shape + tuple(kernel))
    return _scatter_windows(spread, like.shape, kernel, stride, padding, (1, 1), extra)


AVG_POOL2D = register(OpDef(
    "avg_pool2d", infer=_pool_infer("avg_pool2d", floating=True), impl=_avg_pool_impl,
    pullback=lambda n, g: [AVG_POOL2D_GRAD(g, n.inputs[0], **_pool_attrs(n, AVG_ATTRS))],
    narration=lambda w: (f"{w.dx} = {w.dy} spread evenly over each window (÷ its divisor) "
                         f"→ {w.shape}"),
    closed_form=_RANK4, kinks="linear",
))

# avg_pool2d_grad(g, like=x): each window's g spread evenly over it (avg_pool2d's adjoint).
AVG_POOL2D_GRAD = register(OpDef(
    "avg_pool2d_grad", infer=_grad_like_infer("avg_pool2d_grad"), impl=_avg_pool_grad_impl,
    shape_only=(1,),
    pullback=lambda n, u: [AVG_POOL2D(u, **_pool_attrs(n, AVG_ATTRS)), None],
    narration=_GRADIENT_OP, closed_form=_RANK4, kinks="linear",
))


# ---------------------------------------------------------------- the user API
def _pair(value, what, name, minimum):
    pair = (value, value) if isinstance(value, numbers.Integral) else value
    try:
        pair = tuple(pair)
    except TypeError:
        raise GraphError(f"{what}: {name} must be an int or a pair of ints, got {value!r}")
    if len(pair) != 2 or any(not isinstance(v, numbers.Integral) or isinstance(v, bool)
                             for v in pair):
        raise GraphError(f"{what}: {name} must be an int or a pair of ints, got {value!r}")
    if any(v < minimum for v in pair):
        kind = "positive" if minimum == 1 else "non-negative"
        raise GraphError(f"{what}: {name} must be {kind}, got {value!r}")
    return tuple(int(v) for v in pair)


def _padding4(value, what, minimum=0):
    """An int, a pair (H, W) or four sides (top, bottom, left, right) -> four sides."""
    if not isinstance(value, numbers.Integral) and len(tuple(value)) == 4:
        sides = tuple(value)
        if any(not isinstance(v, numbers.Integral) or v < minimum for v in sides):
            raise GraphError(f"{what}: padding must hold non-negative ints, got {value!r}")
        return tuple(int(v) for v in sides)
    ph, pw = _pair(value, what, "padding", minimum)
    return (ph, ph, pw, pw)


def _check_input(x, what):
    (x,) = leaf.lift_all([x])
    _rank4(x, what, "(N, C, H, W)")
    return x


def conv2d(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution as `torch.nn.functional.conv2d`: x (N, C, H, W), w (O, C/groups, kH, kW),
    optional bias (O,). `padding` is an int, a pair, four sides (top, bottom, left, right),
    "valid" (0) or "same" (stride 1; an even kernel pads one more at the bottom/right)."""
    x, w = leaf.lift_all([x, w])
    what = f"conv2d of {describe(x)}"
    _rank4(x, what, "(N, C, H, W)")
    _rank4(w, what, "(O, C/groups, kH, kW)")
    stride = _pair(stride, what, "stride", 1)
    dilation = _pair(dilation, what, "dilation", 1)
    groups = check_groups(groups, what)
    if isinstance(padding, str):
        padding = named_padding(padding, w.shape[2:], stride, dilation, what)
    else:
        padding = _padding4(padding, what)
    y = CONV2D(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)
    return add_bias(y, bias, w.shape[0], what)


def check_groups(groups, what):
    if not isinstance(groups, numbers.Integral) or isinstance(groups, bool) or groups < 1:
        raise GraphError(f"{what}: groups must be a positive int, got {groups!r}")
    return int(groups)


def named_padding(padding, kernel, stride, dilation, what):
    """'valid' (none) or 'same' (stride 1; an odd total pads one more at the end) as two sides
    per spatial axis."""
    if padding == "valid":
        return (0, 0) * len(kernel)
    if padding != "same":
        raise GraphError(f"{what}: padding must be an int, a tuple, 'same' or 'valid', "
                         f"got {padding!r}")
    if any(s != 1 for s in stride):
        raise GraphError(f"{what}: padding='same' needs stride 1, got {stride}")
    sides = ()
    for k, d in zip(kernel, dilation):
        total = d * (k - 1)
        sides += (total // 2, total - total // 2)
    return sides


def add_bias(y, bias, channels, what):
    """y (N, O, ...) plus an optional bias (O,), one per output channel."""
    if bias is None:
        return y
    (bias,) = leaf.lift_all([bias])
    if bias.shape != (channels,):
        raise GraphError(f"{what}: bias {describe(bias)} has shape {format_shape(bias.shape)}"
                         f", expected ({channels},) (one per output channel)")
    return y + mv.reshape(bias, (-1,) + (1,) * (y.ndim - 2))


def _pool_args(what, kernel_size, stride, padding, dilation):
    kernel = _pair(kernel_size, what, "kernel_size", 1)
    stride = kernel if stride is None else _pair(stride, what, "stride", 1)
    return kernel, stride, _padding4(padding, what), _pair(dilation, what, "dilation", 1)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Max pooling as `torch.nn.functional.max_pool2d` (stride defaults to the kernel size);
    padding may exceed half the window (ONNX), padded cells never win."""
    x = _check_input(x, "max_pool2d")
    kernel, stride, padding, dilation = _pool_args(
        f"max_pool2d of {describe(x)}", kernel_size, stride, padding, dilation)
    return MAX_POOL2D(x, kernel=kernel, stride=stride, padding=padding, dilation=dilation,
                      ceil_mode=bool(ceil_mode))


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Average pooling as `torch.nn.functional.avg_pool2d`; padding may exceed half the window
    (ONNX), padded cells count in the divisor if `count_include_pad`."""
    x = _check_input(x, "avg_pool2d")
    kernel, stride, padding, _ = _pool_args(
        f"avg_pool2d of {describe(x)}", kernel_size, stride, padding, 1)
    return AVG_POOL2D(x, kernel=kernel, stride=stride, padding=padding, ceil_mode=bool(ceil_mode),
                      count_include_pad=bool(count_include_pad))
