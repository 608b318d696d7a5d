"""Programs on both sides of every size threshold in the code (`python -m tests.fuzz --mode sizes`).

`THRESHOLDS` is the one list of the size constants the backends switch behaviour at: each entry
names its file and constant, reads the value from the code (a bare literal in the code is
checked to be still there, by `test_sizes`), and has a probe that adds to a random program a
step whose measured quantity (terms, bytes, rows, lines, blocks) is the threshold plus -1, 0 or
+1 of its unit. Seed s probes threshold s mod len(THRESHOLDS) on side (s // len) mod 3, in
float32 or float64 by (s // len) mod 2, among a few random ops (before it, and half the
time after it, over its result; else its result is a sink whose gradient is a constant): the
first 3 * len(THRESHOLDS) seeds visit every side of every threshold, the first 6 * len each
side in both dtypes. A few entries are no threshold
of the code but the issue's "10^4 to 10^6 elements"; entries marked long run only in `--long`
(a CUDA emulator run of millions of threads takes a minute), and entries without a probe are
listed for the record: arrays of 2**31 cells are beyond any test machine.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from graphdl import runtime
from graphdl.codegen import cuda_backend, numpy_backend, python_module
from graphdl.codegen.cuda_backend import conv as cuda_conv
from graphdl.codegen.cuda_backend import kernels as cuda_kernels
from graphdl.codegen.cuda_backend import structured as cuda_structured
from graphdl.codegen.numpy_backend import conv_kernels, op_code, render
from graphdl.passes import optimize

from . import differential, programs

NUMPY = ("optimized", "unoptimized", "sgd-step")
CUDA = ("optimized", differential.CUDA_CPU, differential.CUDA_STEP)
SIDES = (-1, 0, 1)
DTYPES = ("float32", "float64")  # with SIDES, every pair within 6 * len(THRESHOLDS) seeds
SECOND_BELOW = 20_000  # second derivatives only for programs whose values are all smaller
REDUCTIONS = ("sum", "mean", "max", "min", "logsumexp", "softmax", "log_softmax")
CHAIN_UNARY = ("tanh", "sigmoid", "neg", "abs", "relu", "softplus", "affine")
CHAIN_BINARY = ("add", "sub", "mul", "maximum", "minimum")


@dataclass(frozen=True)
class Threshold:
    name: str  # the quantity bounded
    where: str  # file: constant
    value: int  # read from the code
    probe: Callable | None  # (generator, value, side): adds the step measured
    modes: tuple = NUMPY  # the differential modes its programs run in
    literal: tuple | None = None  # (function or module, text): a bare literal in the code
    long: bool = False  # only in --long runs


# ---------------------------------------------------------------- shapes of a given size
def _divisors(n):
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def _shape_of(rng, count, ndim=None):
    """A random shape of 1 to 3 axes (or `ndim`) holding exactly `count` elements."""
    ndim = ndim or int(rng.integers(1, 4))
    dims, rest = [], count
    for _ in range(ndim - 1):
        d = int(rng.choice(_divisors(rest)))
        dims.append(d)
        rest //= d
    dims.append(rest)
    rng.shuffle(dims)
    return tuple(dims)


def _elements(g, count):
    """A fresh input of `count` elements and an elementwise temporary of it read twice."""
    x = g.fresh(_shape_of(g.rng, count))
    return g.add("mul", (g.add("tanh", (x,)), x))


# ---------------------------------------------------------------- probes
def _contracted(g, value, side):
    """Sums of a product over value + side terms: a dot along the last axis, and a loss over
    (N, C) logits (its gradient's sums), whose weighted sum is a third (the final step's)."""
    terms = value + side
    a = g.fresh((int(g.rng.integers(1, 4)), terms))
    g.add("sum", (g.add("mul", (a, g.fresh((terms,)))),), {"axis": -1, "keepdims": False})
    c = int(g.rng.choice([d for d in _divisors(terms) if 2 <= d <= 128] or [terms]))
    n = terms // c
    logits = g.fresh((n, c))
    loss = str(g.rng.choice(["softmax_cross_entropy", "hinge_loss"]))
    g.add(loss, (logits,), {"labels": np.asarray(g.rng.integers(0, c, n), np.int64)})


def _count(g, value, side):
    """Elementwise temporaries of value + side elements."""
    _elements(g, value + side)


def _freed(g, value, side):
    """Temporaries of value + side items' bytes."""
    _elements(g, value // g.dtype.itemsize + side)


def _large(g, value, side):
    """10**4 to 10**6 elements, log-uniform (value and side unused)."""
    _elements(g, int(10 ** g.rng.uniform(4, 6)))


def _banded(g, value, side):
    """A convolution whose im2col columns fill one band of `value` bytes to within an output
    row: per - 1, per or per + 1 output rows where a band holds per rows."""
    c, kh, kw, n = (int(d) for d in g.rng.integers(1, 4, 4))
    ow = int(g.rng.integers(4, 33))
    per = value // (c * kh * kw * ow * n * g.dtype.itemsize)  # at least 50 rows
    _conv(g, n=n, c=c, o=int(g.rng.integers(1, 4)), kh=kh, kw=kw, oh=per + side, ow=ow)


def _conv(g, n, c, o, kh, kw, oh, ow, groups=1):
    """conv2d of fresh x (n, c, ...) and w (o, c / groups, kh, kw) giving (n, o, oh, ow),
    stride 1, half the time padded by one where the input stays at least a pixel wide."""
    pad = int(g.rng.integers(2)) if min(oh + kh, ow + kw) >= 4 else 0
    x = g.fresh((n, c, oh + kh - 1 - 2 * pad, ow + kw - 1 - 2 * pad))
    w = g.fresh((o, c // groups, kh, kw))
    return g.add("conv2d", (x, w), {"stride": 1, "padding": pad, "dilation": 1,
                                    "groups": groups})


def _radix(g, value, side):
    """Rows taken from a table of value + side rows (the scatter-add of the gradient sorts
    the indices 16 bits at a time), the largest and the most negative index included."""
    rows = value + side
    table = g.fresh((rows, int(g.rng.integers(1, 3))))
    indices = g.rng.integers(-rows, rows, int(g.rng.integers(2, 65)))
    indices[:2] = rows - 1, -rows
    args, params = g.integers(np.asarray(indices, np.int64), "indices")
    g.add("take", (table, *args), {**params, "axis": 0})


def _chain(g, value, side):
    """value + side elementwise ops in a row (their gradient is a chain as long), kept within
    a few units by tanh."""
    x = g.fresh(g.shape(int(g.rng.integers(0, 3))))
    y = g.fresh(g.shape_of(x))
    for _ in range(value + side):
        op = str(g.rng.choice(CHAIN_UNARY + CHAIN_BINARY))
        if float(g.values[x].detach().abs().max()) > 4:
            op = "tanh"
        params = {"scale": -0.5, "shift": 0.25} if op == "affine" else {}
        x = g.add(op, (x, y) if op in CHAIN_BINARY else (x,), params)


def _folded(g, value, side):
    """exp of a constant of value + side elements times a fresh input: folded into one
    constant up to a limit, computed beyond it."""
    shape = _shape_of(g.rng, value + side)
    constant = g.add("constant", (), {"value": np.asarray(g.rng.uniform(-1, 1, shape),
                                                          g.dtype)})
    g.add("mul", (g.add("exp", (constant,)), g.fresh(shape)))


def _rows(g, value, side):
    """A reduction along rows of value + side elements."""
    rows = g.fresh((int(g.rng.integers(1, 10)), value + side))
    _reduce_last(g, rows)


def _row_count(g, value, side):
    """A reduction of value + side short rows (the rows one block reduces)."""
    rows = g.fresh((value + side, int(g.rng.integers(1, 65))))
    _reduce_last(g, rows)


def _reduce_last(g, x):
    op = str(g.rng.choice(REDUCTIONS))
    params = {"axis": -1} if op in ("softmax", "log_softmax") else {
        "axis": -1, "keepdims": bool(g.rng.integers(2))}
    g.add(op, (x,), params)


def _matmul_dim(axis):
    """A product whose M, N or K (`axis`) is value + side, the others random."""
    def probe(g, value, side):
        dims = [int(d) for d in g.rng.integers(1, 70, 3)]
        dims["MNK".index(axis)] = value + side
        m, n, k = dims
        g.add("matmul", (g.fresh((m, k)), g.fresh((k, n))))
    return probe


def _matmul_k(g, value, side):
    """K of a product at the tile's K step of its dtype (8 for double, 16 for float)."""
    key = "float" if g.dtype == np.float32 else "double"
    _matmul_dim("K")(g, cuda_structured.TILE[key][2], side)


def _batch(g, value, side):
    """value + side products of 1 x 1 matrices in one batch."""
    count = value + side
    g.add("matmul", (g.fresh((count, 1, 1)), g.fresh((count, 1, 1))))


def _conv_free(g):
    return {"n": int(g.rng.integers(1, 3)), "c": int(g.rng.integers(1, 4)),
            "o": int(g.rng.integers(1, 4)), "kh": int(g.rng.integers(1, 4)),
            "kw": int(g.rng.integers(1, 4)), "oh": int(g.rng.integers(1, 6)),
            "ow": int(g.rng.integers(1, 6))}


def _conv_pixels(g, value, side):
    """A convolution whose GEMM has n * oh * ow = value + side columns."""
    n, oh, ow = _shape_of(g.rng, value + side, 3)
    _conv(g, **{**_conv_free(g), "n": n, "oh": oh, "ow": ow})


def _conv_depth(g, value, side):
    """A convolution whose GEMM sums c * kh * kw = value + side terms."""
    k = value + side
    kh = int(g.rng.choice([d for d in _divisors(k) if d <= 3]))
    kw = int(g.rng.choice([d for d in _divisors(k // kh) if d <= 3]))
    _conv(g, **{**_conv_free(g), "c": k // (kh * kw), "kh": kh, "kw": kw})


def _conv_out(g, value, side):
    """A convolution with value + side output channels (the GEMM's M)."""
    _conv(g, **{**_conv_free(g), "o": value + side})


def _conv_groups(g, value, side):
    """A depthwise convolution with value + side groups and 4 K steps of its weight gradient
    (split while the blocks are fewer than the target)."""
    groups = value + side
    _conv(g, n=4, c=groups, o=groups, kh=1, kw=1, oh=4, ow=4, groups=groups)


def _default(function, name):
    return inspect.signature(function).parameters[name].default


_THREADS, _BLOCKS = cuda_kernels.THREADS, cuda_kernels.MAX_BLOCKS
_TILE = cuda_structured.TILE["double"]
THRESHOLDS = [
    Threshold("terms one einsum adds", "codegen/numpy_backend/op_code.py: CONTRACTED_TERMS",
              op_code.CONTRACTED_TERMS, _contracted),
    Threshold("bytes of a temporary that is deleted after its last read",
              "codegen/numpy_backend/render.py: FREED_BYTES", render.FREED_BYTES, _freed),
    Threshold("bytes of one im2col band", "codegen/numpy_backend/conv_kernels.py: _im2col, "
              "_conv2d_cols default `budget` (bare 1 << 20)",
              _default(conv_kernels._im2col, "budget"), _banded,
              literal=(conv_kernels._conv2d_cols, "budget=1 << 20")),
    Threshold("rows of a scatter-add's table sorted in one 16-bit radix pass",
              "graphdl/runtime.py: _stable_order (bare 2**16, 0xFFFF)", 2 ** 16, _radix,
              literal=(runtime._stable_order, "n > 2**16")),
    Threshold("nodes in one NumPy statement", "codegen/numpy_backend/__init__.py: BACKEND "
              "target max_fused", numpy_backend.BACKEND.target.max_fused, _chain),
    Threshold("elements of a constant result that is folded",
              "graphdl/passes/optimize.py: FOLD_LIMIT", optimize.FOLD_LIMIT, _folded),
    Threshold("elements of a constant spelled as a literal",
              "codegen/python_module.py: Constants.text (bare 16)", 16, _folded,
              literal=(python_module.Constants.text, "array.size <= 16")),
    Threshold("10^4 to 10^6 elements", "(the issue's large programs)", 0, _large),
    Threshold("lines in one CUDA kernel body", "codegen/cuda_backend/__init__.py: BACKEND "
              "target max_fused", cuda_backend.BACKEND.target.max_fused, _chain, CUDA),
    Threshold("elements per block of a grid-stride kernel", "codegen/cuda_backend/kernels.py: "
              "THREADS", _THREADS, _count, CUDA),
    Threshold("elements beyond which grid-stride threads loop",
              "codegen/cuda_backend/kernels.py: THREADS * MAX_BLOCKS", _THREADS * _BLOCKS,
              _count, CUDA, long=True),
    Threshold("length of a row one warp reduces", "codegen/cuda_backend/structured.py: "
              "WARP_ROWS", cuda_structured.WARP_ROWS, _rows, CUDA),
    Threshold("threads of a warp, reducing a row", "codegen/cuda_backend/structured.py: "
              "_reduce (bare 32)", 32, _rows, CUDA,
              literal=(cuda_structured, "group = 32 if")),
    Threshold("rows one reduction block reduces (warp rows)", "codegen/cuda_backend/"
              "structured.py: REDUCE_BLOCK // 32", cuda_structured.REDUCE_BLOCK // 32,
              _row_count, CUDA),
    Threshold("length of a row one block reduces", "codegen/cuda_backend/structured.py: "
              "REDUCE_BLOCK", cuda_structured.REDUCE_BLOCK, _rows, CUDA),
    Threshold("rows of a matmul tile (M)", "codegen/cuda_backend/structured.py: TILE",
              _TILE[0], _matmul_dim("M"), CUDA),
    Threshold("columns of a matmul tile (N)", "codegen/cuda_backend/structured.py: TILE",
              _TILE[1], _matmul_dim("N"), CUDA),
    Threshold("K step of a matmul tile (by dtype)", "codegen/cuda_backend/structured.py: TILE",
              _TILE[2], _matmul_k, CUDA),
    Threshold("matrices in one matmul grid", "codegen/cuda_backend/structured.py: matmul "
              "(bare 65535)", 65535, _batch, CUDA, literal=(cuda_structured, "65535)"),
              long=True),
    Threshold("columns of a convolution GEMM block (n*oh*ow)", "codegen/cuda_backend/conv.py: "
              "BN", cuda_conv.BN, _conv_pixels, CUDA),
    Threshold("K step of a convolution GEMM (c*kh*kw)", "codegen/cuda_backend/conv.py: BK",
              cuda_conv.BK, _conv_depth, CUDA),
    *[Threshold(f"output channels of a convolution GEMM block (bm {bm})",
                "codegen/cuda_backend/conv.py: _gemm (bare 16, 32, 64)", bm, _conv_out, CUDA,
                literal=(cuda_conv._gemm, "bm = 16 if m <= 16 else 32 if m <= 32 else 64"))
      for bm in (16, 32, 64)],
    Threshold("blocks below which a weight gradient splits K",
              "codegen/cuda_backend/conv.py: BUSY_BLOCKS", cuda_conv.BUSY_BLOCKS, _conv_groups,
              CUDA),
    Threshold("cells a CUDA kernel indexes with int", "codegen/cuda_backend/conv.py: "
              "INT_LIMIT, structured.py: _index_type", cuda_conv.INT_LIMIT, None, CUDA),
]


def generate(seed, long=False):
    """(program, threshold) for `seed`, or None where its threshold runs only in long runs or
    has no probe, or its probe does not apply to the dtype drawn."""
    threshold = THRESHOLDS[seed % len(THRESHOLDS)]
    if threshold.probe is None or (threshold.long and not long):
        return None
    turn = seed // len(THRESHOLDS)
    side, dtype = SIDES[turn % len(SIDES)], DTYPES[turn % len(DTYPES)]
    rng = np.random.default_rng(seed)
    g = programs.Generator(seed, dtype)
    g.grow(int(rng.integers(0, 3)))
    try:
        threshold.probe(g, threshold.value, side)
    except programs.NoSlot:
        return None
    if rng.random() < 0.5:  # else the probe's step is a sink: its gradient a constant
        g.grow(len(g.steps) + int(rng.integers(1, 4)))
    g.finish()
    return programs.Program(seed, g.steps), threshold


def second(program):
    return max(math.prod(s.params["value"].shape) for s in program.steps
               if s.op in programs.LEAVES) < SECOND_BELOW
