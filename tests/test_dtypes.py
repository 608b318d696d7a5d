"""Dtypes as NumPy has them (issue 7, items 4, 9 and 13): mean's count and result dtype, shape
facts that never allocate, unsigned inputs, max-pooling of integers, float-only ops refusing
integers at declaration. Every value is compared in three modes (compiled optimized, compiled
unoptimized, `gd.evaluate`) against NumPy, and against PyTorch where it has the dtype."""

from __future__ import annotations

import itertools
import tracemalloc

import numpy as np
import pytest

import graphdl as gd
from graphdl.errors import GraphError
from graphdl.ops import conv, leaf
from graphdl.passes.optimize import shape_stand_in

INTEGERS = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
UNSIGNED_WIDE = ["uint16", "uint32", "uint64"]


def three_modes(outputs, **feeds):
    """The outputs compiled with and without the optimizer, and interpreted."""
    return [gd.compile(outputs)(feeds), gd.compile(outputs, optimize=False)(feeds),
            gd.evaluate(outputs, feeds)]


def assert_same(result, expected):
    """Equal values (NaNs equal) and the same dtype, as NumPy computes them."""
    result, expected = np.asarray(result), np.asarray(expected)
    assert result.dtype == expected.dtype, (result.dtype, expected.dtype)
    assert result.shape == expected.shape, (result.shape, expected.shape)
    assert np.array_equal(result, expected, equal_nan=True), (result, expected)


def random_values(rng, dtype, shape, low=None, high=None):
    """Values over the dtype's whole range (or [low, high]), bools half true."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    info = np.iinfo(dtype)
    low = info.min if low is None else low
    high = info.max if high is None else high
    return rng.integers(low, high, shape, dtype=dtype, endpoint=True)


# ---------------------------------------------------------------- item 4: mean
def test_mean_uint8_16x16_issue7_item4():
    x = gd.input("x", (16, 16), "uint8")
    xv = np.arange(256, dtype=np.uint8).reshape(16, 16)
    for result in three_modes(gd.mean(x), x=xv):
        assert_same(result, np.mean(xv))  # 127.5 in float64; the count 256 overflowed uint8


@pytest.mark.parametrize("dtype", INTEGERS + ["bool"])
@pytest.mark.parametrize("axis, keepdims", [(None, False), (0, False), (1, True), ((0, 1), True)])
def test_mean_of_integers_and_bools_is_float64_as_numpy(dtype, axis, keepdims, rng):
    # Values whose float64 sums are exact: any summation order gives NumPy's bits.
    high = 2**40 if np.dtype(dtype).itemsize == 8 else None
    low = -high if high and dtype.startswith("int") else None
    xv = random_values(rng, dtype, (37, 300), low, high)
    x = gd.input("x", xv.shape, dtype)
    for result in three_modes(gd.mean(x, axis, keepdims), x=xv):
        assert_same(result, np.mean(xv, axis=axis, keepdims=keepdims))


@pytest.mark.parametrize("dtype", ["int64", "uint64"])
def test_mean_of_64_bit_integers_whose_sums_round(dtype, rng):
    """Over the full range the float64 sum rounds, and NumPy's mean sums in buffered chunks:
    graphdl agrees to float64 rounding, not bit for bit (see the report of issue 7, item 4)."""
    xv = random_values(rng, dtype, (5000,))
    x = gd.input("x", xv.shape, dtype)
    for result in three_modes(gd.mean(x), x=xv):
        assert result.dtype == np.float64
        np.testing.assert_allclose(result, np.mean(xv), rtol=1e-14)


def test_mean_float16_over_65504_elements():
    """float16 holds no count above 65,504 (70,000 became inf: mean 0 or NaN); NumPy sums in
    float32 and rounds the mean back to float16."""
    x = gd.input("x", (70000,), "float16")
    ones = np.ones(70000, np.float16)
    for result in three_modes(gd.mean(x), x=ones):
        assert_same(result, np.float16(1.0))


@pytest.mark.parametrize("shape, axis", [((100000,), None), ((300, 400), 0), ((3, 70000), 1),
                                         ((70000, 3), 0)])
def test_mean_float16_matches_numpy_bit_for_bit(shape, axis, rng):
    xv = (rng.standard_normal(shape) * 100 + 50).astype(np.float16)  # sums far beyond float16
    x = gd.input("x", shape, "float16")
    for result in three_modes(gd.mean(x, axis), x=xv):
        assert_same(result, np.mean(xv, axis=axis))


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_mean_gradient_is_one_over_the_count(dtype):
    """d mean / dx = 1/n in x's dtype; float16 divides in float32 (70,000 is no float16)."""
    x = gd.input("x", (70000,), dtype)
    (dx,) = gd.grad(gd.mean(x), [x])
    expected = np.full(70000, np.float32(1) / np.float32(70000) if dtype == "float16"
                       else np.asarray(1, dtype) / np.asarray(70000, dtype), dtype)
    for result in three_modes(dx, x=np.ones(70000, dtype)):
        assert_same(result, expected)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mean_gradient_matches_finite_differences(dtype, rng):
    x = gd.input("x", (4, 5), dtype)
    y = gd.sum(gd.mean(x * x, axis=1, keepdims=True) * gd.mean(x, axis=0, keepdims=True))
    xv = rng.standard_normal((4, 5)).astype(dtype)
    check = gd.check_grad(y, {"x": xv})
    assert check.ok, check.report()
    (dx,) = gd.grad(y, [x])
    torch = pytest.importorskip("torch")
    tx = torch.tensor(xv.astype(np.float64), requires_grad=True)
    ty = ((tx * tx).mean(1, keepdim=True) * tx.mean(0, keepdim=True)).sum()
    (tdx,) = torch.autograd.grad(ty, [tx])
    for result in three_modes(dx, x=xv):
        np.testing.assert_allclose(result, tdx.numpy(), rtol=1e-5 if dtype == "float32" else 1e-12)


