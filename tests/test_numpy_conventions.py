"""Edge cases where graphdl follows NumPy's (and PyTorch's) conventions, checked against both:
an axis of a 0-d array, `clip` with lo > hi, an integer array to a float power."""

from __future__ import annotations

import operator

import numpy as np
import pytest
import torch

import graphdl as gd

SCALAR = 0.75  # a 0-d value whose softmax is 1 and log-softmax 0, and whose gradients are not

# name -> (graphdl function taking axis=, PyTorch's function of a 0-d tensor and a dim)
ZERO_D = {
    "sum": (gd.sum, torch.sum),
    "mean": (gd.mean, torch.mean),
    "max": (gd.max, torch.amax),
    "min": (gd.min, torch.amin),
    "squeeze": (gd.squeeze, torch.squeeze),
    "softmax": (gd.softmax, torch.softmax),
    "log_softmax": (gd.log_softmax, torch.log_softmax),
    "logsumexp": (gd.logsumexp, torch.logsumexp),
}


def _both_ways(y, feeds):
    """y evaluated by the reference interpreter and by compiled code (they must agree)."""
    value = gd.evaluate(y, feeds)
    np.testing.assert_array_equal(gd.compile(y)(feeds), value)
    return value


@pytest.mark.parametrize("axis", [0, -1, (0,), (-1,)])
@pytest.mark.parametrize("name", ZERO_D)
def test_axis_0_or_minus_1_of_a_0_d_array_is_the_array_itself(name, axis):
    """NumPy 2 accepts an int axis 0 / -1 for sum, max, min, squeeze on a 0-d array; PyTorch
    accepts it (and a tuple of it) for every reduction. graphdl accepts both everywhere."""
    fn, reference = ZERO_D[name]
    x = gd.input("s", (), "float64")
    y = fn(x, axis=axis)
    assert y.shape == ()
    dim = axis if isinstance(axis, int) or name not in ("softmax", "log_softmax") else axis[0]
    expected = reference(torch.tensor(SCALAR, dtype=torch.float64), dim).numpy()
    np.testing.assert_allclose(_both_ways(y, {"s": SCALAR}), expected, rtol=1e-15)
    grad = gd.grad(gd.exp(y), x)  # exp: a non-constant upstream gradient
    t = torch.tensor(SCALAR, dtype=torch.float64, requires_grad=True)
    torch.exp(reference(t, dim)).backward()
    np.testing.assert_allclose(_both_ways(grad, {"s": SCALAR}), t.grad.numpy(), rtol=1e-12)
    assert gd.check_grad(gd.exp(y), {"s": SCALAR}).ok


@pytest.mark.parametrize("name", ["sum", "max", "min", "squeeze"])
def test_0_d_axis_agrees_with_numpy(name):
    x = gd.input("s", (), "float64")
    for axis in (0, -1):
        expected = getattr(np, name)(np.float64(SCALAR), axis=axis)
        assert _both_ways(getattr(gd, name)(x, axis=axis), {"s": SCALAR}) == expected


@pytest.mark.parametrize("keepdims", [False, True])
def test_0_d_reductions_with_keepdims_stay_0_d(keepdims):
    x = gd.input("s", (), "int32")
    y = gd.sum(x, axis=0, keepdims=keepdims)
    expected = np.sum(np.int32(3), axis=0, keepdims=keepdims)
    assert y.shape == () and y.dtype == expected.dtype
    assert _both_ways(y, {"s": 3}) == expected
    assert gd.logsumexp(gd.input("f", ()), axis=-1, keepdims=keepdims).shape == ()


@pytest.mark.parametrize("axis", [1, -2, (0, -1), (0, 0)])
@pytest.mark.parametrize("name", ZERO_D)
def test_other_axes_of_a_0_d_array_are_refused_naming_it(name, axis):
    """A 0-d array has the one axis 0 (alias -1): anything else, or that axis twice, is an
    error, as in NumPy and PyTorch."""
    fn, _ = ZERO_D[name]
    with pytest.raises(gd.GraphError, match="'scalar'.*(out of range for 0 dimensions|repeated)"):
        fn(gd.input("scalar", ()), axis=axis)


CLIP_POINTS = np.array([-1.0, 0.0, 1.5, 3.0, 5.0, np.nan, np.inf, -np.inf])


