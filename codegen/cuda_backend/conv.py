"""The CUDA kernels of convolution and pooling (graphdl/ops/conv.py), filled from the `.cu`
templates in `templates/` with each node's sizes, strides and attributes as constants.

Convolution and its two gradients are one implicit GEMM (`conv_gemm.cu`) per group, out[m, p] =
sum_k A[m, k] B[k, p], whose operands are read from the node's inputs through index maps (one
`conv_*.cu` file per op) instead of an im2col buffer:

    op                 M        P (columns)   K (summed)     A    B
    conv2d             O/g      N*OH*OW       C/g*KH*KW      w    x through the windows
    conv2d_input_grad  C/g      N*H*W         O/g*KH*KW      w    g where a tap lands
    conv2d_weight_grad O/g      C/g*KH*KW     N*OH*OW        g    x through the windows

The input gradient's B is masked: a kernel tap that lands on no output pixel is no product,
skipped where the block's A tile holds an inf or NaN (0 * inf would be NaN), so that a
non-finite weight reaches only the pixels its windows cover, as NumPy's col2im and PyTorch give.
A padding cell of x is a real zero (0 * inf = NaN in the forward pass and weight gradient, there
too). The weight gradient's K axis runs over the batch and the output pixels: it is split across
blocks (partial sums added atomically into a zeroed output) when its M x P tiles alone would
leave the GPU idle. Pooling runs one thread per output (per input cell for the average's
gradient, gathered), the max family recomputing each window's arg-max.
"""

from __future__ import annotations

import math

import numpy as np

from graphdl.codegen.naming import comment
from graphdl.errors import GraphError
from graphdl.ir import describe
from graphdl.ops import conv

from .kernels import (
    Launch,
    OpKernels,
    ctype,
    grid_stride,
    integer,
    register,
    special_float,
    template,
)

BK = 16  # the GEMM's K step; with TM = TN = 4 (fixed in the template) each thread holds 16 sums
BN = 64
BUSY_BLOCKS = 256  # enough blocks to fill a GPU (about 2 per SM): the split-K target
INT_LIMIT = 2 ** 31  # the kernels index with 32-bit ints


def _fill(file, **values):
    return template(file).substitute(values)


def _check(node):
    """Refuse what the 32-bit indexed kernels cannot compute."""
    for shape in [node.shape] + [i.shape for i in node.inputs]:
        if math.prod(shape) >= INT_LIMIT:
            raise GraphError(f"{describe(node)} ({node.op.name}): an array of shape {shape} has "
                             f"2**31 cells or more, beyond the CUDA kernels' 32-bit indexing")


