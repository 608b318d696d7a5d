"""The views (draw, explain, symbolic) find each op's rules on its OpDef, never by its name: a
user op named like a built-in is drawn, narrated and converted by its own formula. That every
built-in op has its narration, closed form and kinks is `tests/test_facets.py`'s check.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy

import graphdl as gd
from graphdl.opdef import OpDef
from graphdl.ops.composite import COMPOSITES
from graphdl.views import circuit, teach

VALUES = {"x": 0.5}


@pytest.fixture(scope="module")
def impostors():
    """A scalar graph of user ops, each named like a built-in but computing something else."""
    const_op = gd.elementwise_op("const", lambda a: 2 * a)
    input_op = gd.elementwise_op("input", lambda a: a - 1)
    where_op = gd.elementwise_op("where", lambda c, a, b: c * a + b)
    matmul_op = gd.elementwise_op("matmul", lambda a, b: a * b + 1)
    exp_op = gd.elementwise_op("exp", lambda a: a + 1)
    mul_op = gd.elementwise_op("mul", lambda a, b: a * b + 1)
    x = gd.input("x", (), "float64")
    y = mul_op(where_op(x, exp_op(x), const_op(x)), 2.0) + matmul_op(input_op(x), x)
    return x, y


def _closed_form(s):
    """What the impostors graph computes, from the user ops' formulas."""
    where = s * (s + 1) + 2 * s
    return (where * 2 + 1) + ((s - 1) * s + 1)


def test_user_ops_named_like_builtins_are_drawn_with_their_own_labels(impostors):
    x, y = impostors
    dot = gd.draw(y, VALUES)
    gates = sorted(label for label in dot.node_labels.values() if label != "x")
    # the built-ins would be: a folded constant (no gate), an input, `*2`, `@`, `exp`, `where`;
    # a user op shows the constants folded into its gate
    assert gates == sorted(["const", "input", "where", "matmul", "exp", "mul(·, 2)", "+"])
    assert dot.edge_labels[f"eout{y.id}"] == ["5.25", "1.00"]
    # the numeric reverse sweep went through the user ops' own pullbacks
    assert np.isclose(dot.circuit.grad(x), gd.evaluate(gd.grad(y, x), VALUES))


def test_user_ops_named_like_builtins_are_narrated_by_their_formula(impostors):
    _, y = impostors
    ex = gd.explain(y, VALUES)
    rules = {step.gate.node.op.name: [t.rule for t in step.terms] for step in ex.steps}
    assert rules["exp"] == ["d(1 + x)/dx = 1"]
    assert rules["const"] == ["d(2·x)/dx = 2"]
    assert rules["mul"] == ["d(1 + 2·x)/dx = 2"]  # the constant 2 folded into the user's formula
    # where's operands are named as any op's (x, y, z), not as the built-in's condition c
    assert rules["where"] == ["d(z + x·y)/dx = y", "d(z + x·y)/dy = x", "d(z + x·y)/dz = 1"]
    assert rules["matmul"] == ["d(1 + x·y)/dx = y", "d(1 + x·y)/dy = x"]
    assert ex.closed and all(ok for *_, ok in ex.closed)
    assert "∂v7/∂x = 5 + 6·x" in str(ex)


def test_user_ops_named_like_builtins_are_converted_by_their_formula(impostors):
    _, y = impostors
    s = sympy.Symbol("x")
    expr = gd.symbolic(y)
    assert sympy.expand(expr - _closed_form(s)) == 0
    assert float(expr.subs(s, 0.5)) == pytest.approx(float(gd.evaluate(y, VALUES)), abs=1e-15)


def test_user_op_named_pow_is_converted_by_its_formula_not_the_exponent_attribute():
    x = gd.input("x", (), "float64")
    pow_op = gd.elementwise_op("pow", lambda a, b: a * b)
    y = pow_op(x, x + 1)
    assert sympy.expand(gd.symbolic(y)) == sympy.Symbol("x") ** 2 + sympy.Symbol("x")
    assert gd.draw(y).node_labels[f"n{y.id}"] == "pow"


def square_pullback(inputs, out, g):
    return [g * 2.0 * inputs[0]]