def test_size_refuses_a_narrow_count():
    x = gd.input("x", (300,), "float16")
    with pytest.raises(GraphError, match="float32 or float64"):
        leaf.size(x, (0,), "float16")
    with pytest.raises(GraphError, match="float32 or float64"):
        leaf.size(x, (0,), "int16")


# ---------------------------------------------------------------- item 9: folding never allocates
def test_shape_stand_in_allocates_nothing():
    x = gd.input("x", (200000, 200000), "float32")
    stand_in = shape_stand_in(x)
    assert stand_in.shape == x.shape and stand_in.dtype == x.dtype
    assert stand_in.strides == (0, 0) and not stand_in.flags.writeable


def test_fold_never_allocates_input_shape():
    """Compiling mean (and its gradient) of a (200000, 200000) input raised MemoryError: folding
    allocated the input's 149 GiB to read its size."""
    x = gd.input("x", (200000, 200000), "float32")
    y = gd.mean(x)
    (dx,) = gd.grad(y, [x])
    tracemalloc.start()
    try:
        program = gd.compile([y, dx]).specialize({"x": x.shape})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 << 20, f"compiling allocated {peak / 2**20:.0f} MiB"
    assert "4e+10" in program.source  # the count, folded to a constant


def test_fold_of_shape_only_inputs_keeps_values(rng):
    """Folded nodes that read an input for its shape (size, zeros_like, sum_to/broadcast like)
    give the same values as unfolded ones."""
    x = gd.input("x", (3, 4), "float64")
    b = gd.input("b", (4,), "float64")
    y = gd.sum(gd.mean(x, 0) * b) + gd.sum(gd.zeros_like(x))
    outputs = [y, *gd.grad(y, [x, b])]
    xv, bv = rng.standard_normal((3, 4)), rng.standard_normal(4)
    folded, unfolded, interpreted = three_modes(outputs, x=xv, b=bv)
    for f, u, i in zip(folded, unfolded, interpreted):  # sums may add in another order
        for got in (f, u):
            assert np.shape(got) == np.shape(i) and np.result_type(got) == np.result_type(i)
            np.testing.assert_allclose(got, i, rtol=1e-14, atol=1e-15)


# ---------------------------------------------------------------- item 13: NumPy's numeric dtypes
@pytest.mark.parametrize("dtype", UNSIGNED_WIDE)
def test_uint16_32_64_inputs(dtype, rng):
    """uint16/32/64 were refused (`unsupported dtype 'uint16'`): values and dtypes as NumPy's,
    weak Python scalars included (`a * 2` stays unsigned, `a + 1.5` is float64)."""
    a, b = gd.input("a", (3, 4), dtype), gd.input("b", (4,), dtype)
    i = gd.input("i", (4,), "int64")
    av, bv = random_values(rng, dtype, (3, 4), 0, 1000), random_values(rng, dtype, (4,), 1, 1000)
    iv = np.arange(4)
    cases = [
        (a + b, av + bv), (a * 2, av * 2), (a - b, av - bv), (a / b, av / bv), (a ** 2, av ** 2),
        (a + 1.5, av + 1.5), (a + i, av + iv), (gd.sum(a), np.sum(av)), (gd.sum(a, 0), av.sum(0)),
        (gd.max(a, 1), av.max(1)), (gd.min(a), av.min()), (gd.mean(a, 1), av.mean(1)),
        (a > 3, av > 3), (a <= b, av <= bv), (gd.equal(a, b), av == bv),
        (gd.maximum(a, b), np.maximum(av, bv)),
        (gd.where(a > 500, a, b), np.where(av > 500, av, bv)),
        (gd.relu(a), np.maximum(av, 0)), (gd.cast(a, "float32"), av.astype(np.float32)),
        (gd.cast(gd.cast(a, "float64"), dtype), av),
        (gd.max_pool2d(gd.reshape(a, (1, 1, 3, 4)), 2, padding=1),
         _brute_max_pool(av.reshape(1, 1, 3, 4), (2, 2), (2, 2), (1, 1, 1, 1))),
    ]
    outputs = [node for node, _ in cases]
    for node, expected in cases:
        assert node.dtype == np.asarray(expected).dtype, node
    for results in three_modes(outputs, a=av, b=bv, i=iv):
        for result, (_, expected) in zip(results, cases):
            assert_same(result, expected)


