"""Issue 7, items 3 and 12: pow's exponent printed exactly, its gradient at 0; user ops from
SymPy formulas with erf, Abs, sign, Piecewise, Heaviside, Max/Min of several arguments."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy
import torch

import graphdl as gd
from graphdl import GraphError

from .helpers import assert_saved_module_runs_alone


def run_both(outputs, **feeds):
    """Values from the reference interpreter and from compiled code (optimized)."""
    return gd.evaluate(outputs, feeds), gd.compile(outputs)(feeds)


def assert_same(got, expected):
    np.testing.assert_array_equal(got, expected)
    assert np.asarray(got).dtype == np.asarray(expected).dtype


# ---------------------------------------------------------------------------------- item 3: pow

def test_pow_exponent_pi_printed_exactly():
    x = gd.input("x", (4,), "float64")
    xv = np.array([0.5, 1.0, 2.0, 3.7])
    for exponent in (math.pi, 2.0000000000000004):
        y = x ** exponent
        assert f"x**{exponent!r}" in gd.compile(y).source
        for got in run_both(y, x=xv):
            assert_same(got, xv ** exponent)
    assert not np.array_equal(xv ** 2.0000000000000004, xv ** 2)  # the case can fail


EDGE_EXPONENTS = [0, 0.0, 1, 2, 3, -1, -2, 0.5, 2.0, -1.0, 1e-300, -1e-300, math.pi,
                  float("nan"), float("inf"), float("-inf")]


@pytest.mark.parametrize("exponent", EDGE_EXPONENTS, ids=repr)
def test_pow_values_equal_numpy_at_edge_exponents(exponent):
    x = gd.input("x", (7,), "float64")
    xv = np.array([0.0, -0.0, 1.0, -1.0, 2.5, np.inf, np.nan])
    with np.errstate(all="ignore"):
        expected = xv ** exponent
        for got in run_both(x ** exponent, x=xv):
            assert_same(got, expected)


@pytest.mark.parametrize("exponent", [0, 1, 2, 3, 0.0, 2.0], ids=repr)
def test_pow_of_integers_keeps_numpys_dtype(exponent):
    x = gd.input("k", (3,), "int32")
    kv = np.array([-2, 0, 3], np.int32)
    for got in run_both(x ** exponent, k=kv):
        assert_same(got, kv ** exponent)


def test_pow_zero_gradient_at_zero_is_zero():
    x = gd.input("x", (3,), "float64")
    d = gd.grad(gd.sum(x ** 0), x)
    for got in run_both(d, x=np.array([0.0, 2.0, -1.0])):
        assert_same(got, np.zeros(3))


def _torch_grads(xv, exponent):
    t = torch.tensor(xv, dtype=torch.float64, requires_grad=True)
    (d,) = torch.autograd.grad(torch.pow(t, exponent).sum(), t, create_graph=True)
    if not d.requires_grad:  # x**0: PyTorch's gradient is a constant zero
        return d.numpy(), np.zeros_like(xv)
    (d2,) = torch.autograd.grad(d.sum(), t)
    return d.detach().numpy(), d2.numpy()


@pytest.mark.parametrize("exponent", [0, 1, 2, 3, 0.5, -1, 1.5], ids=repr)
def test_pow_gradients_at_zero_match_torch(exponent):
    x = gd.input("x", (4,), "float64")
    xv = np.array([0.0, 1.5, -2.0, 3.0])
    d = gd.grad(gd.sum(x ** exponent), x)
    d2 = gd.grad(gd.sum(d), x)
    expected = _torch_grads(xv, exponent)
    with np.errstate(all="ignore"):
        for got in run_both([d, d2], x=xv):
            for g, e in zip(got, expected, strict=True):
                np.testing.assert_allclose(g, e, rtol=1e-14, atol=0)


def test_pow_symbolic_form_stays_readable():
    x = gd.input("x", (), "float64")
    s = sympy.Symbol("x")
    assert gd.symbolic(x ** 2) == s ** 2
    assert str(gd.symbolic(x ** math.pi)) == "x**3.14159265358979"
    assert sympy.diff(gd.symbolic(x ** 0), s) == 0
    assert gd.symbolic_grad(x ** 2.0, "x") == 2 * s
    assert gd.symbolic(x ** 0.5) == sympy.sqrt(s)


# ------------------------------------------------------------------------ item 12: user ops

def test_user_op_erf():
    erf = gd.elementwise_op("erf", sympy.erf)
    values = [0.0, -0.0, 1e-300, 5e-324, 0.5, -0.5, 1.0, 3.0, -6.0, 30.0, np.inf, -np.inf, np.nan]
    for dtype in ("float64", "float32"):
        x = gd.input("x", (len(values),), dtype)
        xv = np.array(values, dtype)
        got = gd.evaluate(erf(x), x=xv)
        expected = np.array([math.erf(float(v)) for v in xv]).astype(dtype)
        assert_same(got, expected)
    x = gd.input("x", (5,), "float64")
    xv = np.array([-2.0, -0.3, 0.0, 0.7, 4.0])
    d = gd.grad(gd.sum(erf(x)), x)
    d2 = gd.grad(gd.sum(d), x)
    dv, d2v = gd.evaluate([d, d2], x=xv)
    np.testing.assert_allclose(dv, 2 / math.sqrt(math.pi) * np.exp(-xv**2), rtol=1e-14)
    np.testing.assert_allclose(d2v, -4 / math.sqrt(math.pi) * xv * np.exp(-xv**2), rtol=1e-14)


def test_user_op_erf_compiled():
    """Needs `_erf` (a runtime function the printer calls) emitted into the generated module."""
    erf = gd.elementwise_op("erf", sympy.erf)
    x = gd.input("x", (4,), "float32")
    xv = np.array([-1.5, 0.0, 0.25, np.nan], np.float32)
    y = erf(x)
    d = gd.grad(gd.sum(y), x)
    reference, compiled = run_both([y, d], x=xv)
    for got, expected in zip(compiled, reference, strict=True):
        assert_same(got, expected)


def test_user_op_erfc_prints_the_runtimes_erfc(tmp_path):
    """sympy.erfc prints `_erfc` (SymPy's printer gives math.erfc, which takes no arrays); the
    saved module carries it and runs alone; the tail keeps its relative precision."""
    erfc = gd.elementwise_op("my_erfc", sympy.erfc)
    x = gd.input("x", (5,), "float64")
    xv = np.array([-3.0, 0.0, 6.5, 10.0, 26.0])
    fn = gd.compile([erfc(x)])
    assert "_erfc(" in fn.source
    np.testing.assert_allclose(fn(x=xv)[0], [math.erfc(v) for v in xv], rtol=1e-15, atol=0)
    assert_saved_module_runs_alone(fn, {"x": xv}, tmp_path)


def test_user_op_max_of_three():
    clip = gd.elementwise_op("clip_below_1", lambda a, b: sympy.Max(a, b, 1))
    a, b = gd.input("a", (5,), "float64"), gd.input("b", (5,), "float64")
    av = np.array([3.0, 0.0, 2.0, -1.0, 5.0])
    bv = np.array([1.0, 0.5, 2.0, -3.0, 6.0])
    y = clip(a, b)
    da, db = gd.grad(gd.sum(y), [a, b])
    d2a = gd.grad(gd.sum(da), a)
    for value, dav, dbv, d2av in run_both([y, da, db, d2a], a=av, b=bv):
        assert_same(value, np.maximum(np.maximum(av, bv), 1))
        # SymPy's derivative: Heaviside(a - Max(b, 1)), ties split with H(0) = 1/2
        assert_same(dav, np.array([1.0, 0.0, 0.5, 0.0, 0.0]))
        assert_same(dbv, np.array([0.0, 0.0, 0.5, 0.0, 1.0]))
        assert_same(d2av, np.zeros(5))


def _torch_abs_grad(xv):
    t = torch.tensor(xv, dtype=torch.float64, requires_grad=True)
    (d,) = torch.autograd.grad(t.abs().sum(), t)
    return d.numpy()


def test_user_op_abs_sign_piecewise_gradients():
    my_abs = gd.elementwise_op("my_abs", sympy.Abs)
    my_sign = gd.elementwise_op("my_sign", sympy.sign)
    leaky = gd.elementwise_op("leaky", lambda x: sympy.Piecewise((x, x > 0), (x**3 / 4, True)))
    x = gd.input("x", (5,), "float64")
    xv = np.array([-2.0, -0.5, 0.0, 0.5, 3.0])
    cases = [  # op, value, first and second derivative
        (my_abs, np.abs(xv), _torch_abs_grad(xv), np.zeros(5)),  # abs'(0) = 0, as PyTorch
        (my_sign, np.sign(xv), np.zeros(5), np.zeros(5)),
        (leaky, np.where(xv > 0, xv, xv**3 / 4), np.where(xv > 0, 1.0, 3 * xv**2 / 4),
         np.where(xv > 0, 0.0, 6 * xv / 4)),
    ]
    for op, value, d1, d2 in cases:
        y = op(x)
        d = gd.grad(gd.sum(y), x)
        dd = gd.grad(gd.sum(d), x)
        for got in run_both([y, d, dd], x=xv):
            for g, e in zip(got, (value, d1, d2), strict=True):
                np.testing.assert_allclose(g, e, rtol=1e-15, atol=0, err_msg=op.name)


def test_user_op_piecewise_with_conditions_and_no_default():
    band = gd.elementwise_op(
        "band", lambda x: sympy.Piecewise((x**2, (x > -1) & (x < 1)), (-x, sympy.Eq(x, 2))))
    x = gd.input("x", (4,), "float64")
    xv = np.array([-3.0, 0.5, 2.0, 1.0])
    y = band(x)
    d = gd.grad(gd.sum(y), x)
    for value, dv in run_both([y, d], x=xv):
        assert_same(value, np.array([np.nan, 0.25, -2.0, np.nan]))  # no condition holds: NaN
        assert_same(dv, np.array([np.nan, 1.0, -1.0, np.nan]))


def test_user_op_heaviside_keeps_its_value_at_zero():
    half = gd.elementwise_op("step_half", lambda x: sympy.Heaviside(x))
    one = gd.elementwise_op("step_one", lambda x: sympy.Heaviside(x, 1))
    x = gd.input("x", (4,), "float32")
    xv = np.array([-1.0, 0.0, 2.0, -0.0], np.float32)
    for op, at_zero in ((half, 0.5), (one, 1.0)):
        d = gd.grad(gd.sum(op(x) * x), x)  # H(x) + x·δ(x), δ taken as 0
        for value, dv in run_both([op(x), d], x=xv):
            assert_same(value, np.heaviside(xv, np.float32(at_zero)))
            assert_same(dv, np.heaviside(xv, np.float32(at_zero)))


def test_user_op_step_of_constants_has_the_ops_dtype():
    step = gd.elementwise_op("step", lambda x: sympy.Piecewise((1, x > 0), (0, True)))
    x = gd.input("x", (3,), "float32")
    xv = np.array([-1.0, 0.0, 2.0], np.float32)
    for got in run_both(step(x), x=xv):
        assert_same(got, np.array([0.0, 0.0, 1.0], np.float32))


def test_user_op_float_constants_are_exact():
    scale = gd.elementwise_op("scale", lambda x: x * math.pi + 0.1)
    x = gd.input("x", (3,), "float64")
    xv = np.array([1.0, 3.0, -7.0])
    for got in run_both(scale(x), x=xv):
        assert_same(got, xv * math.pi + 0.1)


def test_user_op_derivative_with_a_two_argument_function():
    f = gd.elementwise_op("f", lambda a, b: sympy.atan2(a, b) * a)  # ∂/∂a holds atan2(a, b)
    a, b = gd.input("a", (3,), "float64"), gd.input("b", (3,), "float64")
    av, bv = np.array([1.0, -2.0, 0.5]), np.array([2.0, 1.0, -3.0])
    da = gd.grad(gd.sum(f(a, b)), a)
    expected = np.arctan2(av, bv) + av * bv / (av**2 + bv**2)
    for got in run_both(da, a=av, b=bv):
        np.testing.assert_allclose(got, expected, rtol=1e-15)


@pytest.mark.parametrize("formula,construct", [
    (lambda x: sympy.Integral(x, x), "SymPy's Integral"),
    (lambda x: sympy.gamma(x), "SymPy's gamma"),
    (lambda x: sympy.Function("g")(x) + x, "SymPy's g"),
    (lambda x: sympy.DiracDelta(x), "SymPy's DiracDelta"),
    (lambda x: sympy.Mod(x, 2), "SymPy cannot differentiate Mod(x0, 2)"),
    (lambda x: sympy.Piecewise((x, sympy.Xor(x > 0, x < 2)), (0, True)), "SymPy's Xor"),
], ids=["Integral", "gamma", "undefined", "DiracDelta", "Mod", "Xor"])
def test_user_op_unsupported_construct_named(formula, construct):
    with pytest.raises(GraphError, match="elementwise_op 'myop'") as info:
        gd.elementwise_op("myop", formula)
    assert construct in str(info.value) and "supported: " in str(info.value)


def test_where_in_a_user_formula_differentiates_into_the_built_in_where():
    """A SymPy Where in a user op's derivative is built as graphdl's own where (its lowering
    and rewrites), not as a new op that happens to be named Where."""
    from graphdl.ops import elementwise as ew
    from graphdl.ops.scalar import Where

    sel = gd.elementwise_op("sel", lambda c, a, b: Where(c, a * a, b))
    c = gd.input("c", (3,), "float64")
    a = gd.input("a", (3,), "float64")
    b = gd.input("b", (3,), "float64")
    (g,) = gd.grad(gd.sum(sel(c, a, b)), [a])
    ops = {n.op for n in gd.topological_order([g])}
    assert ew.WHERE in ops and not any(op.name == "Where" for op in ops)
    got = gd.evaluate(g, c=np.array([1.0, 0.0, 1.0]), a=np.array([1.0, 2.0, 3.0]), b=np.zeros(3))
    np.testing.assert_array_equal(got, [2.0, 0.0, 6.0])


def test_each_sympy_function_of_a_built_in_op_is_built_as_that_op():
    """`from_sympy` finds in the registry the op that builds a SymPy function or relation:
    every built-in whose SymPy form is one applied to its operands (a new one included)."""
    from graphdl.formula import from_sympy
    from graphdl.opdef import REGISTRY

    floats = gd.input("x", (3,), "float64"), gd.input("y", (3,), "float64")
    ints = gd.input("i", (3,), "int64"), gd.input("j", (3,), "int64")  # the bitwise ops'
    built = set()
    for op in REGISTRY.values():
        if op.kind != "elementwise" or op.sym is None or op.name == "where":  # cast to bool
            continue
        x, y = ints if op.name.startswith("bitwise") else floats
        for symbols, nodes in ((sympy.symbols("a:1"), (x,)), (sympy.symbols("a:2"), (x, y))):
            try:
                e = op.sym(*symbols)
            except TypeError:  # another number of operands, or attributes
                continue
            if (e.is_Function or e.is_Relational) and e.args == symbols:
                assert from_sympy(e, dict(zip(symbols, nodes)), x).op is op, op.name
                built.add(op.name)
    assert {"exp", "abs", "relu", "maximum", "greater", "not_equal"} <= built


def test_closed_forms_through_where_differentiate_only_the_branches():
    """SymPy's chain rule would differentiate where's condition, a relation it cannot
    differentiate: clip's closed-form gradient raised AttributeError."""
    import sympy

    x = gd.input("x", (), "float64")
    grad = gd.symbolic_grad(gd.clip(x, 0.0, 1.0), x)
    s = sympy.Symbol("x")
    assert [float(grad.subs(s, v)) for v in (-0.5, 0.5, 1.5)] == [0.0, 1.0, 0.0]
    text = str(gd.explain(gd.where(x > 0, x * x, -x), {"x": 0.5}))
    assert "== the step-by-step result ✓" in text
