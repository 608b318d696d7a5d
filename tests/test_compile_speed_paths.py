"""Built-in elementwise ops compile from the NumPy text in their blocks (`OpDef.numpy_text`),
without SymPy; the text must be exactly what the printer gives their SymPy form, so the two
paths can never drift apart."""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import math
import subprocess
import sys

import numpy as np
import pytest

from graphdl.codegen import lower
from graphdl.codegen.numpy_backend.elementwise import elementwise_template, printed
from graphdl.errors import GraphError
from graphdl.ir import attrs_key, make_node
from graphdl.opdef import REGISTRY
from graphdl.ops import elementwise as ew
from graphdl.ops import leaf

ELEMENTWISE = [op for op in REGISTRY.values() if op.kind == "elementwise"]
DTYPES = ("float32", "float64", "int32", "int64", "bool")

# Attributes to print each op with: every integer and float case the printer spells apart.
ATTRS = {
    ew.POW: [{"exponent": e} for e in (
        0, 1, 2, 3, -1, -2, -3, 10**20, -(10**20), -(2**53 + 1), True, False, 0.0, -0.0, 1.0,
        2.0, -1.0, -2.0, 0.5, -0.5, 1.5, math.pi, 2.0000000000000004, 1e20, 1e-20, -1e300,
        5e-324, float("nan"), float("inf"), float("-inf"), np.float64(2.5))],
    ew.CAST: [{"dtype": d} for d in ("float16", "float32", "float64", "int32", "int64", "uint8",
                                     "bool")],
}


def _arity(op, attrs):
    return len(inspect.signature(op.numpy_text).parameters) - len(attrs)


def _cases():
    for op in ELEMENTWISE:
        for attrs in ATTRS.get(op, [{}]):
            yield pytest.param(op, attrs, id=f"{op.name}-{attrs}")


def test_every_builtin_elementwise_op_has_a_numpy_text():
    assert [op.name for op in ELEMENTWISE if op.numpy_text is None] == []


@pytest.mark.parametrize(("op", "attrs"), list(_cases()))
def test_numpy_text_is_what_the_printer_gives_the_sympy_form(op, attrs):
    slots = [f"_a{k}_" for k in range(_arity(op, attrs))]
    assert op.numpy_text(*slots, **attrs) == printed(op, slots, attrs)


@pytest.mark.parametrize(("op", "attrs"), list(_cases()))
def test_templates_and_reads_from_the_text_equal_those_from_the_sympy_form(op, attrs):
    """For every input dtype combination the op accepts: the same template (dtype conversion
    included) and the same arguments read, whether from the text or from SymPy."""
    arity = _arity(op, attrs)
    by_sympy = dataclasses.replace(op, numpy_text=None)
    accepted = 0
    for dtypes in itertools.product(DTYPES, repeat=arity):
        inputs = [leaf.input(f"x{k}", (2, 3), d) for k, d in enumerate(dtypes)]
        try:
            node = make_node(op, inputs, attrs)
        except GraphError:  # a dtype the op refuses
            continue
        accepted += 1
        assert (elementwise_template(node)
                == elementwise_template(make_node(by_sympy, inputs, attrs))), dtypes
        key = attrs_key(attrs)
        assert lower._formula_of(op, key, arity) == lower._formula_of(by_sympy, key, arity)
    assert accepted


def test_a_user_op_without_a_text_still_compiles_through_sympy():
    import graphdl as gd

    sq = gd.elementwise_op("sq", lambda x: x * x)
    x = gd.input("x", (3,))
    fn = gd.compile(sq(x) + 1)
    assert "x**2 + 1.0" in fn.source
    np.testing.assert_array_equal(fn(x=np.array([1, 2, 3], np.float32)), [2, 5, 10])


def test_compiling_and_running_an_mlp_and_a_cnn_does_not_import_sympy():
    script = """
import sys
import numpy as np
import graphdl as gd

rng = np.random.default_rng(0)
x, y, t = gd.input("x", (8, 5)), gd.input("y", (8,), "int64"), gd.input("t", (8, 3))
W1, W2, W3 = gd.input("W1", (5, 6)), gd.input("W2", (6, 6)), gd.input("W3", (6, 3))
h = gd.sigmoid(gd.tanh(gd.relu(x @ W1) @ W2)) @ W3
mlp = gd.softmax_cross_entropy(h, y) + gd.mse(h, t) + gd.mean((h - t) ** 2)
params = [W1, W2, W3]
step = gd.compile(mlp, updates={p: p - 0.1 * g for p, g in zip(params, gd.grad(mlp, params))})
feeds = {n: rng.standard_normal(s).astype(np.float32)
         for n, s in [("x", (8, 5)), ("t", (8, 3)), ("W1", (5, 6)), ("W2", (6, 6)), ("W3", (6, 3))]}
step(y=rng.integers(0, 3, 8), **feeds)

img, k = gd.input("img", (2, 1, 8, 8)), gd.input("k", (3, 1, 3, 3))
z = gd.max_pool2d(gd.relu(gd.conv2d(img, k, padding=1)), 2)
cnn = gd.softmax_cross_entropy(gd.reshape(gd.avg_pool2d(z, 2), (2, -1)), gd.constant([0, 2]))
gd.compile([cnn, *gd.grad(cnn, [k])])(img=rng.standard_normal((2, 1, 8, 8)),
                                      k=rng.standard_normal((3, 1, 3, 3)))
assert "sympy" not in sys.modules, "compiling imported sympy"
"""
    subprocess.run([sys.executable, "-c", script], check=True)
