"""A custom op's pullback is checked as it is built: one gradient or None per input, each of its
input's shape and dtype, named by op and input; nothing is summed down or cast to fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import graphdl as gd
from graphdl import GraphError

from .helpers import graph_numeric_grads


def _square(pullback):
    return gd.custom_op("square", lambda x: x * x, pullback)


def _grad_of(op, *inputs):
    return gd.grad(gd.sum(op(*inputs)), list(inputs))


def test_a_scalar_gradient_for_a_vector_input_is_refused():
    x = gd.input("x", (3,), "float64")
    op = _square(lambda inputs, out, g: [gd.sum(g * 2.0 * inputs[0])])
    with pytest.raises(GraphError, match=r"'square'.*input 0 \('x'\) has shape \(\); "
                                         r"the input has shape \(3,\)"):
        _grad_of(op, x)


def test_a_gradient_that_would_need_summing_down_is_refused():
    x = gd.input("x", (2, 3), "float64")
    op = _square(lambda inputs, out, g: [gd.sum(g * 2.0 * inputs[0], axis=0)])
    with pytest.raises(GraphError, match=r"'square'.*\(3,\); the input has shape \(2, 3\).*"
                                         "not summed"):
        _grad_of(op, x)


def test_a_gradient_larger_than_its_input_is_refused():
    x = gd.input("x", (3,), "float64")
    w = gd.constant(np.ones((2, 3)))
    op = _square(lambda inputs, out, g: [g * 2.0 * inputs[0] * w])
    with pytest.raises(GraphError, match=r"has shape \(2, 3\); the input has shape \(3,\)"):
        _grad_of(op, x)


@pytest.mark.parametrize("count", [0, 2])
def test_the_wrong_number_of_gradients_is_refused(count):
    x = gd.input("x", (3,), "float64")
    op = _square(lambda inputs, out, g: [g * 2.0 * inputs[0]] * count)
    with pytest.raises(GraphError, match=f"'square'.*returned {count} gradients for 1 inputs"):
        _grad_of(op, x)


def test_a_gradient_of_another_dtype_is_refused():
    x = gd.input("x", (3,), "float32")
    op = _square(lambda inputs, out, g: [gd.cast(g * 2.0 * inputs[0], "float64")])
    with pytest.raises(GraphError, match=r"input 0 \('x'\) has dtype float64; "
                                         "the input has dtype float32"):
        _grad_of(op, x)


def test_what_is_not_a_list_of_nodes_is_refused():
    x = gd.input("x", (3,), "float64")
    with pytest.raises(GraphError, match="'square': the pullback must return a list"):
        _grad_of(_square(lambda inputs, out, g: g * 2.0 * inputs[0]), x)
    with pytest.raises(GraphError, match="input 0 .* is of type ndarray, not a graph node"):
        _grad_of(_square(lambda inputs, out, g: [np.ones(3)]), x)


def _scaled(pullback_for_counts):
    """x * k for integer counts k: k has no gradient."""
    def pullback(inputs, out, g):
        k = inputs[1]
        return [g * gd.cast(k, "float64"), pullback_for_counts(g)]
    return gd.custom_op("scaled", lambda x, k: x * gd.cast(k, "float64"), pullback)


def test_a_gradient_for_an_integer_input_is_refused():
    x, k = gd.input("x", (3,), "float64"), gd.input("k", (3,), "int64")
    op = _scaled(lambda g: g)
    with pytest.raises(GraphError, match=r"'scaled'.*input 1 \('k'\).*int64.*return None"):
        gd.grad(gd.sum(op(x, k)), x)


def test_none_for_a_non_differentiable_input_matches_torch_and_finite_differences(rng):
    x, k = gd.input("x", (3,), "float64"), gd.input("k", (3,), "int64")
    loss = gd.sum(gd.tanh(_scaled(lambda g: None)(x, k)))
    feeds = {"x": rng.standard_normal(3), "k": np.array([2, -1, 3])}
    got = gd.evaluate(gd.grad(loss, x), feeds)
    t = torch.tensor(feeds["x"], requires_grad=True)
    torch.tanh(t * torch.tensor(feeds["k"])).sum().backward()
    np.testing.assert_allclose(got, t.grad.numpy(), rtol=1e-9)
    (numeric,) = graph_numeric_grads(loss, feeds, ["x"])
    np.testing.assert_allclose(got, numeric, rtol=1e-6, atol=1e-9)


def test_unknown_dimensions_match_and_the_rule_still_runs(rng):
    x = gd.input("x", (None, 3), "float64")
    op = _square(lambda inputs, out, g: [g * 2.0 * inputs[0]])
    (d,) = _grad_of(op, x)
    xv = rng.standard_normal((5, 3))
    np.testing.assert_allclose(gd.evaluate(d, x=xv), 2 * xv)