def test_uint64_beyond_int64_keeps_every_bit():
    x = gd.input("x", (3,), "uint64")
    xv = np.array([2**64 - 1, 2**63, 5], np.uint64)
    outputs = [gd.max(x), x - 1, x > 2**63, gd.sum(x[1:])]
    expected = [xv.max(), xv - 1, xv > 2**63, xv[1:].sum()]
    for results in three_modes(outputs, x=xv):
        for result, e in zip(results, expected):
            assert_same(result, e)


@pytest.mark.parametrize("dtype", UNSIGNED_WIDE + ["uint8", "int32"])
def test_take_with_unsigned_and_narrow_indices(dtype, rng):
    x = gd.input("x", (5, 3), "float64")
    idx = gd.input("idx", (4,), dtype)
    y = gd.take(x, idx, axis=0)
    outputs = [y, *gd.grad(gd.sum(y * y), [x])]
    xv, iv = rng.standard_normal((5, 3)), np.array([0, 4, 4, 2], dtype)
    dx = np.zeros_like(xv)
    np.add.at(dx, iv, 2 * xv[iv])
    for value, grad in three_modes(outputs, x=xv, idx=iv):
        assert_same(value, np.take(xv, iv, axis=0))
        np.testing.assert_allclose(grad, dx, rtol=1e-15)


@pytest.mark.parametrize("dtype, value", [("uint8", -1), ("uint64", -1), ("int8", 128),
                                          ("int64", 2**63), ("bool", 2**63)])
def test_python_int_the_dtype_cannot_hold_is_refused_at_declaration(dtype, value):
    """NumPy 2 raises OverflowError for `uint8_array - (-1)` at run time; graphdl refuses the
    graph, naming the input (a bool operand takes Python ints as int64)."""
    x = gd.input("x", (2,), dtype)
    with pytest.raises(GraphError, match=r"Python integer .* does not fit .*'x'"):
        x + value


def _brute_max_pool(x, kernel, stride, padding, dilation=(1, 1), ceil_mode=False):
    """Max-pooling by definition: each window's largest real (unpadded) cell, the dtype's lowest
    value where a window holds none."""
    n, c, h, w = x.shape
    out = [conv.pool_out(size, k, s, p0, p1, d, ceil_mode) for size, k, s, p0, p1, d in
           ((h, kernel[0], stride[0], *padding[:2], dilation[0]),
            (w, kernel[1], stride[1], *padding[2:], dilation[1]))]
    y = np.full((n, c, *out), conv.lowest(x.dtype), x.dtype)
    for oi, oj in itertools.product(range(out[0]), range(out[1])):
        rows = [oi * stride[0] - padding[0] + a * dilation[0] for a in range(kernel[0])]
        cols = [oj * stride[1] - padding[2] + b * dilation[1] for b in range(kernel[1])]
        cells = [x[:, :, r, q] for r in rows for q in cols if 0 <= r < h and 0 <= q < w]
        if cells:
            y[:, :, oi, oj] = np.max(np.stack(cells), axis=0)
    return y


POOLS = [  # (kernel, stride, padding four-sided, dilation, ceil_mode)
    ((3, 3), (2, 2), (1, 1, 1, 1), (1, 1), False),
    ((2, 2), (1, 1), (1, 1, 1, 1), (2, 2), True),
    ((2, 2), (3, 3), (1, 1, 0, 0), (1, 1), True),
    ((2, 2), (2, 2), (2, 2, 2, 2), (1, 1), False),  # windows wholly in the padding (ONNX)
]


