"""User extensions: elementwise ops from SymPy formulas, and custom ops with hand-written rules."""

from __future__ import annotations

import numpy as np
import pytest
import sympy
import torch

import graphdl as gd
from graphdl import GraphError

from .helpers import graph_numeric_grads


def f64(name, shape=()):
    return gd.input(name, shape, "float64")


def sig(v):
    return 1.0 / (1.0 + np.exp(-v))


softplus = gd.elementwise_op("softplus", lambda x: sympy.log(1 + sympy.exp(x)))
sin = gd.elementwise_op("sin", sympy.sin)  # graphdl has no sine primitive


def test_softplus_from_a_formula(rng):
    x = f64("x", (7,))
    xv = rng.standard_normal(7) * 3
    y = softplus(x)
    assert y.shape == (7,) and y.dtype == np.float64 and y.op.name == "softplus"
    assert y.op is not gd.REGISTRY["softplus"]  # user ops stay out of the registry
    d = gd.grad(gd.sum(y), x)
    d2 = gd.grad(gd.sum(d), x)
    value, dv, d2v = gd.evaluate([y, d, d2], x=xv)
    np.testing.assert_allclose(value, np.log1p(np.exp(xv)), rtol=1e-12)
    np.testing.assert_allclose(dv, sig(xv), rtol=1e-12)
    np.testing.assert_allclose(d2v, sig(xv) * (1 - sig(xv)), rtol=1e-10)
    assert gd.check_grad(gd.sum(y * y), {"x": xv}).ok


def test_softplus_keeps_float32(rng):
    x = gd.input("x32", (3,), "float32")
    y = softplus(x) * 2.0
    assert y.dtype == np.float32
    d = gd.grad(gd.sum(y), x)
    assert d.dtype == np.float32
    xv = rng.standard_normal(3).astype(np.float32)
    np.testing.assert_allclose(gd.evaluate(d, x32=xv), 2 * sig(xv.astype(np.float64)), rtol=1e-6)


def test_a_sympy_function_without_a_primitive(rng):
    x = f64("x", (5,))
    xv = rng.uniform(-3, 3, 5)
    y = sin(x)
    d = gd.grad(gd.sum(y), x)
    d2 = gd.grad(gd.sum(d), x)
    d3 = gd.grad(gd.sum(d2), x)
    value, dv, d2v, d3v = gd.evaluate([y, d, d2, d3], x=xv)
    np.testing.assert_allclose(value, np.sin(xv), rtol=1e-12)
    np.testing.assert_allclose(dv, np.cos(xv), rtol=1e-12)
    np.testing.assert_allclose(d2v, -np.sin(xv), rtol=1e-12)
    np.testing.assert_allclose(d3v, -np.cos(xv), rtol=1e-12)
    result = gd.check_grad(gd.sum(sin(x * x)), {"x": xv})
    assert result.ok and len(result.checks) >= 3


def test_a_formula_with_two_arguments_broadcasts(rng):
    hypot = gd.elementwise_op("hypot", lambda a, b: sympy.sqrt(a**2 + b**2))
    a, b = f64("a", (2, 3)), f64("b", (3,))
    y = hypot(a, b)
    assert y.shape == (2, 3)
    feeds = {"a": rng.standard_normal((2, 3)), "b": rng.standard_normal(3)}
    np.testing.assert_allclose(gd.evaluate(y, feeds), np.hypot(feeds["a"], feeds["b"]))
    w = rng.standard_normal((2, 3))
    loss = gd.sum(y * gd.constant(w))
    da, db = gd.evaluate(gd.grad(loss, [a, b]), feeds)
    r = np.hypot(feeds["a"], feeds["b"])
    np.testing.assert_allclose(da, w * feeds["a"] / r)
    np.testing.assert_allclose(db, (w * feeds["b"] / r).sum(0))


def test_a_formula_with_numeric_constants_such_as_pi(rng):
    pdf = gd.elementwise_op(
        "gauss", lambda x: sympy.exp(-(x**2) / 2) / sympy.sqrt(2 * sympy.pi) * sympy.E)
    x = f64("x", (4,))
    xv = rng.standard_normal(4)
    d = gd.grad(gd.sum(pdf(x)), x)
    expected = -xv * np.exp(-(xv**2) / 2) / np.sqrt(2 * np.pi) * np.e
    np.testing.assert_allclose(gd.evaluate(d, x=xv), expected, rtol=1e-12)