# ---------------------------------------------------------------- convolution
def _conv_geometry(x_shape, w_shape, y_shape, attrs):
    (n, c, h, w), (o, _, kh, kw), (oh, ow) = x_shape, w_shape, y_shape[2:]
    (sh, sw), (pt, _, pl, _), (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    return {"n": n, "c": c, "h": h, "w": w, "o": o, "oh": oh, "ow": ow, "kh": kh, "kw": kw,
            "sh": sh, "sw": sw, "pt": pt, "pl": pl, "dh": dh, "dw": dw, "groups": attrs["groups"]}


def _split_k(k, blocks, groups):
    """(splits, K per split): the K axis cut into slices of whole BK steps (at least two each)
    while the blocks stay too few to fill the GPU."""
    steps = max(1, -(-k // BK))  # an empty batch has no K: one slice over nothing
    wanted = min(steps // 2, -(-BUSY_BLOCKS // blocks), 65535 // groups)
    per_split = -(-steps // max(wanted, 1))
    return -(-steps // per_split), per_split * BK


def _gemm(node, name, maps, geometry, m, p, k, b_k_fast=False, split=False, masked=False):
    """The OpKernels of one implicit GEMM whose A is the node's second input, B its first;
    `masked`: B's map says which cells are products at all (the others are skipped)."""
    b, a = node.inputs[:2]
    _check(node)
    groups = geometry["groups"]
    bm = 16 if m <= 16 else 32 if m <= 32 else 64
    threads = (bm // 4) * (BN // 4)
    grid = (-(-p // BN), -(-m // bm))
    splits, k_per_split = (_split_k(k, grid[0] * grid[1] * groups, groups) if split
                           else (1, -(-k // BK) * BK))
    source = _fill(
        "conv_gemm.cu", name=name, what=comment(describe(node)), t=ctype(node.dtype),
        ta=ctype(a.dtype), tb=ctype(b.dtype), m=m, p=p, k=k, split=splits, bm=bm, bn=BN, bk=BK,
        k_per_split=k_per_split, b_k_fast=str(b_k_fast).lower(), masked=str(masked).lower(),
        threads=threads, maps=_fill(maps), **geometry)
    launch = Launch(name, grid + (groups * splits,), (threads,), (("in", 1), ("in", 0), ("out",)))
    return OpKernels(source, (launch,), zero_output=splits > 1)


@register(conv.CONV2D)
def conv2d(node, name):
    x, w = node.inputs
    geo = _conv_geometry(x.shape, w.shape, node.shape, node.attrs)
    groups, (n, o, oh, ow), (_, cg, kh, kw) = geo["groups"], node.shape, w.shape
    return _gemm(node, name, "conv_forward.cu", geo, m=o // groups, p=n * oh * ow,
                 k=cg * kh * kw)


@register(conv.CONV2D_INPUT_GRAD)
def conv2d_input_grad(node, name):
    g, w, x = node.inputs
    geo = _conv_geometry(x.shape, w.shape, g.shape, node.attrs)
    groups, (n, c, h, wd), (o, _, kh, kw) = geo["groups"], x.shape, w.shape
    return _gemm(node, name, "conv_input_grad.cu", geo, m=c // groups, p=n * h * wd,
                 k=o // groups * kh * kw, masked=True)


@register(conv.CONV2D_WEIGHT_GRAD)
def conv2d_weight_grad(node, name):
    x, g, w = node.inputs
    geo = _conv_geometry(x.shape, w.shape, g.shape, node.attrs)
    groups, (n, o, oh, ow), (_, cg, kh, kw) = geo["groups"], g.shape, w.shape
    return _gemm(node, name, "conv_weight_grad.cu", geo, m=o // groups, p=cg * kh * kw,
                 k=n * oh * ow, b_k_fast=True, split=True)


# ---------------------------------------------------------------- pooling
def _lowest(dtype):
    """The C expression of max-pooling's fill (`runtime._lowest`), of type X."""
    if dtype.kind == "f":
        return f"X({special_float(-np.inf, dtype)})"
    return f"X({integer(int(conv.lowest(dtype)))})"


def _pool(node, name, kernel, helpers, x, pooled, operands, per_cell=False, zero_output=False,
          **extra):
    """The OpKernels of one grid-stride pooling kernel: `x` the pooled input node, `pooled` the
    pooled shape; one thread per window, or per cell of x if `per_cell`."""
    _check(node)
    attrs = node.attrs
    (kh, kw), (sh, sw), (pt, pb, pl, pr) = attrs["kernel"], attrs["stride"], attrs["padding"]
    dh, dw = attrs.get("dilation", (1, 1))
    (h, w), (oh, ow) = x.shape[2:], pooled[2:]
    total = math.prod(x.shape if per_cell else pooled)
    xt, vt = ctype(x.dtype), ctype(node.dtype)
    geometry = {"h": h, "w": w, "oh": oh, "ow": ow, "kh": kh, "kw": kw, "sh": sh, "sw": sw,
                "dh": dh, "dw": dw, "pt": pt, "pb": pb, "pl": pl, "pr": pr, **extra}
    source = _fill("pool_common.cu", name=name, what=comment(describe(node)),
                   item="input cell" if per_cell else "window", total=total, xt=xt, vt=vt,
                   helpers=_fill(helpers, **geometry), **geometry)
    source += "\n" + _fill(kernel, name=name, xt=xt, vt=vt, lowest=_lowest(x.dtype))
    launches = grid_stride(name, total, tuple(("in", i) for i in operands) + (("out",),))
    return OpKernels(source, launches, zero_output=zero_output)


def _count_pad(node):
    return str(node.attrs["count_include_pad"]).lower()


@register(conv.MAX_POOL2D)
def max_pool2d(node, name):
    (x,) = node.inputs
    return _pool(node, name, "pool_max.cu", "pool_argmax.cu", x, node.shape, operands=(0,))


@register(conv.MAX_POOL2D_GRAD)
def max_pool2d_grad(node, name):
    g, x = node.inputs
    return _pool(node, name, "pool_max_grad.cu", "pool_argmax.cu", x, g.shape, operands=(0, 1),
                 zero_output=True)


@register(conv.MAX_POOL2D_SELECT)
def max_pool2d_select(node, name):
    _, x = node.inputs
    return _pool(node, name, "pool_max_select.cu", "pool_argmax.cu", x, node.shape,
                 operands=(0, 1))


@register(conv.AVG_POOL2D)
def avg_pool2d(node, name):
    (x,) = node.inputs
    return _pool(node, name, "pool_avg.cu", "pool_avg_divisor.cu", x, node.shape, operands=(0,),
                 count_include_pad=_count_pad(node))


@register(conv.AVG_POOL2D_GRAD)
def avg_pool2d_grad(node, name):
    g, x = node.inputs
    return _pool(node, name, "pool_avg_grad.cu", "pool_avg_divisor.cu", x, g.shape, operands=(0,),
                 per_cell=True, count_include_pad=_count_pad(node))
