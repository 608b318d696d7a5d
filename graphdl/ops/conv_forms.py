"""1-D, 3-D and transposed convolutions, PyTorch's functional conventions, as forms of conv2d's
ops.

conv1d is conv2d over a height of 1 (the input and the weights get a unit axis 2, a view).
conv3d is a sum of conv2d's, one per tap of the kernel's depth, each over the input planes that
tap reads (see `conv3d`).

conv_transpose2d(x, w) with weights (C_in, C_out/groups, kH, kW) is conv2d's input gradient
used as a forward op: conv2d_input_grad(x, w, like) is the adjoint of y ↦ conv2d(y, w), whose
weights (O, C/groups, kH, kW) are read with O = C_in and C = C_out. Its output size along an axis
of size n is (n - 1)·s + d·(k - 1) + 1 - p0 - p1 + output_padding: the full scatter of the
windows, cropped by the padding, output_padding rows added at the end. No op of its own: the
gradients (conv2d for x, conv2d_weight_grad for w), second derivatives, both backends' kernels
and the ONNX export (ConvTranspose) are conv2d_input_grad's. The `like` input, read only for its
shape, is a broadcast zero (a view) or, where the batch is unknown at declaration, an array
shaped from x's batch, so that `specialize` rebuilds it with the fed batch.

conv2d_input_grad keeps conv2d's invariant, conv2d of its output gives back x's size: along
each axis, its output plus its padding is the full scatter plus fewer than `stride` rows. Output
padding beyond that (allowed where the dilation exceeds the stride) and negative padding (ONNX's
output_shape may ask for it) are zeros around its result (`unslice` into the output's shape).
Each is a composite, drawn as one gate (Conv1d, Conv3d, ConvTranspose2d, ConvTranspose1d).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from graphdl.errors import GraphError
from graphdl.ir import describe, format_shape
from graphdl.ops import conv, leaf
from graphdl.ops import elementwise as ew
from graphdl.ops import movement as mv
from graphdl.ops.composite import _floating, _named, composite

_BIAS_RULE = "dL/db = Σ g over the batch and positions"


# ---------------------------------------------------------------- conv1d
@composite("conv1d", "Conv1d",
           "dL/dx = g convolved back through w (the transposed convolution), dL/dw = the "
           f"correlation of x with g, {_BIAS_RULE}", mv.SQUEEZE, arity=None)
def conv1d(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D convolution as `torch.nn.functional.conv1d`: x (N, C, L), w (O, C/groups, k),
    optional bias (O,). `padding` is an int, two sides (start, end), "valid" or "same"."""
    x, w = leaf.lift_all([x, w])
    what = f"conv1d of {describe(x)}"
    _operands_1d(x, w, what, "(O, C/groups, k)")
    stride, dilation = single(stride, what, "stride", 1), single(dilation, what, "dilation", 1)
    groups = conv.check_groups(groups, what)
    if isinstance(padding, str):
        padding = conv.named_padding(padding, w.shape[2:], (stride,), (dilation,), what)
    else:
        padding = sides(padding, what, "padding")
    conv.check_channels(x, w, groups, what)
    conv.check_kernel(x, w, padding, (dilation,), what)
    y = conv.CONV2D(mv.expand_dims(x, 2), mv.expand_dims(w, 2), stride=(1, stride),
                    padding=(0, 0) + padding, dilation=(1, dilation), groups=groups)
    return _named(mv.squeeze(conv.add_bias(y, bias, w.shape[0], what), 2), "conv1d")


# ---------------------------------------------------------------- conv3d
@composite("conv3d", "Conv3d",
           "dL/dx = g convolved back through w (the transposed convolution), dL/dw = the "
           f"correlation of x with g, {_BIAS_RULE}", mv.TRANSPOSE, arity=None)
