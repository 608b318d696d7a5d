"""3-D pooling, PyTorch's functional conventions, as two 2-D poolings.

A box window is separable: its maximum is the maximum over its depth of each plane's maximum
over its height and width, and its mean likewise, since the count of cells a window holds (with
or without the padding) is the product of each axis's count, and the height-width window is the
same on every plane. So `max_pool3d` and `avg_pool3d` pool the (N·D, C, H, W) planes with
max_pool2d / avg_pool2d, then the depth, an (N, C, D, H'·W') array pooled with a (kD, 1) window.
Ties go where PyTorch sends them: to the first maximum in (depth, height, width) order. Their
gradients, second derivatives, kernels and ONNX export are the 2-D poolings'. Each is a
composite, drawn as one gate (MaxPool3d, AvgPool3d).
"""

from __future__ import annotations

from graphdl.errors import GraphError
from graphdl.ir import describe, format_shape
from graphdl.ops import conv, leaf
from graphdl.ops import movement as mv
from graphdl.ops.composite import _floating, _named, composite
from graphdl.ops.conv_forms import padding6, triple


@composite("max_pool3d", "MaxPool3d",
           "dL/dx = g routed to each window's first maximum",
           mv.RESHAPE, arity=None)
def max_pool3d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Max pooling as `torch.nn.functional.max_pool3d` on (N, C, D, H, W) input (stride
    defaults to the kernel size); `padding` an int, a triple or six sides (front, back, top,
    bottom, left, right; ONNX's), padded cells never win."""
    x, what = _volume(x, "max_pool3d")
    kernel, stride, padding = _window(what, kernel_size, stride, padding)
    dilation = triple(dilation, what, "dilation", 1)
    planes = conv.max_pool2d(_planes(x), kernel[1:], stride[1:], padding[2:], dilation[1:],
                             ceil_mode)
    y = conv.max_pool2d(_depth_rows(x, planes), (kernel[0], 1), (stride[0], 1),
                        (*padding[:2], 0, 0), (dilation[0], 1), ceil_mode)
    return _named(_volume_of(x, y, planes), "max_pool3d")


@composite("avg_pool3d", "AvgPool3d",
           "dL/dx = g / (the cells counted in its window), spread over each window",
           mv.RESHAPE, arity=None)
def avg_pool3d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Average pooling as `torch.nn.functional.avg_pool3d` on (N, C, D, H, W) input; `padding`
    as max_pool3d's, padded cells count in the divisor if `count_include_pad`."""
    x, what = _volume(_floating(x, "avg_pool3d"), "avg_pool3d")
    kernel, stride, padding = _window(what, kernel_size, stride, padding)
    planes = conv.avg_pool2d(_planes(x), kernel[1:], stride[1:], padding[2:], ceil_mode,
                             count_include_pad)
    y = conv.avg_pool2d(_depth_rows(x, planes), (kernel[0], 1), (stride[0], 1),
                        (*padding[:2], 0, 0), ceil_mode, count_include_pad)
    return _named(_volume_of(x, y, planes), "avg_pool3d")


def _volume(x, name):
    (x,) = leaf.lift_all([x])
    what = f"{name} of {describe(x)}"
    conv._rank(x, 5, what, "(N, C, D, H, W)")
    if None in x.shape[1:]:
        raise GraphError(f"{what}: needs known channels, depth, height and width, got shape "
                         f"{format_shape(x.shape)}")
    return x, what


def _window(what, kernel_size, stride, padding):
    kernel = triple(kernel_size, what, "kernel_size", 1)
    stride = kernel if stride is None else triple(stride, what, "stride", 1)
    return kernel, stride, padding6(padding, what)


def _planes(x):
    """x (N, C, D, H, W) as N·D images (N·D, C, H, W)."""
    _, c, _, h, w = x.shape
    return mv.reshape(mv.transpose(x, (0, 2, 1, 3, 4)), (-1, c, h, w))


def _depth_rows(x, planes):
    """The pooled planes (N·D, C, H', W') as (N, C, D, H'·W'): depth first, to pool along."""
    _, c, depth, _, _ = x.shape
    rows = mv.reshape(planes, (-1, depth, c, planes.shape[2] * planes.shape[3]))
    return mv.transpose(rows, (0, 2, 1, 3))


def _volume_of(x, y, planes):
    """The depth-pooled (N, C, D', H'·W') back as (N, C, D', H', W')."""
    return mv.reshape(y, (-1, x.shape[1], y.shape[2], planes.shape[2], planes.shape[3]))