@pytest.mark.parametrize("dtype", INTEGERS + ["bool"])
@pytest.mark.parametrize("pool", POOLS)
def test_max_pool2d_integer_input(dtype, pool, rng):
    """max_pool2d refused integers; padding must be the dtype's minimum (not -inf), so that
    cells holding that minimum still win against the padding, and wholly padded windows give
    it."""
    kernel, stride, padding, dilation, ceil_mode = pool
    xv = random_values(rng, dtype, (2, 3, 7, 6))
    if dtype != "bool":
        xv[0, 0, :3, :3] = np.iinfo(dtype).min  # edge windows whose only values are the minimum
    x = gd.input("x", xv.shape, dtype)
    y = gd.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode)
    expected = _brute_max_pool(xv, kernel, stride, padding, dilation, ceil_mode)
    for result in three_modes(y, x=xv):
        assert_same(result, expected)
    torch = pytest.importorskip("torch")
    symmetric = padding[::2] == padding[1::2] and 2 * max(padding) <= min(kernel)
    if dtype in ("int8", "uint8", "int16", "int32", "int64") and symmetric:  # PyTorch's limits
        ty = torch.nn.functional.max_pool2d(torch.tensor(xv), kernel, stride, padding[::2],
                                            dilation, ceil_mode)
        assert_same(ty.numpy(), expected)


@pytest.mark.parametrize("dtype", ["int8", "uint32", "int64"])
def test_max_pool2d_routing_by_integer_input_shares_one_search(dtype, rng):
    """The gradient ops route a float gradient by an integer input's arg-maxes: with the forward
    pool they share one `_max_pool2d_route`, whose padding and `stuck` test follow the dtype (a
    window of minima routes to its first real cell, never to the padding)."""
    kernel, stride, padding, dilation = (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)
    attrs = {"kernel": kernel, "stride": stride, "padding": padding, "dilation": dilation,
             "ceil_mode": False}
    xv = random_values(rng, dtype, (1, 2, 5, 5), 0, 3)  # many ties
    xv[0, 0, :2, :2] = np.iinfo(dtype).min
    x = gd.input("x", xv.shape, dtype)
    y = conv.MAX_POOL2D(x, **attrs)
    u = gd.input("u", x.shape, "float32")
    g = gd.input("g", y.shape, "float32")
    outputs = [y, conv.MAX_POOL2D_SELECT(u, x, **attrs), conv.MAX_POOL2D_GRAD(g, x, **attrs)]
    assert outputs[1].dtype == outputs[2].dtype == np.float32
    program = gd.compile(outputs).specialize({"x": x.shape, "u": u.shape, "g": g.shape})
    assert "_max_pool2d_route(" in program.source
    uv = rng.standard_normal(u.shape).astype(np.float32)
    gv = rng.standard_normal(g.shape).astype(np.float32)
    compiled, unoptimized, interpreted = three_modes(outputs, x=xv, u=uv, g=gv)
    assert_same(interpreted[0], _brute_max_pool(xv, kernel, stride, padding))
    assert interpreted[1][0, 0, 0, 0] == uv[0, 0, 0, 0]  # the first real cell of the minima
    for results in (compiled, unoptimized):
        for result, expected in zip(results, interpreted):
            assert_same(result, expected)


def _declarations(x, x4, f):
    return {
        "exp": lambda: gd.exp(x), "log": lambda: gd.log(x), "sqrt": lambda: gd.sqrt(x),
        "reciprocal": lambda: gd.reciprocal(x), "tanh": lambda: gd.tanh(x),
        "sigmoid": lambda: gd.sigmoid(x), "softmax": lambda: gd.softmax(x),
        "log_softmax": lambda: gd.log_softmax(x), "logsumexp": lambda: gd.logsumexp(x),
        "conv2d": lambda: gd.conv2d(x4, f[:, :, :2, :2]),
        "conv2d weight": lambda: gd.conv2d(f, x4),
        "avg_pool2d": lambda: gd.avg_pool2d(x4, 2),
    }


@pytest.mark.parametrize("dtype", ["uint16", "int32", "bool"])
@pytest.mark.parametrize("op", list(_declarations(*[None] * 3)))
def test_float_only_ops_refuse_integers_at_declaration(op, dtype):
    """Float-only ops say so when the graph is declared, naming the user's input and the cure."""
    x = gd.input("x", (2, 3), dtype)
    x4 = gd.input("x", (1, 1, 4, 4), dtype)
    f = gd.input("f", (1, 1, 4, 4), "float32")
    with pytest.raises(GraphError, match=r"floating-point.*'x'.*gd\.cast") as error:
        _declarations(x, x4, f)[op]()
    assert dtype in str(error.value)


def test_unsupported_dtypes_are_named():
    with pytest.raises(GraphError, match="unsupported dtype 'complex64'.*uint64"):
        gd.input("z", (2,), "complex64")


@pytest.mark.parametrize("dtype", ["complex64", "datetime64", "str", "nonsense"])
def test_cast_refuses_unsupported_dtypes_at_declaration(dtype):
    x = gd.input("x", (2,))
    with pytest.raises(gd.GraphError, match=r"cast of 'x': (unsupported|unknown) dtype"):
        gd.cast(x, dtype)