def test_an_argument_the_formula_ignores_gets_zero_gradient(rng):
    scale = gd.elementwise_op("first_twice", lambda a, b: 2 * a)
    a, b = f64("a", (3,)), f64("b", (3,))
    da, db = gd.grad(gd.sum(scale(a, b)), [a, b])
    feeds = {"a": rng.standard_normal(3), "b": rng.standard_normal(3)}
    got_da, got_db = gd.evaluate([da, db], feeds)
    np.testing.assert_array_equal(got_da, np.full(3, 2.0))
    np.testing.assert_array_equal(got_db, np.zeros(3))


def test_elementwise_op_errors():
    with pytest.raises(GraphError, match="SymPy expression"):
        gd.elementwise_op("bad", lambda x: "x + 1")
    with pytest.raises(GraphError, match="softplus.*'n'"):
        softplus(gd.input("n", (3,), "int32"))
    with pytest.raises(GraphError, match="cannot broadcast"):
        gd.elementwise_op("plus", lambda a, b: a + b)(f64("a", (2,)), f64("b", (3,)))


# --- custom ops with hand-written rules ---------------------------------------------------


def _square_forward(x):
    return x * x


square = gd.custom_op("square", _square_forward, lambda inputs, out, g: [g * 2.0 * inputs[0]])
bad_square = gd.custom_op("bad_square", _square_forward, lambda inputs, out, g: [g * inputs[0]])


def test_custom_op_is_one_node_with_the_forward_values(rng):
    x = f64("x", (None, 3))
    y = square(x)
    assert y is square(x)
    assert y.op.kind == "custom" and y.inputs == (x,)
    assert y.shape == (None, 3) and y.dtype == np.float64
    for n in (1, 4):
        xv = rng.standard_normal((n, 3))
        np.testing.assert_allclose(gd.evaluate(y, x=xv), xv * xv)


def test_custom_op_with_a_correct_rule_passes_check_grad(rng):
    x = f64("x", (4,))
    y = gd.sum(gd.exp(square(x) * 0.5))
    xv = rng.standard_normal(4)
    result = gd.check_grad(y, {"x": xv})
    assert result.ok, str(result)
    assert any(c.node.op is square.op for c in result.checks)
    np.testing.assert_allclose(gd.evaluate(gd.grad(y, x), x=xv), xv * np.exp(xv * xv / 2))


def test_custom_op_with_a_wrong_rule_is_blamed_exactly(rng):
    x = f64("x", (4,))
    inner = bad_square(gd.tanh(x))
    y = gd.sum(gd.exp(inner * 0.5)) + gd.sum(inner)
    xv = rng.standard_normal(4)
    result = gd.check_grad(y, {"x": xv})
    assert result.ok is False
    assert result.failures[0].node is inner
    assert {c.node for c in result.failures} == {inner}  # nothing downstream is blamed
    assert "bad_square" in str(result)
    # grad uses the hand-written rule (so it is wrong by the factor 2 that the rule misses).
    got = gd.evaluate(gd.grad(y, x), x=xv)
    (numeric,) = graph_numeric_grads(y, {"x": xv}, ["x"])
    assert not np.allclose(got, numeric, rtol=1e-3)


def test_custom_op_of_two_inputs(rng):
    def forward(a, b):
        return gd.sum(a * b, axis=-1)

    def pullback(inputs, out, g):
        a, b = inputs
        g = gd.expand_dims(g, -1)
        return [g * b, g * a]

    dot = gd.custom_op("rowdot", forward, pullback)
    a, b = f64("a", (3, 4)), f64("b", (3, 4))
    feeds = {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal((3, 4))}
    y = gd.sum(gd.sigmoid(dot(a, b)))
    np.testing.assert_allclose(gd.evaluate(dot(a, b), feeds), (feeds["a"] * feeds["b"]).sum(-1))
    result = gd.check_grad(y, feeds)
    assert result.ok, str(result)
    grads = gd.evaluate(gd.grad(y, [a, b]), feeds)
    for got, expected in zip(grads, graph_numeric_grads(y, feeds, ["a", "b"]), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)


