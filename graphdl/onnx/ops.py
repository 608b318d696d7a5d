"""One builder per ONNX operator: `OPS[op_type](call)` returns the graphdl value(s) of the node.

A builder reads its inputs through `call` (`importer.Call`): `call.node(i)` as a graph node,
`call.static(i, what)` as an array that must be known at import time (shapes, axes, exponents).
Forms graphdl cannot express are refused with `call.refuse(why)`, naming node and opset.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from onnx import helper

import graphdl as gd
from graphdl.ir import describe
from graphdl.onnx.shapes import reshape_target, shape_of, slice_key
from graphdl.ops import conv, conv_forms
from graphdl.ops import elementwise as ew
from graphdl.ops.resample import resample_axis

OPS = {}


def op(*names):
    def declare(fn):
        for name in names:
            OPS[name] = fn
        return fn
    return declare


def _unary(name, fn):
    OPS[name] = lambda call: fn(call.node(0))


def _binary(name, fn):
    OPS[name] = lambda call: fn(call.node(0), call.node(1))


for _name, _fn in {"Neg": lambda x: -x, "Exp": gd.exp, "Log": gd.log, "Sqrt": gd.sqrt,
                   "Reciprocal": gd.reciprocal, "Relu": gd.relu, "Sigmoid": ew.SIGMOID,
                   "Tanh": ew.TANH, "Softplus": ew.SOFTPLUS, "Identity": lambda x: x,
                   "Abs": gd.abs, "Not": gd.logical_not, "BitwiseNot": gd.bitwise_not}.items():
    _unary(_name, _fn)

# ONNX's operators of PyTorch's names: gd.round is half to even, gd.sign 0 at NaN, as ONNX's
for _name in ("Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh",
              "Atanh", "Erf", "Floor", "Ceil", "Round", "Sign"):
    _unary(_name, getattr(gd, _name.lower()))
_unary("IsNaN", gd.isnan)

for _name, _fn in {"Add": lambda a, b: a + b, "Sub": lambda a, b: a - b,
                   "Mul": lambda a, b: a * b, "MatMul": gd.matmul, "Equal": gd.equal,
                   "Greater": gd.greater, "Less": gd.less, "GreaterOrEqual": gd.greater_equal,
                   "LessOrEqual": gd.less_equal, "And": gd.logical_and, "Or": gd.logical_or,
                   "Xor": gd.logical_xor, "BitwiseAnd": gd.bitwise_and,
                   "BitwiseOr": gd.bitwise_or, "BitwiseXor": gd.bitwise_xor}.items():
    _binary(_name, _fn)


OPS["Einsum"] = lambda call: gd.einsum(call.attr("equation"),
                                      *[call.node(i) for i in range(len(call.inputs))])


def _variadic(fn):
    return lambda call: functools.reduce(fn, [call.node(i) for i in range(len(call.inputs))])


OPS["Max"] = _variadic(gd.maximum)
OPS["Min"] = _variadic(gd.minimum)
OPS["Sum"] = _variadic(lambda a, b: a + b)
OPS["Mean"] = lambda call: OPS["Sum"](call) / len(call.inputs)


@op("Div")
def _div(call):
    a, b = call.inputs[:2]
    if np.result_type(*(v.dtype for v in (a, b))).kind == "f":
        return call.node(0) / call.node(1)
    if isinstance(a, gd.Node) or isinstance(b, gd.Node):
        call.refuse("integer Div truncates toward zero; graphdl's div is true division")
    return np.sign(a) * np.sign(b) * (np.abs(a) // np.abs(b))  # shape arithmetic, folded


@op("Pow")
def _pow(call):
    """One number known at import is pow's constant exponent; any other exponent the tensor
    power, its result in the base's type, as ONNX's (NumPy would promote int ** float)."""
    x, exponent = call.node(0), call.inputs[1]
    if not isinstance(exponent, gd.Node) or exponent in call.known:
        e = np.asarray(call.static(1, "exponent"))
        if e.size == 1:
            return x ** (float(e.item()) if x.dtype.kind == "f" else e.item())
    y = gd.pow(x, call.node(1))
    return y if y.dtype == x.dtype else gd.cast(y, x.dtype)


@op("Mod")
def _mod(call):
    """fmod=1: C's fmod, of the dividend's sign; fmod=0 (integers): Python's, the divisor's."""
    return (gd.fmod if call.attr("fmod", 0) else gd.remainder)(call.node(0), call.node(1))


@op("BitShift")
def _bit_shift(call):
    """Unsigned integers only in ONNX, where graphdl's shifts are NumPy's."""
    left = call.attr("direction", "LEFT") == "LEFT"
    shift = gd.bitwise_left_shift if left else gd.bitwise_right_shift
    return shift(call.node(0), call.node(1))


@op("IsInf")
def _isinf(call):
    x = call.node(0)
    positive, negative = call.attr("detect_positive", 1), call.attr("detect_negative", 1)
    if positive and negative:
        return gd.isinf(x)
    if positive or negative:
        return gd.equal(x, math.inf if positive else -math.inf)
    return gd.less(x, x)  # detects nothing: false everywhere, NaN included


@op("Where")
def _where(call):
    return gd.where(call.node(0), call.node(1), call.node(2))


@op("LeakyRelu")
def _leaky_relu(call):
    x = call.node(0)
    return gd.where(gd.greater(x, 0), x, x * call.attr("alpha", 0.01))


@op("Clip")
def _clip(call):
    """gd.clip on floats (PyTorch's clamp gradient: all of it at the bounds); integers, which
    have no gradient, by maximum and minimum in their own dtype."""
    if call.opset < 11:
        lo, hi = call.attr("min"), call.attr("max")
    else:
        lo = call.static(1, "min").item() if call.has(1) else None
        hi = call.static(2, "max").item() if call.has(2) else None
    x = call.node(0)
    if lo is None and hi is None:
        return x
    if lo is not None and hi is not None and lo > hi:
        lo = hi  # ONNX: min(max(x, lo), hi), so every value becomes hi
    if x.dtype.kind == "f":
        return gd.clip(x, lo, hi)
    bounded = x if lo is None else gd.maximum(x, gd.constant(np.asarray(lo, x.dtype)))
    return bounded if hi is None else gd.minimum(bounded, gd.constant(np.asarray(hi, x.dtype)))


@op("Cast")
def _cast(call):
    return gd.cast(call.node(0), helper.tensor_dtype_to_np_dtype(call.attr("to")))


@op("CastLike")
def _cast_like(call):
    return gd.cast(call.node(0), call.node(1).dtype)


@op("QuantizeLinear")
def _quantize(call):
    """round(x / scale) (half to even) + zero point, saturated to the integer type: the zero
    point's, else `output_dtype`'s, else uint8. Scale and zero point: one number, one per index
    of `axis`, or one per block of `block_size` along it."""
    x = call.node(0)
    given = call.attr("output_dtype", 0)
    dtype = (call.node(2).dtype if call.has(2) else
             helper.tensor_dtype_to_np_dtype(given) if given else np.dtype(np.uint8))
    scale = _per_block(call, x, call.node(1))
    q = gd.round(x / scale)
    if call.has(2):
        q = q + _per_block(call, x, gd.cast(call.node(2), x.dtype))
    if dtype.kind not in "iu":
        call.refuse(f"quantizing to {dtype} (graphdl quantizes to integer types)")
    info = np.iinfo(dtype)
    return gd.cast(gd.clip(q, float(info.min), float(info.max)), dtype)


@op("DequantizeLinear")
def _dequantize(call):
    """(x − zero point) · scale, in the scale's floating type; scale and zero point as
    QuantizeLinear's."""
    scale = call.node(1)
    x = gd.cast(call.node(0), scale.dtype)
    if call.has(2):
        x = x - _per_block(call, x, gd.cast(call.node(2), scale.dtype))
    return x * _per_block(call, x, scale)


def _per_block(call, x, v):
    """A quantization parameter broadcast against x: a scalar as it is; 1-D, one per index of
    `axis` (1 by default); x's rank, one per block of `block_size` indices along `axis`."""
    if v.ndim == 0 or v.shape == (1,):
        return gd.reshape(v, ())
    axis = call.attr("axis", 1) % x.ndim
    block = call.attr("block_size", 0)
    if not block:
        return gd.reshape(v, (-1,) + (1,) * (x.ndim - 1 - axis))
    size = x.shape[axis]
    if size is None:
        call.refuse(f"blocked quantization needs axis {axis} known; got {x.shape}")
    v = gd.repeat_interleave(v, block, axis=axis)
    return v[(slice(None),) * axis + (slice(0, size),)]


@op("Dropout")
def _dropout(call):
    """The identity (inference, or training with ratio 0: nothing dropped), its mask all True."""
    ratio = call.static(1, "ratio").item() if call.has(1) else call.attr("ratio", 0.5)
    if call.has(2) and bool(call.static(2, "training_mode")) and ratio != 0:
        call.refuse(f"training_mode=1 with ratio {ratio} drops at random; graphdl imports "
                    f"Dropout for inference")
    x = call.node(0)
    if len(call.proto.output) < 2 or not call.proto.output[1]:
        return x
    return x, np.ones(_static_shape(call, x), bool)


@op("Constant")
def _constant(call):
    for key, convert in (("value", np.asarray), ("value_float", np.float32),
                         ("value_floats", lambda v: np.asarray(v, np.float32)),
                         ("value_int", np.int64),
                         ("value_ints", lambda v: np.asarray(v, np.int64))):
        if key in call.attrs:
            return np.asarray(convert(call.attrs[key]))
    call.refuse(f"only numeric values are supported, got attributes {sorted(call.attrs)}")


@op("ConstantOfShape")
def _constant_of_shape(call):
    value = call.attr("value", np.zeros(1, np.float32))
    return np.full(tuple(call.static(0, "shape")), value.reshape(()), value.dtype)


def _static_shape(call, x):
    if None in x.shape:
        call.refuse(f"the shape of {call.proto.input[0]!r} is not static "
                    f"({x.shape}); fix it with gd.onnx.load(..., shapes={{name: shape}})")
    return x.shape


@op("Shape")
def _shape(call):
    return shape_of(call.node(0), call.dims(0), call.attr("start", 0), call.attr("end", None))


@op("Size")
def _size(call):
    return np.asarray(math.prod(_static_shape(call, call.node(0))), np.int64)


@op("Range")
def _range(call):
    start, limit, delta = (call.static(i, what)
                           for i, what in enumerate(("start", "limit", "delta")))
    return np.arange(start, limit, delta, dtype=np.result_type(start, limit, delta))


# ---------------------------------------------------------------- linear algebra and convolution
@op("Gemm")
def _gemm(call):
    a, b = call.node(0), call.node(1)
    a = a.T if call.attr("transA", 0) else a
    b = b.T if call.attr("transB", 0) else b
    y = gd.matmul(a, b)
    if call.attr("alpha", 1.0) != 1.0:
        y = y * call.attr("alpha")
    if call.has(2):
        c = call.node(2)
        y = y + (c * call.attr("beta") if call.attr("beta", 1.0) != 1.0 else c)
    return y


def _spatial(call, x, kernel, what, ranks=(3, 4)):
    """(input as NCHW, kernel, stride, dilation, two-sided padding per spatial axis (top,
    bottom, left, right)) of a window op; a 1-D one (an NCL input) runs as a 2-D one over a
    height of 1; `ranks`: the input ranks the op takes (5: NCDHW, as it is)."""
    if kernel is None:
        call.malformed("it has no kernel_shape attribute")
    if x.ndim not in ranks or len(kernel) != x.ndim - 2:
        layouts = {3: "1-D (NCL input)", 4: "2-D (NCHW)", 5: "3-D (NCDHW)"}
        call.refuse(f"only {' and '.join(layouts[r] for r in ranks)} {what} is supported; input "
                    f"has shape {x.shape}")
    lift, dims = (1,) * (4 - x.ndim), x.ndim - 2
    kernel = lift + tuple(kernel)
    stride = lift + _window_attr(call, "strides", dims, 1)
    dilation = lift + _window_attr(call, "dilations", dims, 1)
    x = gd.expand_dims(x, 2) if lift else x
    auto = call.attr("auto_pad", "NOTSET")
    if auto in ("NOTSET", "VALID"):
        pads = _window_attr(call, "pads", 2 * dims, 0) if auto == "NOTSET" else (0,) * 2 * dims
        begins, ends = (0,) * len(lift) + tuple(pads[:dims]), (0,) * len(lift) + tuple(pads[dims:])
        return x, kernel, stride, dilation, tuple(p for pair in zip(begins, ends) for p in pair)
    sides = []
    for size, k, s, d in zip(_static_shape(call, x)[2:], kernel, stride, dilation):
        total = max(0, (-(-size // s) - 1) * s + (k - 1) * d + 1 - size)
        sides += _split_padding(total, auto)
    return x, kernel, stride, dilation, tuple(sides)


def _split_padding(total, auto):
    """[begin, end] of a total padding: the odd one at the end for SAME_UPPER, else at the
    beginning (ONNX's rule for auto_pad, and for ConvTranspose's output_shape)."""
    small, big = total // 2, total - total // 2
    return [small, big] if auto == "SAME_UPPER" else [big, small]


def _window_attr(call, name, length, default):
    """A window op's per-axis attribute (`length` numbers: one per spatial axis, pads two)."""
    values = tuple(call.attr(name, (default,) * length))
    if len(values) != length:
        call.malformed(f"{name} {list(values)} must have {length} numbers for its "
                       f"{call.node(0).ndim - 2}-D input {call.node(0).shape}")
    return values


def _unlift(call, y):
    """A window op's result in its input's rank (a 1-D op's height of 1 dropped)."""
    return gd.squeeze(y, (2,)) if call.node(0).ndim == 3 else y


@op("Conv")
def _conv(call):
    w = call.node(1)
    x, _, stride, dilation, padding = _spatial(call, call.node(0), w.shape[2:], "convolution",
                                               ranks=(3, 4, 5))
    w = gd.expand_dims(w, 2) if w.ndim == 3 else w
    bias = call.node(2) if call.has(2) else None
    convolve = gd.conv3d if x.ndim == 5 else gd.conv2d
    return _unlift(call, convolve(x, w, bias, stride=stride, padding=padding,
                                  dilation=dilation, groups=call.attr("group", 1)))


@op("ConvTranspose")
def _conv_transpose(call):
    """As conv2d_input_grad (`conv_forms.transposed`), 1-D over a height of 1, 3-D as
    `conv_forms.transposed3d`. `output_shape` and auto_pad SAME_* set the pads from the full
    scatter's size (negative where the asked output is larger: zeros are added), as ONNX's
    reference does."""
    x, w = call.node(0), call.node(1)
    if x.ndim not in (3, 4, 5) or w.ndim != x.ndim:
        call.refuse(f"only 1-D, 2-D and 3-D transposed convolution (NCL, NCHW or NCDHW input, "
                    f"weights of its rank) is supported; input has shape {x.shape}, weights "
                    f"{w.shape}")
    dims, lift = x.ndim - 2, (1,) * max(4 - x.ndim, 0)
    if tuple(call.attr("kernel_shape", w.shape[2:])) != w.shape[2:]:
        call.malformed(f"kernel_shape {call.attr('kernel_shape')} is not the weights' "
                       f"{w.shape[2:]}")
    stride = _window_attr(call, "strides", dims, 1)
    dilation = _window_attr(call, "dilations", dims, 1)
    extra = _window_attr(call, "output_padding", dims, 0)
    pads = _transposed_pads(call, x, w.shape[2:], stride, dilation, extra)
    padding = (0, 0) * len(lift) + tuple(p for a in range(dims) for p in pads[a::dims])
    what = f"{call.where}: conv_transpose of {describe(x)}"
    group = call.attr("group", 1)
    if dims == 3:
        y = conv_forms.transposed3d(x, w, stride, padding, extra, group, dilation, what)
    else:
        y = conv_forms.transposed(
            gd.expand_dims(x, 2) if lift else x, gd.expand_dims(w, 2) if lift else w,
            lift + stride, padding, (0,) * len(lift) + extra, group, lift + dilation, what)
    y = conv.add_bias(y, call.node(2) if call.has(2) else None, y.shape[1], what)
    return _unlift(call, y)


def _transposed_pads(call, x, kernel, stride, dilation, extra):
    """ConvTranspose's pads (begins, then ends), given or made from output_shape / auto_pad."""
    dims, auto, target = len(kernel), call.attr("auto_pad", "NOTSET"), call.attr("output_shape")
    if target is None and auto not in ("SAME_UPPER", "SAME_LOWER"):
        return _window_attr(call, "pads", 2 * dims, 0) if auto == "NOTSET" else (0,) * 2 * dims
    sizes = _static_shape(call, x)[2:]
    target = (tuple(target)[-dims:] if target is not None
              else tuple(n * s for n, s in zip(sizes, stride)))
    sides = [_split_padding(s * (n - 1) + e + (k - 1) * d + 1 - t, auto)
             for n, k, s, d, e, t in zip(sizes, kernel, stride, dilation, extra, target)]
    return tuple(b for b, _ in sides) + tuple(e for _, e in sides)


@op("MaxPool")
def _max_pool(call):
    if len(call.proto.output) > 1 and call.proto.output[1]:
        call.refuse("its Indices output is not supported")
    if call.attr("storage_order", 0):
        call.refuse("storage_order=1 (column-major indices) is not supported")
    x, kernel, stride, dilation, padding = _spatial(
        call, call.node(0), call.attr("kernel_shape"), "max pooling", ranks=(3, 4, 5))
    pool = gd.max_pool3d if x.ndim == 5 else gd.max_pool2d
    return _unlift(call, pool(x, kernel, stride, padding, dilation,
                              bool(call.attr("ceil_mode", 0))))


@op("AveragePool")
def _avg_pool(call):
    x, kernel, stride, dilation, padding = _spatial(
        call, call.node(0), call.attr("kernel_shape"), "average pooling", ranks=(3, 4, 5))
    if any(d != 1 for d in dilation):
        call.refuse(f"dilated average pooling ({dilation}) is not supported")
    pool = gd.avg_pool3d if x.ndim == 5 else gd.avg_pool2d
    return _unlift(call, pool(x, kernel, stride, padding, bool(call.attr("ceil_mode", 0)),
                              bool(call.attr("count_include_pad", 0))))


@op("LpPool")
def _lp_pool(call):
    """(Σ over the window |x|^p)^(1/p). The window sums are a depthwise convolution with ones,
    which takes the dilations that average pooling lacks; padding adds zeros (nothing)."""
    if call.attr("ceil_mode", 0):
        call.refuse("ceil_mode=1 is not supported")
    x, kernel, stride, dilation, padding = _spatial(
        call, call.node(0), call.attr("kernel_shape"), "Lp pooling", ranks=(3, 4, 5))
    p, channels = call.attr("p", 2), x.shape[1]
    if channels is None:
        call.refuse(f"the channel axis of {call.proto.input[0]!r} must be known ({x.shape})")
    powered = x * x if p == 2 else gd.abs(x) if p == 1 else gd.abs(x) ** p
    ones = np.ones((channels, 1, *kernel), x.dtype)
    convolve = gd.conv3d if x.ndim == 5 else gd.conv2d
    sums = convolve(powered, ones, stride=stride, padding=padding, dilation=dilation,
                    groups=channels)
    return _unlift(call, gd.sqrt(sums) if p == 2 else sums if p == 1 else sums ** (1 / p))


@op("Col2Im")
def _col2im(call):
    """fold: 2-D images only; ONNX's pads give each side (begins, then ends)."""
    size = tuple(int(n) for n in call.static(1, "image_shape"))
    kernel = tuple(int(n) for n in call.static(2, "block_shape"))
    if len(size) != 2 or len(kernel) != 2:
        call.refuse(f"only 2-D images are supported; image_shape {list(size)}")
    pads = tuple(call.attr("pads", (0, 0, 0, 0)))
    return conv_forms.folded(call.node(0), size, kernel, tuple(call.attr("dilations", (1, 1))),
                             (pads[0], pads[2], pads[1], pads[3]),
                             tuple(call.attr("strides", (1, 1))), call.where)


@op("GlobalAveragePool")
def _global_avg_pool(call):
    x = call.node(0)
    return gd.mean(x, axis=tuple(range(2, x.ndim)), keepdims=True)


@op("GlobalMaxPool")
def _global_max_pool(call):
    x = call.node(0)
    return gd.max(x, axis=tuple(range(2, x.ndim)), keepdims=True)


def _resize_source(transform, size, out, scale):
    """ONNX's source coordinate of each output index along an axis of `size` entries resized
    by `scale` to `out` (float32, as ONNX Runtime computes it); align_corners divides by the
    resized length before it is floored to `out`, as ONNX's reference does."""
    dst, scale = np.arange(out, dtype=np.float32), np.float32(scale)
    length = scale * np.float32(size)
    half = (dst + np.float32(0.5)) / scale - np.float32(0.5)
    if transform == "half_pixel_symmetric":
        return np.float32(size / 2) * (1 - np.float32(out) / length) + half
    return {"asymmetric": lambda: dst / scale, "half_pixel": lambda: half,
            "pytorch_half_pixel": lambda: half if out > 1 else np.zeros(1, np.float32),
            "align_corners": lambda: (dst * (np.float32(size - 1) / (length - 1)) if length > 1
                                      else np.zeros(out, np.float32)),
            }[transform]()


@op("Resize", "Upsample")
def _resize(call):
    """Nearest and (multi)linear resizing along any axes; cubic, antialiasing and
    tf_crop_and_resize are refused. Resize-10 and Upsample: asymmetric coordinates, floor."""
    x, mode = call.node(0), call.attr("mode", "nearest")
    old = call.proto.op_type == "Upsample" or call.opset < 11
    transform = "asymmetric" if old else call.attr("coordinate_transformation_mode", "half_pixel")
    rounding = "floor" if old else call.attr("nearest_mode", "round_prefer_floor")
    if mode not in ("nearest", "linear") or call.attr("antialias", 0) or transform not in (
            "asymmetric", "half_pixel", "pytorch_half_pixel", "align_corners",
            "half_pixel_symmetric"):
        call.refuse(f"mode {mode!r}, coordinate_transformation_mode {transform!r}, antialias "
                    f"{call.attr('antialias', 0)}: only nearest and linear resizing, not "
                    f"antialiased, with the asymmetric, (pytorch_)half_pixel(_symmetric) or "
                    f"align_corners coordinates")
    axes = [int(a) % x.ndim for a in call.attr("axes", range(x.ndim))]
    shape = _static_shape(call, x)
    sizes = [shape[a] for a in axes]
    if old:  # Upsample-7 has an attribute
        scales = call.attr("scales") if len(call.inputs) < 2 else call.static(1, "scales")
    else:
        scales = call.static(2, "scales") if call.has(2) else np.zeros(0)
    if not old and scales.size == 0:  # sizes given: the scales follow
        outs = [int(v) for v in call.static(3, "sizes")]
        scales = [o / n for o, n in zip(outs, sizes)]
        policy = call.attr("keep_aspect_ratio_policy", "stretch")
        if policy != "stretch":
            scale = (min if policy == "not_larger" else max)(scales)
            scales = [scale] * len(sizes)
            outs = [int(np.round(scale * n)) for n in sizes]
    else:
        scales = [float(s) for s in scales]
        outs = [int(np.floor(n * np.float32(s))) for n, s in zip(sizes, scales)]
    for axis, n, out, scale in reversed(list(zip(axes, sizes, outs, scales))):
        src = _resize_source(transform, n, out, scale)
        x = resample_axis(x, axis, out, src, mode == "linear", rounding)
    return x


@op("BatchNormalization")
def _batch_norm(call):
    """Inference: (x - running mean) / sqrt(running var + eps) * scale + bias, per channel.
    training_mode=1: `gd.batch_norm` on the batch's statistics; its optional outputs, the
    running mean and var moved toward the batch's (biased variance, as ONNX's) by
    1 - momentum."""
    outputs = call.proto.output
    training = call.attr("training_mode", 0)
    if (any(outputs[1:]) and not training) or (len(outputs) > 3 and any(outputs[3:])):
        call.refuse("running-stat outputs need training_mode=1 (opset 14 or later); the saved "
                    "mean and variance outputs of earlier opsets are not supported")
    x = call.node(0)
    eps = call.attr("epsilon", 1e-5)
    if training:
        return _batch_norm_training(call, x, eps)
    scale, bias, mean, var = (gd.reshape(call.node(i), (-1,) + (1,) * (x.ndim - 2))
                              for i in range(1, 5))
    return (x - mean) / gd.sqrt(var + eps) * scale + bias


def _batch_norm_training(call, x, eps):
    y = gd.batch_norm(x, None, None, call.node(1), call.node(2), training=True, eps=eps)
    if not any(call.proto.output[1:]):
        return y
    axes = (0, *range(2, x.ndim))
    centered = x - gd.mean(x, axes, keepdims=True)
    momentum = call.attr("momentum", 0.9)
    running = []
    for stat, batch in ((call.node(3), gd.mean(x, axes)),
                        (call.node(4), gd.mean(centered * centered, axes))):
        running.append(stat * momentum + gd.cast(batch, stat.dtype) * (1 - momentum))
    return (y, *running)


@op("LayerNormalization")
def _layer_norm(call):
    """Y by `gd.layer_norm`; the Mean and InvStdDev outputs (kept dimensions) computed in the
    stash type, as ONNX's reference does."""
    x = call.node(0)
    axis = call.attr("axis", -1) % x.ndim
    shape, eps = x.shape[axis:], call.attr("epsilon", 1e-5)
    if None in shape:
        call.refuse(f"the normalized axes of {call.proto.input[0]!r} have unknown sizes {shape}")
    scale = gd.broadcast_to(call.node(1), shape)
    bias = gd.broadcast_to(call.node(2), shape) if call.has(2) else None
    y = gd.layer_norm(x, shape, scale, bias, eps)
    if not any(call.proto.output[1:]):
        return y
    stashed = gd.cast(x, helper.tensor_dtype_to_np_dtype(call.attr("stash_type", 1)))
    axes = tuple(range(axis, x.ndim))
    mean = gd.mean(stashed, axes, keepdims=True)
    centered = stashed - mean
    inv_std = gd.reciprocal(gd.sqrt(gd.mean(centered * centered, axes, keepdims=True) + eps))
    return y, mean, inv_std


def _softmax(fn):
    def build(call):
        x = call.node(0)
        if call.opset >= 13:
            return fn(x, call.attr("axis", -1))
        axis = call.attr("axis", 1) % max(x.ndim, 1)  # before 13: over the flattened trailing axes
        rows = math.prod(_static_shape(call, x)[:axis])
        return gd.reshape(fn(gd.reshape(x, (rows, -1)), 1), x.shape)
    return build


OPS["Softmax"] = _softmax(gd.softmax)
OPS["LogSoftmax"] = _softmax(gd.log_softmax)
OPS["Hardmax"] = _softmax(
    lambda x, axis: gd.cast(gd.equal(gd.argmax(x, axis, keepdims=True),
                                     _positions(x.shape[axis], axis % x.ndim, x.ndim)), x.dtype))


def _positions(size, axis, ndim):
    """0 … size − 1 along `axis` of an `ndim`-axis array (ones elsewhere: it broadcasts)."""
    return np.arange(size).reshape((size,) + (1,) * (ndim - 1 - axis))


# ---------------------------------------------------------------- movement
def _axes(call, position, what="axes"):
    """An axes list, from an attribute before opset 13 (18 for most reductions), an input since."""
    if call.has(position):
        return [int(a) for a in call.static(position, what)]
    axes = call.attr("axes")
    return None if axes is None else list(axes)


@op("Reshape")
def _reshape(call):
    x, shape = call.node(0), list(call.static(1, "shape", unknown=True))
    if not call.attr("allowzero", 0):  # 0 copies the input's dimension
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    target = reshape_target(x, call.dims(0), shape)
    if target is None:
        call.refuse(f"its target shape {shape} has more than one size known only at run time; "
                    f"fix them with gd.onnx.load(..., shapes={{name: shape}})")
    return gd.reshape(x, target)


@op("Flatten")
def _flatten(call):
    x = call.node(0)
    axis = call.attr("axis", 1)
    axis = axis + x.ndim if axis < 0 else axis
    if None not in x.shape[axis:]:  # a batch of unknown size flattens as well
        return gd.reshape(x, (-1, math.prod(x.shape[axis:])))
    return gd.reshape(x, (math.prod(_static_shape(call, x)[:axis]), -1))


@op("Transpose")
def _transpose(call):
    return gd.transpose(call.node(0), call.attr("perm"))


@op("Squeeze")
def _squeeze(call):
    return gd.squeeze(call.node(0), _axes(call, 1))


@op("Unsqueeze")
def _unsqueeze(call):
    return gd.expand_dims(call.node(0), tuple(_axes(call, 1)))


@op("Concat")
def _concat(call):
    return gd.concatenate([call.node(i) for i in range(len(call.inputs))], call.attr("axis"))


@op("Gather")
def _gather(call):
    return gd.take(call.node(0), call.node(1), axis=call.attr("axis", 0))


@op("GatherElements")
def _gather_elements(call):
    return gd.take_along_axis(call.node(0), call.node(1), axis=call.attr("axis", 0))


@op("ScatterElements")
def _scatter_elements(call):
    return _scatter(call, call.node(0), call.attr("axis", 0), call.node(1), call.node(2))


def _scatter(call, x, axis, index, src):
    """ScatterElements' and ScatterND's writes along `axis`, by their `reduction`."""
    from graphdl.ops import indexing

    reduction = call.attr("reduction", "none")
    build = {"none": indexing.scatter, "add": indexing.scatter_add}.get(reduction)
    if build is not None:
        return build(x, axis, index, src, _negative=True)
    if reduction not in ("mul", "max", "min"):
        call.refuse(f"reduction {reduction!r}: graphdl imports none, add, mul, max and min")
    reduce = {"mul": "prod", "max": "amax", "min": "amin"}[reduction]
    return indexing.scatter_reduce(x, axis, index, src, reduce, _negative=True)


def _flat_index(call, indices, dims):
    """Index tuples (the last axis of `indices`, negative ones counted from the end) into
    axes of sizes `dims`, as flat row-major positions."""
    if indices.shape[-1] != len(dims):
        call.malformed(f"index tuples of {indices.shape[-1]} numbers for {len(dims)} axes")
    sizes = np.asarray(dims, indices.dtype)
    indices = gd.where(indices < 0, indices + sizes, indices)
    strides = np.asarray([math.prod(dims[i + 1:]) for i in range(len(dims))], indices.dtype)
    return gd.sum(indices * strides, axis=-1)


@op("GatherND")
def _gather_nd(call):
    """Rows of the axes after the `batch_dims` first, one per index tuple: the indexed axes
    flattened into one (each batch's rows after the previous batch's) and gathered from it."""
    data, indices, b = call.node(0), call.node(1), call.attr("batch_dims", 0)
    shape, k = _static_shape(call, data), indices.shape[-1]
    if None in indices.shape or k is None:
        call.refuse(f"the shape of its indices must be known ({indices.shape})")
    batch, rows, rest = math.prod(shape[:b]), math.prod(shape[b:b + k]), shape[b + k:]
    flat = gd.reshape(_flat_index(call, indices, shape[b:b + k]), (batch, -1))
    flat = flat + (np.arange(batch, dtype=indices.dtype) * rows)[:, None]
    table = gd.reshape(data, (batch * rows, *rest))
    return gd.reshape(gd.take(table, gd.reshape(flat, (-1,)), axis=0),
                      (*indices.shape[:-1], *rest))


@op("ScatterND")
def _scatter_nd(call):
    """updates written at index tuples into the leading axes: those axes flattened into one,
    each tuple a flat row, and ScatterElements' write along it."""
    data, indices, updates = call.node(0), call.node(1), call.node(2)
    shape, k = _static_shape(call, data), indices.shape[-1]
    rest = shape[k:]
    src = gd.reshape(updates, (-1, *rest))
    flat = gd.reshape(_flat_index(call, indices, shape[:k]), (-1,) + (1,) * len(rest))
    y = _scatter(call, gd.reshape(data, (-1, *rest)), 0, gd.broadcast_to(flat, src.shape), src)
    return gd.reshape(y, shape)


def _cumulative(fn, identity):
    """CumSum and CumProd: `fn` along the axis; `exclusive`: each result without its own element,
    i.e. the inclusive results shifted by one, `identity` (an array like the given one) first."""
    def build(call):
        x = call.node(0)
        axis = int(np.asarray(call.static(1, "the axis")).reshape(-1)[0]) % max(x.ndim, 1)
        reverse = bool(call.attr("reverse", 0))
        y = fn(x, axis, reverse=reverse)
        if y.dtype != x.dtype:  # ONNX accumulates in the input's type, NumPy widens small ints
            y = gd.cast(y, x.dtype)
        if not call.attr("exclusive", 0):
            return y

        def along(start, stop):
            return y[(slice(None),) * axis + (slice(start, stop),)]
        first = identity(along(0, 1))
        return gd.concatenate([along(1, None), first] if reverse else [first, along(0, -1)], axis)
    return build


OPS["CumSum"] = _cumulative(gd.cumsum, gd.zeros_like)
OPS["CumProd"] = _cumulative(gd.cumprod, lambda v: gd.zeros_like(v) + 1)


@op("Expand")
def _expand(call):
    x = call.node(0)
    shape = np.broadcast_shapes(_static_shape(call, x), tuple(call.static(1, "shape")))
    return gd.broadcast_to(x, shape)


@op("Slice")
def _slice(call):
    x = call.node(0)
    return x[slice_key(call, x.ndim)]


PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


@op("Pad")
def _pad(call):
    """ONNX's pads (every begin, then every end, over `axes`: all by default) as gd.pad's
    (before, after) pairs, the last axis first. As in ONNX Runtime, the negative pads crop
    first and the others pad what is left; reflect and wrap refuse pads beyond it."""
    x, mode = call.node(0), call.attr("mode", "constant")
    if mode not in PAD_MODES:
        call.refuse(f"mode {mode!r} is not one of {sorted(PAD_MODES)}")
    if call.opset < 11:
        pads, value = call.attr("pads"), call.attr("value", 0.0)
    else:
        pads = [int(p) for p in call.static(1, "pads")]
        value = call.inputs[2] if call.has(2) else 0
        if call.has(2) and (not isinstance(value, gd.Node) or value in call.known):
            value = np.asarray(call.static(2, "constant_value")).item()
    axes = [int(a) % x.ndim for a in call.static(3, "axes")] if call.has(3) else range(x.ndim)
    key, pairs = [slice(None)] * x.ndim, [0] * 2 * x.ndim
    for axis, begin, end in zip(axes, pads, pads[len(axes):]):
        key[axis] = slice(max(-begin, 0), -max(-end, 0) or None)
        k = 2 * (x.ndim - 1 - axis)
        pairs[k:k + 2] = max(begin, 0), max(end, 0)
    if min(pads, default=0) < 0:
        x = x[tuple(key)]
    if isinstance(value, gd.Node):  # known at run time only (a CastLike of -inf): where padded
        inside = gd.pad(gd.constant(np.ones(_static_shape(call, x), bool)), pairs)
        return gd.where(inside, gd.pad(x, pairs), gd.reshape(value, ()))
    return gd.pad(x, pairs, PAD_MODES[mode], value if mode == "constant" else None)


@op("Tile")
def _tile(call):
    return gd.tile(call.node(0), [int(r) for r in call.static(1, "repeats")])


@op("Trilu")
def _trilu(call):
    k = int(np.asarray(call.static(1, "k")).reshape(-1)[0]) if call.has(1) else 0
    return (gd.triu if call.attr("upper", 1) else gd.tril)(call.node(0), k)


@op("Split")
def _split(call):
    """Parts of the given sizes along the axis; without sizes, one per output, equal (since
    opset 18, `num_outputs` of ⌈size/n⌉ with the last one smaller)."""
    x = call.node(0)
    axis = call.attr("axis", 0) % x.ndim
    size = x.shape[axis]
    if size is None:
        call.refuse(f"the split axis {axis} of {call.proto.input[0]!r} must be known ({x.shape})")
    sizes = call.attr("split") if call.opset < 13 else (
        [int(n) for n in call.static(1, "split")] if call.has(1) else None)
    if sizes is None:
        parts = call.attr("num_outputs", len(call.proto.output))
        chunk = -(-size // parts) if call.attr("num_outputs") else size // parts
        sizes = [chunk] * (parts - 1) + [size - chunk * (parts - 1)]
    if sum(sizes) != size or min(sizes) < 0 or len(sizes) != len(call.proto.output):
        call.malformed(f"split sizes {list(sizes)} for {len(call.proto.output)} outputs do not "
                       f"cut axis {axis} of size {size}")
    ends = np.cumsum(sizes).tolist()
    return tuple(x[(slice(None),) * axis + (slice(end - n, end),)] for n, end in zip(sizes, ends))


def _depth_space(call, what, crd, dcr):
    """DepthToSpace / SpaceToDepth of an (N, C, H, W) input of known C, H, W: in CRD mode
    `crd` (pixel_shuffle / pixel_unshuffle); in DCR (the default, the channels block-major) a
    reshape, transpose and reshape, `dcr(b, c, h, w)` giving their (shape, axes, shape)."""
    x, b = call.node(0), call.attr("blocksize")
    if x.ndim != 4 or None in x.shape[1:]:
        call.refuse(f"{what} takes an (N, C, H, W) input of known C, H, W; got {x.shape}")
    if call.attr("mode", "DCR") == "CRD":
        return crd(x, b)
    split, axes, out = dcr(b, *x.shape[1:])
    return gd.reshape(gd.transpose(gd.reshape(x, split), axes), out)


OPS["DepthToSpace"] = lambda call: _depth_space(
    call, "DepthToSpace", gd.pixel_shuffle, lambda b, c, h, w: (
        (-1, b, b, c // (b * b), h, w), (0, 3, 4, 1, 5, 2), (-1, c // (b * b), h * b, w * b)))
OPS["SpaceToDepth"] = lambda call: _depth_space(
    call, "SpaceToDepth", gd.pixel_unshuffle, lambda b, c, h, w: (
        (-1, c, h // b, b, w // b, b), (0, 3, 5, 1, 2, 4), (-1, c * b * b, h // b, w // b)))


@op("EyeLike")
def _eye_like(call):
    rows, cols = _static_shape(call, call.node(0))
    dtype = call.attr("dtype")
    dtype = call.node(0).dtype if dtype is None else helper.tensor_dtype_to_np_dtype(dtype)
    return np.eye(rows, cols, call.attr("k", 0), dtype)


@op("OneHot")
def _one_hot(call):
    """values[1] where the index (negative ones counted from the end) is the position along the
    new axis, values[0] elsewhere: an index outside [-depth, depth) has no hot position."""
    indices, values = call.node(0), call.node(2)
    depth = int(np.asarray(call.static(1, "depth")).reshape(-1)[0])
    axis = call.attr("axis", -1) % (indices.ndim + 1)
    indices = gd.where(indices < 0, indices + depth, indices)
    positions = _positions(depth, axis, indices.ndim + 1).astype(indices.dtype)
    hot = gd.equal(gd.expand_dims(indices, axis), positions)
    return gd.where(hot, values[1], values[0])


@op("CenterCropPad")
def _center_crop_pad(call):
    """Each axis cropped or zero-padded to its size about the center (the odd one of a crop or a
    pad at the end)."""
    x = call.node(0)
    sizes = [int(n) for n in call.static(1, "shape")]
    axes = [a % x.ndim for a in call.attr("axes", range(x.ndim))]
    key, pairs = [slice(None)] * x.ndim, [0] * 2 * x.ndim
    for axis, size in zip(axes, sizes):
        have = _static_shape(call, x)[axis]
        cut, grow = max(have - size, 0), max(size - have, 0)
        key[axis] = slice(cut // 2, have - (cut - cut // 2))
        k = 2 * (x.ndim - 1 - axis)  # gd.pad's pairs: the last axis first
        pairs[k:k + 2] = grow // 2, grow - grow // 2
    return gd.pad(x[tuple(key)], pairs)


@op("ReverseSequence")
def _reverse_sequence(call):
    """Each batch entry's first `sequence_lens` steps reversed, the rest in place."""
    x, lengths = call.node(0), gd.cast(call.node(1), "int64")
    batch, time = call.attr("batch_axis", 1), call.attr("time_axis", 0)
    steps = np.arange(x.shape[time]).reshape((-1,) + (1,) * (x.ndim - 1 - time))
    lengths = gd.reshape(lengths, (-1,) + (1,) * (x.ndim - 1 - batch))
    index = gd.where(gd.greater(lengths, steps), lengths - 1 - steps, steps)
    return gd.take_along_axis(x, index, time)


@op("MaxUnpool")
def _max_unpool(call):
    """x written at MaxPool's flat indices into zeros the size of the pooling's input (from
    kernel, strides and pads), then zero-padded at the end to `output_shape` if given."""
    x, indices = call.node(0), call.node(1)
    shape, dims = _static_shape(call, x), x.ndim - 2
    kernel = call.attr("kernel_shape")
    stride = _window_attr(call, "strides", dims, 1)
    pads = _window_attr(call, "pads", 2 * dims, 0)
    inferred = shape[:2] + tuple((n - 1) * s - pads[i] - pads[dims + i] + k for i, (n, s, k)
                                 in enumerate(zip(shape[2:], stride, kernel)))
    zeros = np.zeros(math.prod(inferred), x.dtype)
    y = gd.reshape(gd.scatter(zeros, 0, gd.reshape(indices, (-1,)), gd.reshape(x, (-1,))),
                   inferred)
    if not call.has(2):
        return y
    out = tuple(int(n) for n in call.static(2, "output_shape"))
    if len(out) != x.ndim or any(o < i for o, i in zip(out, inferred)):
        call.malformed(f"output_shape {list(out)} is smaller than the unpooled {inferred}")
    return gd.pad(y, [n for o, i in zip(out[::-1], inferred[::-1]) for n in (0, o - i)])


def _window(call, terms):
    """A window of `size` (known at import) points, Σ_k terms[k]·cos(2πkn/N), N the size if
    periodic, else the size − 1, in `output_datatype`."""
    size = int(np.asarray(call.static(0, "size")).reshape(()))
    length = size if call.attr("periodic", 1) else size - 1
    n = np.arange(size)
    w = sum(c * np.cos(2 * np.pi * k * n / length) for k, c in enumerate(terms))
    return w.astype(helper.tensor_dtype_to_np_dtype(call.attr("output_datatype", 1)))


OPS["HannWindow"] = lambda call: _window(call, (0.5, -0.5))
OPS["HammingWindow"] = lambda call: _window(call, (25 / 46, -21 / 46))
OPS["BlackmanWindow"] = lambda call: _window(call, (0.42, -0.5, 0.08))


# ---------------------------------------------------------------- reductions
def _reduction(fn, axes_input_since):
    def build(call):
        x = call.node(0)
        axes = _axes(call, 1) if call.opset >= axes_input_since else call.attr("axes")
        if not axes:
            if call.attr("noop_with_empty_axes", 0):
                return x
            axes = None
        return fn(x, axis=None if axes is None else tuple(axes),
                  keepdims=bool(call.attr("keepdims", 1)))
    return build


OPS["ReduceSum"] = _reduction(gd.sum, 13)
OPS["ReduceMean"] = _reduction(gd.mean, 18)
OPS["ReduceMax"] = _reduction(gd.max, 18)
OPS["ReduceMin"] = _reduction(gd.min, 18)
OPS["ReduceProd"] = _reduction(gd.prod, 18)
OPS["ReduceL1"] = _reduction(functools.partial(gd.norm, p=1), 18)
OPS["ReduceL2"] = _reduction(functools.partial(gd.norm, p=2), 18)
OPS["ReduceLogSumExp"] = _reduction(gd.logsumexp, 18)
OPS["ReduceSumSquare"] = _reduction(
    lambda x, axis, keepdims: gd.sum(x * x, axis=axis, keepdims=keepdims), 18)
OPS["ReduceLogSum"] = _reduction(
    lambda x, axis, keepdims: gd.log(gd.sum(x, axis=axis, keepdims=keepdims)), 18)


def _arg_extremum(fn):
    def build(call):
        x = call.node(0)
        axis, keepdims = call.attr("axis", 0), bool(call.attr("keepdims", 1))
        if not call.attr("select_last_index", 0):
            return fn(x, axis, keepdims)
        # the last extremum: the first of x reversed along the axis, counted from the end
        reverse = (slice(None),) * (axis % x.ndim) + (slice(None, None, -1),)
        return _static_shape(call, x)[axis] - 1 - fn(x[reverse], axis, keepdims)
    return build


OPS["ArgMax"] = _arg_extremum(gd.argmax)
OPS["ArgMin"] = _arg_extremum(gd.argmin)


@op("TopK")
def _topk(call):
    k = call.attr("k") if call.opset < 10 else call.static(1, "k").reshape(-1)[0]
    return gd.topk(call.node(0), int(k), call.attr("axis", -1), bool(call.attr("largest", 1)),
                   bool(call.attr("sorted", 1)))


# the activations, normalizations, losses and recurrent operators register themselves; imported
# last, as they read this module's `OPS` and `op`
from graphdl.onnx import ops_nn, ops_rnn  # noqa: F401