@pytest.mark.parametrize("lo, hi", [(3, 0), (3.0, -2.5), (1, 1)])
def test_clip_with_lo_above_hi_is_hi_everywhere_with_no_gradient(lo, hi):
    """NumPy's clip is minimum(maximum(x, lo), hi) and PyTorch's clamp agrees: with lo > hi,
    every number becomes hi and NaN stays NaN; clamp's gradient flows only where
    lo <= x <= hi, which no x satisfies then. lo == hi is the boundary case."""
    x = gd.input("x", (len(CLIP_POINTS),), "float64")
    y = gd.clip(x, lo, hi)
    feeds = {"x": CLIP_POINTS}
    np.testing.assert_array_equal(_both_ways(y, feeds), np.clip(CLIP_POINTS, lo, hi))
    t = torch.tensor(CLIP_POINTS, requires_grad=True)
    (torch.clamp(t, min=lo, max=hi) * torch.arange(1.0, 9.0, dtype=torch.float64)).sum().backward()
    weights = gd.constant(np.arange(1.0, 9.0))
    grad = gd.grad(gd.sum(y * weights), x)
    np.testing.assert_array_equal(_both_ways(grad, feeds), t.grad.numpy())


INTEGER_BASES = ["int32", "int8", "uint16", "int64", "bool"]


@pytest.mark.parametrize("exponent", [0.5, -1.0, 2.0, -0.5, 1.5])
@pytest.mark.parametrize("dtype", INTEGER_BASES)
def test_integer_to_a_float_power_is_float64_as_numpy(dtype, exponent):
    values = np.array([1, 4, 9, 2], dtype=dtype)
    x = gd.input("i", values.shape, dtype)
    y = x ** exponent
    expected = values ** exponent
    assert y.dtype == expected.dtype == np.float64
    np.testing.assert_array_equal(_both_ways(y, {"i": values}), expected)


@pytest.mark.parametrize("weight_dtype", ["float32", "float64"])
def test_gradient_through_an_integer_to_a_float_power(weight_dtype):
    """sum(w * i ** 0.5) promotes to float64 (NumPy's rule); its gradient reaches w in w's own
    dtype, equal to PyTorch's, and passes the finite-difference check."""
    counts = np.array([1, 4, 9, 2], dtype="int32")
    w_value = np.array([0.5, -1.0, 2.0, 3.0], dtype=weight_dtype)
    i, w = gd.input("i", (4,), "int32"), gd.input("w", (4,), weight_dtype)
    loss = gd.sum(w * i ** 0.5) ** 2
    feeds = {"i": counts, "w": w_value}
    grad = gd.grad(loss, w)
    assert loss.dtype == np.float64 and grad.dtype == np.dtype(weight_dtype)
    tw = torch.tensor(w_value, requires_grad=True)
    ((tw * torch.tensor(counts, dtype=torch.float64) ** 0.5).sum() ** 2).backward()
    np.testing.assert_allclose(_both_ways(grad, feeds), tw.grad.numpy(), rtol=1e-6)
    assert gd.check_grad(loss, feeds).ok


def test_integer_to_a_negative_integer_power_is_still_refused():
    """NumPy raises 'Integers to negative integer powers are not allowed'."""
    with pytest.raises(gd.GraphError, match="'i'.*int32"):
        gd.input("i", (3,), "int32") ** -1


@pytest.mark.parametrize("op", ["add", "sub", "mul", "truediv", "matmul", "lt", "ge", "pow"])
def test_an_array_on_the_left_of_a_node_builds_a_node(op):
    """`array <op> node` is the node's reflected operator with the array as a constant, as
    NumPy's `array <op> array` (not an object array of per-element nodes)."""
    a = np.array([[1.5, 2.0], [0.5, 3.0]])
    y = getattr(operator, op)(a, gd.input("x", (2, 2), "float64"))
    assert isinstance(y, gd.Node)
    x0 = np.array([[2.0, 0.5], [1.0, 4.0]])
    np.testing.assert_array_equal(_both_ways(y, {"x": x0}), getattr(operator, op)(a, x0))


def test_asking_a_node_for_its_array_is_an_error_naming_it():
    x = gd.input("x", (2,), "float64")
    for convert in (np.asarray, lambda v: np.where(np.ones(2, bool), v, 0.0)):
        with pytest.raises(TypeError, match="'x' is a symbolic graph node"):
            convert(x)
    with pytest.raises(TypeError, match="does not support ufuncs"):  # gd.exp is the node's
        np.exp(x)
