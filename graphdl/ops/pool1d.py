"""1-D pooling, PyTorch's functional conventions, as 2-D pooling over a height of 1.

(N, C, L) input gets a unit axis 2 (a view), the 2-D pooling runs with a (1, k) window, and the
axis goes again: the same windows, ties, ceil mode and divisors as PyTorch's 1-D pooling. The
gradients, second derivatives, kernels and ONNX export are the 2-D poolings'; `max_pool1d` and
`avg_pool1d` are composites, drawn as one gate (MaxPool1d, AvgPool1d). The adaptive ones pool
adaptive_*_pool2d's bins of a height of 1. The window is checked here, in the user's axes.
"""

from __future__ import annotations

from graphdl.errors import GraphError
from graphdl.ir import describe, format_shape
from graphdl.ops import conv, leaf
from graphdl.ops import movement as mv
from graphdl.ops.composite import _floating, _named, composite
from graphdl.ops.conv_forms import sides, single
from graphdl.ops.resample import adaptive_avg_pool2d, adaptive_max_pool2d


@composite("max_pool1d", "MaxPool1d", "dL/dx = g routed to each window's first maximum",
           mv.SQUEEZE, arity=None)
def max_pool1d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Max pooling as `torch.nn.functional.max_pool1d` on (N, C, L) input (stride defaults to
    the kernel size); `padding` an int or two sides (start, end; ONNX's), padded cells never
    win."""
    (x,) = leaf.lift_all([x])
    what = f"max_pool1d of {describe(x)}"
    kernel, stride, padding = _window(x, what, kernel_size, stride, padding)
    dilation = single(dilation, what, "dilation", 1)
    _fits(x, what, kernel, padding, dilation)
    y = conv.max_pool2d(mv.expand_dims(x, 2), (1, kernel), (1, stride), (0, 0) + padding,
                        (1, dilation), ceil_mode)
    return _named(mv.squeeze(y, 2), "max_pool1d")


@composite("avg_pool1d", "AvgPool1d",
           "dL/dx = g / (the cells counted in its window), spread over each window",
           mv.SQUEEZE, arity=None)
def avg_pool1d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Average pooling as `torch.nn.functional.avg_pool1d` on (N, C, L) input; `padding` as
    max_pool1d's, padded cells count in the divisor if `count_include_pad`."""
    x = _floating(x, "avg_pool1d")
    what = f"avg_pool1d of {describe(x)}"
    kernel, stride, padding = _window(x, what, kernel_size, stride, padding)
    _fits(x, what, kernel, padding, 1)
    y = conv.avg_pool2d(mv.expand_dims(x, 2), (1, kernel), (1, stride), (0, 0) + padding,
                        ceil_mode, count_include_pad)
    return _named(mv.squeeze(y, 2), "avg_pool1d")


def adaptive_avg_pool1d(x, output_size):
    """torch.nn.functional.adaptive_avg_pool1d on (N, C, L) or (C, L) input: the mean over
    PyTorch's adaptive bins [floor(i·L/out), ceil((i+1)·L/out))."""
    x = _sequence(x, "adaptive_avg_pool1d")
    out = single(output_size, f"adaptive_avg_pool1d of {describe(x)}", "output_size", 1)
    return mv.squeeze(adaptive_avg_pool2d(mv.expand_dims(x, -2), (1, out)), -2)


def adaptive_max_pool1d(x, output_size):
    """torch.nn.functional.adaptive_max_pool1d on (N, C, L) or (C, L) input: the maximum over
    the adaptive bins; the gradient goes to each bin's first maximum."""
    x = _sequence(x, "adaptive_max_pool1d")
    out = single(output_size, f"adaptive_max_pool1d of {describe(x)}", "output_size", 1)
    return mv.squeeze(adaptive_max_pool2d(mv.expand_dims(x, -2), (1, out)), -2)


def _window(x, what, kernel_size, stride, padding):
    conv._rank(x, 3, what, "(N, C, L)")
    kernel = single(kernel_size, what, "kernel_size", 1)
    stride = kernel if stride is None else single(stride, what, "stride", 1)
    return kernel, stride, sides(padding, what, "padding")


def _fits(x, what, kernel, padding, dilation):
    """At least one window along L (PyTorch refuses an empty output too)."""
    span, length = dilation * (kernel - 1) + 1, x.shape[2]
    if length is not None and length + sum(padding) < span:
        raise GraphError(f"{what}: the window ({span} wide with its dilation) is longer than "
                         f"{describe(x)}'s axis 2 of size {length} with padding "
                         f"{padding[0]}+{padding[1]}")


def _sequence(x, what):
    x = _floating(x, what)
    if x.ndim not in (2, 3):
        raise GraphError(f"{what} of {describe(x)}: needs (N, C, L) or (C, L) input, got shape "
                         f"{format_shape(x.shape)}")
    return x