def test_symbolic_of_a_graph_with_a_custom_op_no_longer_raises_param_has_no_scalar_form():
    square = gd.custom_op("square", lambda a: a * a, square_pullback)
    x = gd.input("x", (), "float64")
    w = gd.input("w", (), "float64")
    y = square(x * w) * 3.0 + gd.exp(square(w))
    sx, sw = sympy.symbols("x w")
    expr = gd.symbolic(y)
    assert sympy.simplify(expr - (3 * (sx * sw) ** 2 + sympy.exp(sw ** 2))) == 0
    values = {"x": 0.7, "w": -1.3}
    assert float(expr.subs({sx: 0.7, sw: -1.3})) == pytest.approx(
        float(gd.evaluate(y, values)), rel=1e-12)
    grad = gd.symbolic_grad(y, "w")
    assert float(grad.subs({sx: 0.7, sw: -1.3})) == pytest.approx(
        float(gd.evaluate(gd.grad(y, w), values)), rel=1e-12)


def test_symbolic_of_a_custom_op_with_two_inputs_binds_each_param():
    rdiv = gd.custom_op("rdiv", lambda a, b: b / a,
                        lambda inputs, out, g: [-g * out / inputs[0], g / inputs[0]])
    a = gd.input("a", (), "float64")
    b = gd.input("b", (), "float64")
    expr = gd.symbolic(rdiv(a, b + 1))
    sa, sb = sympy.symbols("a b")
    assert sympy.simplify(expr - (sb + 1) / sa) == 0


def test_a_custom_op_named_like_a_builtin_is_drawn_and_narrated_as_itself():
    exp_custom = gd.custom_op("exp", lambda a: a * 3.0, lambda inputs, out, g: [g * 3.0])
    x = gd.input("x", (), "float64")
    y = exp_custom(x)
    ex = gd.explain(y, VALUES)
    (step,) = ex.steps
    assert step.gate.label == "exp"
    assert step.terms[0].rule == "exp: its hand-written pullback applied to ∂v1/∂v1"
    assert float(step.terms[0].contribution) == 3.0
    assert gd.symbolic(y) == 3 * sympy.Symbol("x")


def test_a_new_op_is_drawn_narrated_converted_and_checked_by_its_own_facets():
    """Everything the views need of an op is on its OpDef: a new op needs no edit in them."""
    twice = OpDef("twice", infer=lambda inputs, attrs: (inputs[0].shape, inputs[0].dtype),
                  impl=lambda x: 2 * x, pullback=lambda n, g: [g * 2.0],
                  label=lambda node, folded: "×2", narration=lambda w: f"{w.dx} = 2·{w.dy}",
                  closed_form=lambda node, args: 2 * args[0],
                  kinks=lambda node, arrays, reach: "a kink everywhere")
    x = gd.input("x", (), "float64")
    y = twice(x)
    assert gd.draw(y).node_labels[f"n{y.id}"] == "×2"
    (step,) = gd.explain(y, VALUES).steps
    assert step.terms[0].rule == "∂v1/∂x = 2·∂v1/∂v1"
    assert gd.symbolic(y) == 2 * sympy.Symbol("x")
    (unchecked,) = gd.check_grad(y, VALUES).unchecked
    assert unchecked.kink == "a kink everywhere"