def conv3d(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """3-D convolution as `torch.nn.functional.conv3d`: x (N, C, D, H, W), w (O, C/groups, kD,
    kH, kW), optional bias (O,). `padding` is an int, a triple (D, H, W), six sides (front,
    back, top, bottom, left, right), "valid" or "same". x's depth, height and width must be
    known at declaration.

    A sum of kD conv2d's: tap kd of the kernel's depth reads, for each output depth, the input
    plane at kd·dilation + that depth·stride (after padding the depth with zero planes); the
    planes of every output depth go through one conv2d as a batch of N·D_out images."""
    x, w = leaf.lift_all([x, w])
    what = f"conv3d of {describe(x)}"
    conv._float_dtype([x, w], what)
    conv._rank(x, 5, what, "(N, C, D, H, W)")
    conv._rank(w, 5, what, "(O, C/groups, kD, kH, kW)")
    stride = triple(stride, what, "stride", 1)
    dilation = triple(dilation, what, "dilation", 1)
    groups = conv.check_groups(groups, what)
    if isinstance(padding, str):
        padding = conv.named_padding(padding, w.shape[2:], stride, dilation, what)
    else:
        padding = padding6(padding, what)
    conv.check_channels(x, w, groups, what)
    conv.check_kernel(x, w, padding, dilation, what)
    if None in x.shape[1:]:
        raise GraphError(f"{what}: needs known channels, depth, height and width, got shape "
                         f"{format_shape(x.shape)}")
    _, c, depth, height, width = x.shape
    kd, o = w.shape[2], w.shape[0]
    front, back = padding[:2]
    out = conv.conv_out(depth, kd, stride[0], front, back, dilation[0])
    if front or back:  # x written into zero planes (its batch may be unknown until the call)
        whole = (None, None, None)
        x = mv.UNSLICE(x, _shape_carrier(x, (x.shape[0], c, front + depth + back, height, width)),
                       index=(whole, whole, (front, front + depth, None), whole, whole))
    y = None
    for tap in range(kd):
        start = tap * dilation[0]
        planes = mv.getitem(x, (slice(None), slice(None),
                                slice(start, start + stride[0] * (out - 1) + 1, stride[0])))
        images = mv.reshape(mv.transpose(planes, (0, 2, 1, 3, 4)), (-1, c, height, width))
        tap_weights = mv.getitem(w, (slice(None), slice(None), tap))
        part = conv.CONV2D(images, tap_weights, stride=stride[1:], padding=padding[2:],
                           dilation=dilation[1:], groups=groups)
        y = part if y is None else y + part
    y = conv.add_bias(y, bias, o, what)
    y = mv.reshape(y, (-1, out, o, *y.shape[2:]))
    return _named(mv.transpose(y, (0, 2, 1, 3, 4)), "conv3d")


# ---------------------------------------------------------------- transposed convolutions
_TRANSPOSED_RULE = ("dL/dx = g convolved with w (the convolution it is the adjoint of), "
                    f"dL/dw = the correlation of g with x, {_BIAS_RULE}")


@composite("conv_transpose2d", "ConvTranspose2d", _TRANSPOSED_RULE,
           (conv.CONV2D_INPUT_GRAD, ew.ADD, mv.UNSLICE), arity=None)
def conv_transpose2d(x, w, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """Transposed 2-D convolution as `torch.nn.functional.conv_transpose2d`: x (N, C_in, H, W),
    w (C_in, C_out/groups, kH, kW), optional bias (C_out,). `padding` (cropped off the full
    output) is an int, a pair or four sides (top, bottom, left, right); `output_padding` (rows
    and columns added at the bottom and right) an int or a pair, each smaller than the stride
    or the dilation along its axis."""
    x, w = leaf.lift_all([x, w])
    what = f"conv_transpose2d of {describe(x)}"
    conv._rank4(x, what, "(N, C_in, H, W)")
    conv._rank4(w, what, "(C_in, C_out/groups, kH, kW)")
    if isinstance(padding, str):
        raise GraphError(f"{what}: padding must be an int, a pair or four sides, got "
                         f"{padding!r} (PyTorch has no 'same' or 'valid' for it either)")
    stride = conv._pair(stride, what, "stride", 1)
    dilation = conv._pair(dilation, what, "dilation", 1)
    output_padding = conv._pair(output_padding, what, "output_padding", 0)
    _check_output_padding(output_padding, stride, dilation, what)
    groups = conv.check_groups(groups, what)
    check_transposed(x, w, groups, what)
    y = transposed(x, w, stride, conv._padding4(padding, what), output_padding, groups,
                   dilation, what)
    return _named(conv.add_bias(y, bias, y.shape[1], what), "conv_transpose2d")


@composite("conv_transpose1d", "ConvTranspose1d", _TRANSPOSED_RULE, mv.SQUEEZE, arity=None)
def conv_transpose1d(x, w, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """Transposed 1-D convolution as `torch.nn.functional.conv_transpose1d`: x (N, C_in, L),
    w (C_in, C_out/groups, k), optional bias (C_out,); `padding` an int or two sides,
    `output_padding` an int smaller than the stride or the dilation."""
    x, w = leaf.lift_all([x, w])
    what = f"conv_transpose1d of {describe(x)}"
    _operands_1d(x, w, what, "(C_in, C_out/groups, k)")
    if isinstance(padding, str):
        raise GraphError(f"{what}: padding must be an int or two sides, got {padding!r} "
                         f"(PyTorch has no 'same' or 'valid' for it either)")
    stride, dilation = single(stride, what, "stride", 1), single(dilation, what, "dilation", 1)
    output_padding = single(output_padding, what, "output_padding", 0)
    _check_output_padding((output_padding,), (stride,), (dilation,), what)
    groups = conv.check_groups(groups, what)
    check_transposed(x, w, groups, what)
    y = transposed(mv.expand_dims(x, 2), mv.expand_dims(w, 2), (1, stride),
                   (0, 0) + sides(padding, what, "padding"), (0, output_padding), groups,
                   (1, dilation), what, axes=(None, 2))
    return _named(mv.squeeze(conv.add_bias(y, bias, y.shape[1], what), 2), "conv_transpose1d")


@composite("conv_transpose3d", "ConvTranspose3d", _TRANSPOSED_RULE,
           (conv.CONV2D_INPUT_GRAD, ew.ADD, mv.UNSLICE), arity=None)
def conv_transpose3d(x, w, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """Transposed 3-D convolution as `torch.nn.functional.conv_transpose3d`: x (N, C_in, D, H,
    W), w (C_in, C_out/groups, kD, kH, kW), optional bias (C_out,). `padding` (cropped off the
    full output) is an int, a triple (D, H, W) or six sides (front, back, top, bottom, left,
    right); `output_padding` (planes, rows and columns added at the back, bottom and right) an
    int or a triple, each smaller than the stride or the dilation along its axis."""
    x, w = leaf.lift_all([x, w])
    what = f"conv_transpose3d of {describe(x)}"
    conv._rank(x, 5, what, "(N, C_in, D, H, W)")
    conv._rank(w, 5, what, "(C_in, C_out/groups, kD, kH, kW)")
    if isinstance(padding, str):
        raise GraphError(f"{what}: padding must be an int, a triple or six sides, got "
                         f"{padding!r} (PyTorch has no 'same' or 'valid' for it either)")
    stride = triple(stride, what, "stride", 1)
    dilation = triple(dilation, what, "dilation", 1)
    output_padding = triple(output_padding, what, "output_padding", 0)
    _check_output_padding(output_padding, stride, dilation, what)
    groups = conv.check_groups(groups, what)
    y = transposed3d(x, w, stride, padding6(padding, what), output_padding, groups, dilation,
                     what)
    return _named(conv.add_bias(y, bias, y.shape[1], what), "conv_transpose3d")


@composite("fold", "Fold",
           "dL/dx = g's blocks read back (unfold: each block's window of g)",
           (conv.CONV2D_INPUT_GRAD, ew.ADD, mv.UNSLICE, mv.RESHAPE), arity=None)
def fold(x, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """torch.nn.functional.fold (col2im): x (N, C·kH·kW, L) or (C·kH·kW, L) holds the values of
    the L sliding blocks of an (N, C, H, W) output of `output_size`, block (i, j) over rows
    i·stride − padding + a·dilation (a < kH) and likewise columns; overlapping values add."""
    x = _floating(x, "fold")
    what = f"fold of {describe(x)}"
    size = conv._pair(output_size, what, "output_size", 1)
    kernel = conv._pair(kernel_size, what, "kernel_size", 1)
    padding = conv._pair(padding, what, "padding", 0)
    y = folded(x, size, kernel, conv._pair(dilation, what, "dilation", 1),
               (padding[0], padding[0], padding[1], padding[1]),
               conv._pair(stride, what, "stride", 1), what)
    return _named(y, "fold")


def folded(x, size, kernel, dilation, sides, stride, what):
    """fold's sum with `sides` (top, bottom, left, right) of padding, as ONNX's Col2Im has them:
    a transposed convolution of the blocks (as an image of them) with one-hot kernels grouped by
    channel, so its gradient (the blocks read back) and both backends' kernels are
    conv2d_input_grad's."""
    if x.ndim not in (2, 3) or None in x.shape[-2:]:
        raise GraphError(f"{what}: expected (N, C·kH·kW, L) or (C·kH·kW, L) with those two "
                         f"known, got {format_shape(x.shape)}")
    taps = kernel[0] * kernel[1]
    blocks = [(n + sides[2 * a] + sides[2 * a + 1] - dilation[a] * (kernel[a] - 1) - 1)
              // stride[a] + 1 for a, n in enumerate(size)]
    rows, count = x.shape[-2:]
    if rows % taps or min(blocks) < 1 or math.prod(blocks) != count:
        raise GraphError(f"{what}: of shape {format_shape(x.shape)}, expected C·{taps} rows "
                         f"(kernel {kernel}) and {max(blocks[0], 0)}·{max(blocks[1], 0)} blocks "
                         f"(output {size}, dilation {dilation}, padding {sides}, stride "
                         f"{stride})")
    channels = rows // taps
    onehot = np.zeros((rows, 1, *kernel), x.dtype)
    tap = np.arange(rows) % taps
    onehot[np.arange(rows), 0, tap // kernel[1], tap % kernel[1]] = 1
    covered = [(b - 1) * stride[a] + dilation[a] * (kernel[a] - 1) + 1 - sides[2 * a]
               - sides[2 * a + 1] for a, b in enumerate(blocks)]
    y = transposed(mv.reshape(x, (-1, rows, *blocks)), leaf.constant(onehot), stride, sides,
                   tuple(n - c for n, c in zip(size, covered)), channels, dilation, what)
    return y if x.ndim == 3 else mv.reshape(y, y.shape[1:])


def transposed3d(x, w, stride, padding, output_padding, groups, dilation, what):
    """The transposed convolution of x (N, C_in, D, H, W) with w (C_in, C_out/groups, kD, kH,
    kW); `padding`, six sides, may be negative, as `transposed`'s. A sum over the kernel's depth
    taps: tap kd spreads input plane i over output plane i·stride + kd·dilation - front with a
    transposed 2-D convolution (every plane of the batch at once, as N·D images), and the planes
    that land inside the output are written there (strided) into zeros."""
    check_transposed(x, w, groups, what)
    n, c, depth, height, width = x.shape
    kd, s, d = w.shape[2], stride[0], dilation[0]
    front, back = padding[:2]
    out = (depth - 1) * s + d * (kd - 1) + 1 - front - back + output_padding[0]
    if out < 1:
        raise GraphError(
            f"{what}: the output would have {out} planes along axis 2 (input size {depth}, "
            f"kernel {kd}, stride {s}, dilation {d}, padding {front}+{back}, output padding "
            f"{output_padding[0]}); PyTorch refuses this too")
    images = mv.reshape(mv.transpose(x, (0, 2, 1, 3, 4)), (-1, c, height, width))
    whole, y, carrier = (None, None, None), None, None
    for tap in range(kd):
        planes = transposed(images, mv.getitem(w, (slice(None), slice(None), tap)), stride[1:],
                            padding[2:], output_padding[1:], groups, dilation[1:], what,
                            axes=(3, 4))
        if carrier is None:
            carrier = _shape_carrier(x, (n, planes.shape[1], out, *planes.shape[2:]))
        shift = tap * d - front  # where input plane 0 lands
        first = -(shift // s)  # the first and last input planes that land inside the output
        first, last = max(first, 0), min(depth - 1, (out - 1 - shift) // s)
        if first > last:
            continue
        planes = mv.transpose(mv.reshape(planes, (-1, depth, *planes.shape[1:])), (0, 2, 1, 3, 4))
        where = (shift + first * s, shift + last * s + 1, s)
        part = mv.UNSLICE(mv.getitem(planes, (slice(None), slice(None), slice(first, last + 1))),
                          carrier, index=(whole, whole, where, whole, whole))
        y = part if y is None else y + part
    return carrier if y is None else y  # no tap reaches the output: zeros


def transposed(x, w, stride, padding, output_padding, groups, dilation, what, axes=(2, 3)):
    """The transposed convolution of x (N, C_in, H, W) with w (C_in, C_out/groups, kH, kW);
    `padding`, four sides, may be negative (zeros added) and `output_padding` any size (the
    ONNX importer passes what its attributes give). `axes`: the user's axes, for errors."""
    check_transposed(x, w, groups, what)
    like_shape, like_padding, border = [x.shape[0], w.shape[1] * groups], [], []
    for a in (0, 1):
        n, k, s, d = x.shape[2 + a], w.shape[2 + a], stride[a], dilation[a]
        begin, end = padding[2 * a:2 * a + 2]
        extra = output_padding[a] - min(end, 0)  # a negative end pad adds rows like it
        begin, end = max(begin, 0), max(end, 0)
        out = (n - 1) * s + d * (k - 1) + 1 - begin - end + extra
        if out < 1:
            raise GraphError(
                f"{what}: the output would have {out} rows along axis {axes[a]} (input size "
                f"{n}, kernel {k}, stride {s}, dilation {d}, padding {begin}+{end}, output "
                f"padding {extra}); PyTorch refuses this too")
        tail = max(extra - end - (s - 1), 0)  # more than conv2d_input_grad's stride - 1 rows
        like_shape.append(out - tail)
        like_padding += [begin, max(end - extra, 0)]
        border += [max(-padding[2 * a], 0), tail]
    like = _shape_carrier(x, tuple(like_shape))
    y = conv.CONV2D_INPUT_GRAD(x, w, like, stride=tuple(stride), padding=tuple(like_padding),
                               dilation=tuple(dilation), groups=groups)
    if any(border):  # y written into zeros of the output's shape
        out_shape = like_shape[:2] + [like_shape[2 + a] + sum(border[2 * a:2 * a + 2])
                                      for a in (0, 1)]
        index = ((None, None, None),) * 2 + tuple(
            (border[2 * a], border[2 * a] + like_shape[2 + a], None) for a in (0, 1))
        y = mv.UNSLICE(y, _shape_carrier(x, tuple(out_shape)), index=index)
    return y


def check_transposed(x, w, groups, what):
    """x (N, C_in, ...) and weights (C_in, C_out/groups, ...) of a transposed convolution."""
    conv._float_dtype([x, w], what)
    c, c_w = x.shape[1], w.shape[0]
    if c_w is not None and c_w % groups:
        raise GraphError(f"{what}: groups={groups} does not divide the {c_w} input channels of "
                         f"weight {describe(w)} (shape {format_shape(w.shape)}, laid out "
                         f"(C_in, C_out/groups, ...))")
    if None not in (c, c_w) and c != c_w:
        raise GraphError(
            f"{what}: {describe(x)} (shape {format_shape(x.shape)}) has {c} channels but "
            f"weight {describe(w)} (shape {format_shape(w.shape)}, laid out (C_in, C_out/groups,"
            f" ...)) expects {c_w}")
    if None in w.shape[1:]:
        raise GraphError(f"{what}: weight {describe(w)} needs known output channels and kernel "
                         f"size, got shape {format_shape(w.shape)}")
    if None in x.shape[2:]:
        raise GraphError(f"{what}: {describe(x)} needs known spatial sizes (the output's "
                         f"follow from them), got shape {format_shape(x.shape)}")


def _shape_carrier(x, shape):
    """An array of `shape` read only for its shape: a broadcast zero (a view), or, where x's
    batch is unknown, zeros taking their batch from x (rebuilt by `specialize` with the fed
    batch)."""
    zero = leaf.constant(0, x.dtype)
    if shape[0] is not None:
        return mv.broadcast_to(zero, shape)
    batch = leaf.zeros_like(mv.getitem(x, (slice(None),) + (slice(0, 1),) * (x.ndim - 1)))
    return batch + mv.broadcast_to(zero, (1,) + shape[1:])


def _check_output_padding(output_padding, stride, dilation, what):
    for op, s, d in zip(output_padding, stride, dilation):
        if op >= s and op >= d:
            raise GraphError(f"{what}: output_padding {op} must be smaller than the stride {s} "
                             f"or the dilation {d} (PyTorch refuses it too)")


# ---------------------------------------------------------------- 3-D arguments
def triple(value, what, name, minimum):
    """An int or a triple of ints (D, H, W)."""
    values = (value,) * 3 if isinstance(value, numbers.Integral) else value
    if (not isinstance(values, (tuple, list)) or len(values) != 3
            or any(not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < minimum
                   for v in values)):
        kind = "positive" if minimum == 1 else "non-negative"
        raise GraphError(f"{what}: {name} must be a {kind} int or a triple of them, "
                         f"got {value!r}")
    return tuple(int(v) for v in values)


def padding6(value, what):
    """An int, a triple (D, H, W) or six sides (front, back, top, bottom, left, right)."""
    if isinstance(value, (tuple, list)) and len(value) == 6:
        if any(not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 0
               for v in value):
            raise GraphError(f"{what}: padding must hold non-negative ints, got {value!r}")
        return tuple(int(v) for v in value)
    return tuple(p for v in triple(value, what, "padding", 0) for p in (v, v))


# ---------------------------------------------------------------- 1-D arguments
def _operands_1d(x, w, what, layout):
    conv._rank(x, 3, what, "(N, C, L)")
    conv._rank(w, 3, what, layout)


def single(value, what, name, minimum):
    """An int or a 1-tuple of one."""
    if isinstance(value, (tuple, list)) and len(value) == 1:
        (value,) = value
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        kind = "a positive" if minimum == 1 else "a non-negative"
        raise GraphError(f"{what}: {name} must be {kind} int or a 1-tuple of one, got {value!r}")
    return int(value)


def sides(value, what, name):
    """An int or a 1-tuple (both sides) or two sides (start, end), non-negative."""
    sides = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if len(sides) == 1:
        sides *= 2
    if len(sides) != 2 or any(not isinstance(v, numbers.Integral) or isinstance(v, bool)
                              or v < 0 for v in sides):
        raise GraphError(f"{what}: {name} must be a non-negative int or two sides (start, end), "
                         f"got {value!r}")
    return tuple(int(v) for v in sides)
