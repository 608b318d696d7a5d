"""The cumulative family (cumsum, cumprod, cummax, cummin, logcumsumexp) against PyTorch: values,
indices, first and second derivatives, on the interpreter, compiled NumPy and the CUDA kernels
on the CPU. Zeros in cumprod, ties and NaN in cummax/cummin, -inf and large values in
logcumsumexp, empty and negative axes, reversed scans."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import graphdl as gd

from .helpers import run_on, runner_params

RUNNERS = runner_params()


def _torch_scan(name, t, axis, reverse):
    """PyTorch's scan `name` along `axis` of t (None: flattened), from the end with reverse;
    (values, indices) for cummax and cummin, their indices mapped back to t's positions."""
    if axis is None:
        t, axis = t.reshape(-1), 0
    if reverse:
        t = torch.flip(t, [axis])
    out = getattr(torch, name)(t, axis)
    if name in ("cummax", "cummin"):
        values, indices = out
        if reverse:
            values = torch.flip(values, [axis])
            indices = t.shape[axis] - 1 - torch.flip(indices, [axis])
        return values, indices
    return torch.flip(out, [axis]) if reverse else out


def _values(name, x, axis, reverse):
    out = getattr(gd, name)(x, axis, reverse=reverse)
    return list(out) if name in ("cummax", "cummin") else [out]


def _check_values(runner, name, data, axis, reverse, dtype="float64"):
    x = gd.input("x", data.shape, dtype)
    got = run_on(runner, _values(name, x, axis, reverse), {"x": data})
    expected = _torch_scan(name, torch.from_numpy(data), axis, reverse)
    for g, e in zip(got, expected if isinstance(expected, tuple) else (expected,)):
        e = e.numpy()
        assert g.dtype == e.dtype and g.shape == e.shape
        rtol = 1e-6 if g.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(g, e, rtol=rtol, atol=0, equal_nan=True)


SHAPES_AXES = [((4, 5), 1, False), ((4, 5), 0, True), ((2, 3, 4), -2, True),
               ((2, 3, 4), None, False), ((3, 0, 2), 1, False), ((3, 0, 2), -2, True)]


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("name", ["cumsum", "cumprod", "logcumsumexp", "cummax", "cummin"])
@pytest.mark.parametrize("shape,axis,reverse", SHAPES_AXES)
def test_values_match_torch(runner, name, shape, axis, reverse):
    data = np.random.default_rng(len(shape)).standard_normal(shape)
    _check_values(runner, name, data, axis, reverse)


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("reverse", [False, True])
def test_cumprod_with_zeros_and_integers_widening(runner, reverse):
    data = np.array([[2.0, 0.0, 3.0, -1.5, 0.0, 4.0], [0.0, 0.0, 2.0, 1.0, 3.0, 0.5]])
    _check_values(runner, "cumprod", data, 1, reverse)
    for dtype in ("int8", "int32", "bool"):
        small = (np.arange(12).reshape(3, 4) % 3 - 1).astype(dtype)
        _check_values(runner, "cumprod", small, 0, reverse, dtype)  # int64, as PyTorch's


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("name", ["cummax", "cummin"])
@pytest.mark.parametrize("reverse", [False, True])
def test_ties_and_nan_take_pytorch_indices(runner, name, reverse):
    """Of equal values, the index seen last; from a NaN on, NaN with the last NaN's index."""
    data = np.array([[1.0, 3.0, 3.0, 2.0, 3.0, np.nan, 5.0, np.nan, 1.0],
                     [2.0, 2.0, 1.0, 2.0, 1.0, 1.0, -np.inf, -np.inf, 2.0]])
    _check_values(runner, name, data, 1, reverse)
    ints = np.array([[2, 2, 1, 2, 3, 3], [0, -1, -1, 0, -1, 5]], dtype="int32")
    _check_values(runner, name, ints, -1, reverse, "int32")


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("reverse", [False, True])
def test_logcumsumexp_is_stable_with_infinities(runner, reverse):
    data = np.array([[1000.0, 999.0, -1000.0, 1001.0, 0.0],
                     [-np.inf, -np.inf, 0.0, -np.inf, 1.0],
                     [-np.inf, -np.inf, -np.inf, -np.inf, -np.inf],
                     [1.0, np.inf, 2.0, -np.inf, 3.0]])
    _check_values(runner, "logcumsumexp", data, 1, reverse)
    _check_values(runner, "logcumsumexp", data.astype("float32"), 1, reverse, "float32")