def _composite_examples():
    """name -> (output, values): each composite applied to inputs, for `collapse`."""
    rng = np.random.default_rng(0)
    s = gd.input("s", (), "float64")
    v = gd.input("v", (2, 3), "float64")
    t = gd.input("t", (2, 3), "float64")
    labels = gd.input("labels", (2,), "int64")
    img, seq = gd.input("img", (1, 2, 3, 3), "float64"), gd.input("seq", (1, 2, 4), "float64")
    vol = gd.input("vol", (1, 2, 3, 3, 3), "float64")
    values = {"s": 0.3, "v": rng.standard_normal((2, 3)), "t": rng.standard_normal((2, 3)),
              "labels": np.array([0, 2]), "img": rng.standard_normal((1, 2, 3, 3)),
              "seq": rng.standard_normal((1, 2, 4)), "vol": rng.standard_normal((1, 2, 3, 3, 3))}
    return values, {
        "sigmoid": gd.sigmoid(s) * 2.0,
        "tanh": gd.tanh(s) * 2.0,
        "softplus": gd.softplus(s) * 2.0,
        "gelu": gd.gelu(s) * 2.0,
        "gelu_tanh": gd.gelu(s, approximate="tanh") * 2.0,
        "softplus_threshold": gd.softplus(s, threshold=20) * 2.0,
        **{name: getattr(gd, name)(s) * 2.0 for name in (
            "silu", "elu", "selu", "celu", "leaky_relu", "relu6", "hardtanh", "hardsigmoid",
            "hardswish", "mish", "softsign")},
        "glu": gd.sum(gd.glu(gd.concatenate([v, t], axis=-1)) * t),
        "log_sigmoid": gd.log_sigmoid(s) * 2.0,
        "softmax": gd.sum(gd.softmax(v) * t),
        "softmin": gd.sum(gd.softmin(v, dim=0) * t),
        "prelu": gd.sum(gd.prelu(v, s) * t),
        "log_softmax": gd.sum(gd.log_softmax(v) * t),
        "cross_entropy": gd.softmax_cross_entropy(v, labels) * 2.0,
        "hinge_loss": gd.hinge_loss(v, labels) * 2.0,
        "mse": gd.mse(v, t) * 2.0,
        "l2": gd.l2(v, lam=0.1) * 2.0,
        "layer_norm": gd.sum(gd.layer_norm(v, 3) * t),
        "linear": gd.sum(gd.linear(v, t) * 2.0),
        "embedding": gd.sum(gd.embedding(labels, gd.transpose(v), padding_idx=0) * 2.0),
        "dropout": gd.sum(gd.dropout(v, 0.5, np.eye(2, 3, dtype=bool)) * t),
        "scaled_dot_product_attention": gd.sum(gd.scaled_dot_product_attention(v, v, t) * 2.0),
        "group_norm": gd.sum(gd.group_norm(v, 3, np.ones(3), np.zeros(3)) * t),
        "batch_norm": gd.sum(gd.batch_norm(v, np.zeros(3), np.ones(3)) * t),
        "instance_norm": gd.sum(gd.instance_norm(seq, weight=np.ones(2), bias=np.zeros(2)) ** 2),
        "local_response_norm": gd.sum(gd.local_response_norm(seq, 2, alpha=1.0) * 2.0),
        "normalize": gd.sum(gd.normalize(v) * t),
        "fold": gd.sum(gd.fold(v, (2, 3), (2, 1)) ** 2),
        "grid_sample": gd.sum(gd.grid_sample(img, gd.stack([v, t], -1)[None]) * 2.0),
        "affine_grid": gd.sum(gd.affine_grid(gd.reshape(v, (1, 2, 3)), (1, 1, 2, 2)) * 2.0),
        "rms_norm": gd.sum(gd.rms_norm(v, 3, np.ones(3)) * t),
        "conv1d": gd.sum(gd.conv1d(seq, np.ones((3, 2, 2)), np.ones(3)) * 2.0),
        "conv3d": gd.sum(gd.conv3d(vol, np.ones((3, 2, 2, 2, 2)), np.ones(3), padding=1) * 2.0),
        "max_pool1d": gd.sum(gd.max_pool1d(seq, 2, stride=1) * 2.0),
        "avg_pool1d": gd.sum(gd.avg_pool1d(seq, 2, padding=1) * 2.0),
        "max_pool3d": gd.sum(gd.max_pool3d(vol, 2, stride=1) * 2.0),
        "avg_pool3d": gd.sum(gd.avg_pool3d(vol, (2, 1, 2), padding=(1, 0, 1)) * 2.0),
        "conv_transpose1d": gd.sum(gd.conv_transpose1d(seq, np.ones((2, 1, 2)), stride=2) ** 2),
        "conv_transpose2d": gd.sum(gd.conv_transpose2d(img, np.ones((2, 1, 2, 2)), np.ones(1),
                                                       stride=2, output_padding=1) ** 2),
        "conv_transpose3d": gd.sum(gd.conv_transpose3d(vol, np.ones((2, 1, 2, 1, 2)), np.ones(1),
                                                       stride=(2, 1, 1), padding=(1, 0, 0)) ** 2),
    }


def test_every_composite_collapses_into_one_gate_with_its_label_and_rule():
    values, examples = _composite_examples()
    assert set(examples) == set(COMPOSITES)
    for name, y in examples.items():
        comp = COMPOSITES[name]
        c = circuit.Circuit(y, values, collapse=[name])
        (region,) = [g for g in c.gates if g.kind == "region"]
        assert region.label == comp.symbol and region.region.composite is comp
        ex = teach.Explanation(c, closed_form=False)
        terms = [t for step in ex.steps if step.gate is region for t in step.terms]
        assert terms, name
        for t in terms:
            if comp.sym is None:  # the closed-form rule in words
                assert comp.rule in t.rule, name
            else:  # the rule is the derivative of the SymPy form, plugged in
                s = sympy.Symbol("s")
                local = sympy.diff(comp.sym(s), s).subs(s, values["s"]).rewrite(sympy.exp)
                assert t.local == pytest.approx(float(local), rel=1e-12), name
        # the collapsed gate's input wires carry the whole region's gradient
        for k, arg in enumerate(region.region.args):
            if arg.dtype.kind == "f":
                feeds = {n.name: values[n.name] for n in c.inputs}
                expected = gd.evaluate(gd.grad(y, arg), feeds)
                assert np.allclose(c.wire_grad(region, k), expected), name