# --- what a formula may hold (issue 19, item 11) ------------------------------------------


@pytest.mark.parametrize("formula,construct", [
    (lambda x: x + sympy.Symbol("y"), "the formula uses y, which is not one of its arguments"),
    (lambda x: x * sympy.I, "I (SymPy's ImaginaryUnit) is not a real number"),
    (lambda x: x * sympy.log(-2), "I (SymPy's ImaginaryUnit) is not a real number"),
    (lambda x: x + sympy.zoo, "zoo (SymPy's ComplexInfinity) is not a real number"),
    (lambda x: sympy.Mod(2 * x, 3), "SymPy cannot differentiate Mod(2*x0, 3)"),
], ids=["free symbol", "I", "log(-2)", "zoo", "Mod of an expression"])
def test_a_formula_that_is_not_a_real_function_of_its_arguments_is_refused(formula, construct):
    with pytest.raises(GraphError, match="elementwise_op 'myop'") as info:
        gd.elementwise_op("myop", formula)
    assert construct in str(info.value)


def _on_every_backend(outputs, feeds):
    """The outputs' values from the interpreter, the NumPy backend and the CUDA backend's
    kernels compiled for the CPU."""
    return [gd.evaluate(outputs, feeds), gd.compile(outputs)(feeds),
            gd.compile(outputs, backend="cuda", device="cpu")(feeds)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_floor_and_ceiling_of_any_expression_have_derivative_zero(dtype):
    steps = gd.elementwise_op("steps", lambda x: sympy.floor(2 * x) + sympy.ceiling(
        sympy.Abs(x) / 3) + x * sympy.floor(sympy.Abs(x)))
    x = gd.input("x", (6,), dtype)
    xv = np.array([-3.7, -1.2, -0.4, 0.3, 1.6, 4.4], dtype)
    y = steps(x)
    d = gd.grad(gd.sum(y), x)
    d2 = gd.grad(gd.sum(d), x)
    t = torch.tensor(xv, dtype=torch.float64, requires_grad=True)
    ty = (torch.floor(2 * t) + torch.ceil(t.abs() / 3) + t * torch.floor(t.abs()))
    (td,) = torch.autograd.grad(ty.sum(), t, create_graph=True)
    (td2,) = torch.autograd.grad(td.sum(), t)
    for value, dv, d2v in _on_every_backend([y, d, d2], {"x": xv}):
        assert value.dtype == dv.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(value, ty.detach().numpy().astype(dtype))
        np.testing.assert_array_equal(dv, td.detach().numpy())  # floor(|x|): 0 from the steps
        np.testing.assert_array_equal(d2v, td2.numpy())
    h = np.asarray(1e-2, dtype)  # no step within h of the points: y is linear there
    numeric = (gd.evaluate(y, x=xv + h) - gd.evaluate(y, x=xv - h)) / (2 * h)
    np.testing.assert_allclose(gd.evaluate(d, x=xv), numeric, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_constants_nan_infinities_e_and_pi_print_as_themselves(dtype):
    consts = gd.elementwise_op("consts", lambda x: sympy.Piecewise(
        (sympy.oo, x > 2), (-sympy.oo, x < -2), (sympy.nan, sympy.Eq(x, 0)),
        (sympy.E * x + sympy.pi, True)))
    x = gd.input("x", (5,), dtype)
    xv = np.array([3.0, -3.0, 0.0, 1.5, -1.0], dtype)
    expected = np.array([np.inf, -np.inf, np.nan, np.e * 1.5 + np.pi, np.pi - np.e], dtype)
    d = gd.grad(gd.sum(consts(x) * 1.0), x)
    for value, dv in _on_every_backend([consts(x), d], {"x": xv}):
        np.testing.assert_allclose(value, expected, rtol=1e-6 if dtype == "float32" else 1e-15)
        np.testing.assert_allclose(dv, np.array([0, 0, 0, np.e, np.e], dtype), rtol=1e-6)
