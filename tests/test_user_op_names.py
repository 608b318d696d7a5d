"""User ops may reuse a built-in op's name: identity of the OpDef, never the name, decides which
rewrites, code and leaf handling a node gets (issue 8).

Each case defines a user op named like a built-in, with another formula, and applies it where the
built-in's rewrites would fire (`mul(x, 1.0)`, `reciprocal(exp(w) + 1)`, ...). Its formula is plain
arithmetic, so the same lambda is the SymPy definition and the NumPy reference.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import graphdl as gd
from graphdl.ops import elementwise as ew
from graphdl.passes.rewrite import ANY, Rule, rewrite
from tests.helpers import numeric_grad

# The built-ins the arguments are made of, for graphs (gd) and for the NumPy reference (NP).
NP = SimpleNamespace(exp=np.exp, log=np.log, sigmoid=lambda z: 1 / (1 + np.exp(-z)))

# name -> (formula, arguments from the nodes (u, v, w) in the namespace xp). The arguments are
# where the built-in's own rules would fire.
CASES = {
    "exp": (lambda a: a + 1, lambda xp, u, v, w: (u,)),
    "mul": (lambda a, b: a * b + 1, lambda xp, u, v, w: (u, 1.0)),
    "pow": (lambda a, b: a * a + b, lambda xp, u, v, w: (u, v)),
    "add": (lambda a, b: a - 2 * b + 1, lambda xp, u, v, w: (u, 0.0)),
    "sub": (lambda a, b: a - 2 * b, lambda xp, u, v, w: (2 * xp.sigmoid(2 * u), 1.0)),
    "div": (lambda a, b: a / b + 1, lambda xp, u, v, w: (u, 1.0)),
    "neg": (lambda a: 2 * a, lambda xp, u, v, w: (-u,)),
    "reciprocal": (lambda a: 3 * a, lambda xp, u, v, w: (xp.exp(u) + 1,)),
    "log": (lambda a: a * a, lambda xp, u, v, w: (xp.exp(u) + 1,)),
    "relu": (lambda a: a * a - 1, lambda xp, u, v, w: (u,)),
    "sigmoid": (lambda a: 3 * a, lambda xp, u, v, w: (u,)),
    "cast": (lambda a: a + 3, lambda xp, u, v, w: (u,)),
    "stop_gradient": (lambda a: a * 5, lambda xp, u, v, w: (u,)),
    "const": (lambda a: a + 2, lambda xp, u, v, w: (u,)),
    "input": (lambda a: 3 * a, lambda xp, u, v, w: (u,)),
    "sum": (lambda a, b: a + b + 1, lambda xp, u, v, w: (u, v)),
    "where": (lambda a, b, c: a * b + c, lambda xp, u, v, w: (u, v, w)),
    "transpose": (lambda a: a - 1, lambda xp, u, v, w: (u,)),
    "broadcast_to": (lambda a: a * 7, lambda xp, u, v, w: (u,)),
    "max_pool2d": (lambda a: a + 4, lambda xp, u, v, w: (u,)),
}

X = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
W = np.array([[0.2, -0.4], [0.3, 0.1], [-0.5, 0.6]])


def _bases(xp, x, w):
    """Three different (2, 2) operands, each through a matrix product (a structured op)."""
    u = x @ w
    return u, u * u - 0.5, (x * 2) @ w + 1


def _program(name):
    """The graph y = op(args) for inputs x and W, and its NumPy reference of x."""
    formula, arguments = CASES[name]
    op = gd.elementwise_op(name, formula)
    x, w = gd.input("x", X.shape, "float64"), gd.input("W", W.shape, "float64")
    y = op(*arguments(gd, *_bases(gd, x, w)))

    def reference(xv):
        return formula(*(np.broadcast_to(a, (2, 2)) for a in arguments(NP, *_bases(NP, xv, W))))

    return y, x, reference


RUNS = {
    "interpreted": lambda y: gd.evaluate(y, x=X, W=W),
    "interpreted_as_declared": lambda y: gd.evaluate(y, x=X, W=W, stabilize=False),
    "compiled": lambda y: gd.compile(y)(x=X, W=W),
    "compiled_unoptimized": lambda y: gd.compile(y, optimize=False)(x=X, W=W),
}


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("name", CASES)
def test_user_op_named_like_a_builtin_computes_its_own_formula(name, run):
    y, _, reference = _program(name)
    np.testing.assert_allclose(RUNS[run](y), reference(X), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("run", ["interpreted", "compiled", "compiled_unoptimized"])
@pytest.mark.parametrize("name", CASES)
def test_user_op_named_like_a_builtin_has_its_own_gradient(name, run):
    y, x, reference = _program(name)
    (dx,) = gd.grad(gd.sum(y), [x])
    expected = numeric_grad(lambda xv: reference(xv).sum(), X)
    np.testing.assert_allclose(RUNS[run](dx), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", CASES)
def test_user_op_named_like_a_builtin_passes_check_grad(name):
    y, _, _ = _program(name)
    result = gd.check_grad(gd.sum(y), {"x": X, "W": W})
    assert result.checks and not result.failures


def test_user_exp_of_a_matmul_compiles_to_its_formula_not_numpy_exp():
    myexp = gd.elementwise_op("exp", lambda a: a + 1)
    x, w = gd.input("x", (1, 1), "float64"), gd.input("W", (1, 1), "float64")
    ones = {"x": np.ones((1, 1)), "W": np.ones((1, 1))}
    assert gd.compile(myexp(x @ w))(**ones) == 2.0  # the built-in exp would give 2.718
    assert gd.evaluate(myexp(x @ w), ones) == 2.0


def test_user_mul_by_one_is_not_simplified_to_its_operand():
    mymul = gd.elementwise_op("mul", lambda a, b: a * b + 1)
    x = gd.input("x", (), "float64")
    assert gd.compile(mymul(x, 1.0))(x=3.0) == 4.0


def test_user_pow_compiles_without_the_builtin_exponent_attribute():
    mypow = gd.elementwise_op("pow", lambda a, b: a * a + b)
    x = gd.input("x", (), "float64")
    assert gd.compile(mypow(x, 1.0))(x=3.0) == 10.0


def test_rule_fires_on_its_opdef_only_and_any_fires_on_every_op():
    mymul = gd.elementwise_op("mul", lambda a, b: a * b + 1)
    x = gd.input("x", (), "float64")
    seen = []
    rules = [Rule("builtin_mul", ew.MUL, lambda n: seen.append(("mul", n)) or None),
             Rule("every", ANY, lambda n: seen.append(("any", n)) or None)]
    user, builtin = mymul(x, x), x * x
    rewrite([user, builtin], rules)
    assert ("mul", builtin) in seen and ("mul", user) not in seen
    assert {n for kind, n in seen if kind == "any"} == {x, user, builtin}


def test_rule_keyed_by_an_op_name_is_refused():
    with pytest.raises(TypeError, match="OpDef"):
        Rule("mul_by_one", "mul", lambda n: None)