def _grads(name, data, axis, reverse, probe, direction):
    """(y, dL/dx, d(dL/dx · direction)/dx) for L = Σ probe · values: graphdl's nodes and
    PyTorch's arrays."""
    x = gd.input("x", data.shape, "float64")
    y = _values(name, x, axis, reverse)[0]
    (dx,) = gd.grad(gd.sum(y * probe), [x])
    (ddx,) = gd.grad(gd.sum(dx * direction), [x])
    t = torch.tensor(data, requires_grad=True)
    ty = _torch_scan(name, t, axis, reverse)
    ty = ty[0] if isinstance(ty, tuple) else ty
    (td,) = torch.autograd.grad((ty * torch.from_numpy(probe)).sum(), t, create_graph=True)
    if td.requires_grad:
        (tdd,) = torch.autograd.grad((td * torch.from_numpy(direction)).sum(), t)
    else:  # cummax, cummin: linear where they have a derivative
        tdd = torch.zeros_like(t)
    return [y, dx, ddx], [ty.detach().numpy(), td.detach().numpy(), tdd.numpy()]


GRADIENT_CASES = {
    # rows of one, two and three zeros: the products of the others are exact there
    "cumprod-zeros": ("cumprod", [[1.5, 0.0, -2.0, 0.5, 3.0], [0.0, 2.0, 0.0, -1.0, 0.5],
                                  [0.0, 1.5, 0.0, 0.0, 2.0]], 1),
    "logcumsumexp-wide": ("logcumsumexp", [[1000.0, -3.0, 999.5, 2.0, -1000.0],
                                           [0.3, -0.2, 1.1, -0.7, 0.9]], 1),
    "cummax-ties": ("cummax", [[1.0, 3.0, 3.0, 2.0, 3.0], [2.0, 2.0, 2.0, 1.0, 0.0]], 1),
    "cummin-ties": ("cummin", [[1.0, 0.0, 0.0, 2.0, 0.0], [2.0, 2.0, 2.0, 1.0, 1.0]], 1),
}


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("case", sorted(GRADIENT_CASES))
def test_first_and_second_derivatives_match_torch(runner, case, reverse):
    name, data, axis = GRADIENT_CASES[case]
    data = np.array(data)
    rng = np.random.default_rng(3)
    probe, direction = rng.standard_normal(data.shape), rng.standard_normal(data.shape)
    nodes, expected = _grads(name, data, axis, reverse, probe, direction)
    for got, want in zip(run_on(runner, nodes, {"x": data}), expected):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_second_derivative_through_a_zero_cotangent():
    """cumprod(logcumsumexp(x)) where a cumprod input is 0: logcumsumexp's gradient meets
    cotangents of 0, where a split of g into log-domain parts has no slope. Checked against
    finite differences of the first derivative (PyTorch's second derivative is 0 there)."""
    data = np.array([1.0, -1.0, -0.5, 0.0])
    probe, direction = np.array([0.1, -0.1, 0.6, 0.1]), np.array([0.3, -1.2, 0.7, 0.5])
    x = gd.input("x", (4,), "float64")
    y = gd.cumprod(gd.logcumsumexp(x, 0, reverse=True), 0, reverse=True)
    (dx,) = gd.grad(gd.sum(y * probe), [x])
    along = gd.sum(dx * direction)
    (ddx,) = gd.grad(along, [x])
    eps = 1e-6
    numeric = [(gd.evaluate(along, {"x": data + e}) - gd.evaluate(along, {"x": data - e}))
               / (2 * eps) for e in np.eye(4) * eps]
    np.testing.assert_allclose(gd.evaluate(ddx, {"x": data}), numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # -inf − -inf
def test_logcumsumexp_gradient_at_infinities_is_pytorchs(runner):
    """NaN where every entry so far is -inf or x_k is the +inf that y_k is, 0 beside an +inf;
    no NaN reaches the other elements, in the first derivative or the second."""
    data = np.array([[-np.inf, -np.inf, 0.5, -1.0, 2.0], [0.5, np.inf, 1.0, -np.inf, 2.0]])
    probe, direction = np.full(data.shape, 0.5), np.full(data.shape, -0.25)
    nodes, expected = _grads("logcumsumexp", data, 1, False, probe, direction)
    for got, want in zip(run_on(runner, nodes, {"x": data}), expected):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, equal_nan=True)


def test_names_conventions_and_errors():
    x = gd.input("x", (3, 4))
    assert gd.cumprod(x, dim=-1).attrs["axis"] == 1
    assert gd.logcumsumexp(x).shape == (12,)  # None: x flattened, as NumPy
    values, indices = gd.cummax(x, 0)
    assert values.shape == (3, 4) and indices.dtype == np.int64
    with pytest.raises(gd.GraphError, match="'x'.*not both"):
        gd.cummin(x, 0, dim=1)
    with pytest.raises(gd.GraphError, match="one int or None"):
        gd.cumsum(x, (0, 1))
    with pytest.raises(gd.GraphError, match="'n'.*floating-point"):
        gd.logcumsumexp(gd.input("n", (3,), "int32"), 0)
    with pytest.raises(gd.GraphError, match="'s'.*out of range"):
        gd.cumprod(gd.input("s", ()), 0)
