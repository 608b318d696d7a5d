"""check_grad at kinks: ties and non-differentiable points are reported as such, never blamed."""

from __future__ import annotations

import numpy as np
import sympy

import graphdl as gd


def f64(name, shape):
    return gd.input(name, shape, "float64")


def only_kinks_of(result, op_name):
    return {c.node.op.name for c in result.kinks} == {op_name}


def test_relu_then_max_pool_with_an_all_zero_window_is_a_tie_not_a_wrong_rule():
    x, w = f64("x", (1, 1, 4, 4)), f64("w", (1, 1, 2, 2))
    y = gd.sum(gd.max_pool2d(gd.relu(x), 2) * w)
    xv = -np.ones((1, 1, 4, 4))
    xv[0, 0, 0, 0] = 1.0  # three of the four windows are all zeros after the ReLU
    result = gd.check_grad(y, {"x": xv, "w": np.ones((1, 1, 2, 2))})
    assert result.ok, str(result)
    assert only_kinks_of(result, "max_pool2d") and all(c.moved for c in result.kinks)
    report = result.report()
    assert "✗" not in report
    assert "not differentiable here" in report and "first maximum in scan order" in report
    assert "1 at a kink, checked beside it" in str(result)
    assert "wrong gradient rule" not in result.draw().source


def test_relu_at_exactly_zero_is_reported_with_pytorchs_convention():
    x = f64("x", (3,))
    result = gd.check_grad(gd.sum(gd.relu(x) * x), {"x": np.array([0.0, 1.0, -1.0])})
    assert result.ok, str(result)
    (kink,) = result.kinks
    assert kink.node.op.name == "relu" and kink.moved and kink.error < 1e-6
    assert "relu at 0; PyTorch's convention is relu'(0) = 0" in str(kink)


def test_a_tie_for_the_max_of_a_reduction_is_reported():
    x = f64("x", (2, 3))
    y = gd.sum(gd.max(x, axis=1) * gd.constant(np.array([1.0, -2.0])))
    result = gd.check_grad(y, {"x": np.array([[2.0, 2.0, -1.0], [0.0, 1.0, 3.0]])})
    assert result.ok, str(result)
    assert only_kinks_of(result, "max") and "splits the gradient evenly" in result.report()


def test_maximum_of_equal_values_and_abs_at_zero_are_kinks():
    x, z = f64("x", (2,)), f64("z", (2,))
    absolute = gd.elementwise_op("absolute", lambda a: sympy.Abs(a))
    y = gd.sum(gd.maximum(x, z) * gd.exp(x)) + gd.sum(absolute(z))
    result = gd.check_grad(y, {"x": np.array([0.5, -1.0]), "z": np.array([0.5, 0.0])})
    assert result.ok, str(result)
    reasons = {c.node.op.name: c.kink for c in result.kinks}
    assert set(reasons) == {"maximum", "absolute"}
    assert "maximum of equal values" in reasons["maximum"]
    assert "abs'(0) = 0" in reasons["absolute"]


def test_a_where_on_its_boundary_inside_a_custom_op_is_a_kink():
    leaky = gd.custom_op("leaky", lambda a: gd.where(gd.greater(a, 0.0), a, a * 0.1),
                         lambda inputs, out, g: [g * gd.where(gd.greater(inputs[0], 0.0), 1.0,
                                                              0.1)])
    x = f64("x", (3,))
    result = gd.check_grad(gd.sum(leaky(x) * x), {"x": np.array([0.0, 2.0, -3.0])})
    assert result.ok, str(result)
    (kink,) = [c for c in result.kinks if c.node.op.name == "leaky"]
    assert "comparison on its boundary" in kink.kink and "inside leaky" in kink.kink


def wrong_relu():
    """relu with a pullback twice too large."""
    return gd.custom_op("wrong_relu", lambda a: gd.relu(a),
                        lambda inputs, out, g: [2.0 * gd.where(gd.greater(out, 0.0), g, 0.0)])


def test_a_wrong_rule_near_but_not_at_a_kink_is_still_blamed():
    x = f64("x", (3,))
    result = gd.check_grad(gd.sum(wrong_relu()(x) * x), {"x": np.array([1e-3, 0.5, -0.5])})
    assert not result.ok and not result.kinks
    assert result.first.node.op.name == "wrong_relu"
    assert "first wrong gradient rule" in result.draw().source


def test_a_wrong_rule_at_a_kink_is_blamed_beside_it():
    x = f64("x", (3,))
    result = gd.check_grad(gd.sum(wrong_relu()(x) * x), {"x": np.array([0.0, 0.5, -0.5])})
    assert not result.ok
    assert result.first.node.op.name == "wrong_relu" and result.first.moved


def test_a_kink_no_move_can_clear_is_not_checked_and_not_blamed():
    # relu(a - a) sits at relu's kink whatever a is
    stuck = gd.custom_op("stuck", lambda a: gd.relu(a - a) + a,
                         lambda inputs, out, g: [g])
    x = f64("x", (2,))
    result = gd.check_grad(gd.sum(stuck(x) * x), {"x": np.array([0.5, -1.0])})
    assert result.ok
    (edge,) = result.unchecked
    assert edge.node.op.name == "stuck" and not edge.moved
    assert "not checked: not differentiable here (relu at 0" in str(edge)
    assert "1 not checked: not differentiable here" in str(result)
    assert "wrong gradient rule" not in result.draw().source
