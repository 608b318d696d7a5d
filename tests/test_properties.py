"""Property-based tests over random graphs (see `tests/strategies.py`)."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given, settings

import graphdl as gd
from graphdl.ops import elementwise as ew
from graphdl.ops import leaf
from graphdl.ops import reduce as rd

from .helpers import graph_numeric_grads, moderate
from .strategies import compiled_vs_interpreter_outputs, random_graph

KINKS = {ew.RELU, ew.MAXIMUM, ew.MINIMUM, ew.GREATER}  # greater: where's condition
EXTREMA = {rd.MAX, rd.MIN}


def _away_from_kinks(case, margin=1e-4):
    """No relu input at 0, no tie in maximum/minimum/where, no tie for a max/min reduction's
    extremum: there finite differences see a one-sided slope (or the average of two) that no
    gradient rule should be asked to match."""
    kinked = [n for n in gd.topological_order([case.output]) if n.op in KINKS | EXTREMA]
    if not kinked:
        return True
    operands = [inp for n in kinked for inp in n.inputs]
    used = {n.name for n in gd.topological_order(operands) if n.op is leaf.INPUT}
    values = gd.evaluate(operands, {k: v for k, v in case.feeds.items() if k in used})
    for n in kinked:
        k = len(n.inputs)
        args, values = values[:k], values[k:]
        if n.op in EXTREMA:  # exactly one element within the margin of each extremum
            axes = n.attrs["axes"]
            extremum = np.max(args[0], axis=axes, keepdims=True) if n.op is rd.MAX \
                else np.min(args[0], axis=axes, keepdims=True)
            near = np.sum(np.abs(args[0] - extremum) <= margin, axis=axes)
            if np.any(near > 1):
                return False
        elif not np.all((np.abs(args[0]) if k == 1 else np.abs(args[0] - args[1])) > margin):
            return False
    return True


@given(random_graph())
def test_grad_matches_finite_differences(case):
    y = case.output
    assert y.shape == () and y.dtype == np.float64
    grads = gd.grad(y, case.inputs)
    values = gd.evaluate([y, *grads, *case.nodes], case.feeds)
    assume(moderate(values) and _away_from_kinks(case))
    numeric = graph_numeric_grads(y, case.feeds, case.names)
    for name, got, expected in zip(case.names, values[1 : 1 + len(grads)], numeric, strict=True):
        assert got.shape == case.feeds[name].shape
        scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6 * scale,
                                   err_msg=f"d/d{name} of {case!r}")


@settings(max_examples=40)
@given(random_graph())
def test_declared_shapes_and_dtypes_match_evaluation(case):
    nodes = [case.output, *case.nodes]
    for node, value in zip(nodes, gd.evaluate(nodes, case.feeds), strict=True):
        assert value.shape == node.shape, (node, case)
        assert value.dtype == node.dtype, (node, case)


@settings(max_examples=25)
@given(random_graph())
def test_check_grad_passes_on_correct_rules(case):
    values = gd.evaluate([case.output, *case.nodes], case.feeds)
    assume(moderate(values) and _away_from_kinks(case))
    result = gd.check_grad(case.output, case.feeds)
    assert result.ok, f"{result}\n{case!r}"


@settings(max_examples=25)
@given(random_graph(dtype="float32"))
def test_float32_graphs_stay_float32(case):
    assert case.output.dtype == np.float32
    grads = gd.grad(case.output, case.inputs)
    assert [g.dtype for g in grads] == [np.dtype("float32")] * len(grads)
    values = gd.evaluate([case.output, *grads], case.feeds)
    assert all(v.dtype == np.float32 for v in values)


@settings(max_examples=40)
@given(random_graph())
def test_compiled_numpy_matches_interpreter(case):
    outs = compiled_vs_interpreter_outputs(case)
    with np.errstate(all="ignore"):
        expected = gd.evaluate(outs, case.feeds)
        got = gd.compile(outs)(case.feeds)
    assume(moderate(expected))
    for node, g, e in zip(outs, got, expected, strict=True):
        assert g.shape == e.shape and g.dtype == e.dtype, (node, case)
        np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-12, err_msg=f"{node!r} of {case!r}")


@settings(max_examples=25)
@given(random_graph())
def test_optimizer_never_changes_compiled_results(case):
    outs = compiled_vs_interpreter_outputs(case)
    with np.errstate(all="ignore"):
        optimized = gd.compile(outs, optimize=True)(case.feeds)
        plain = gd.compile(outs, optimize=False)(case.feeds)
    for a, b in zip(optimized, plain, strict=True):  # sums may add in another order
        assert a.shape == b.shape and a.dtype == b.dtype, case
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=repr(case))


@settings(max_examples=25)
@given(random_graph())
def test_debug_mode_statements_have_declared_shapes_and_dtypes(case):
    """In debug mode every node is a statement whose shape and dtype are checked against the
    graph's (a fused region must never compute fewer elements, or another dtype, than it
    declares); the fused program's outputs are checked the same way on every call."""
    outs = compiled_vs_interpreter_outputs(case)
    with np.errstate(all="ignore"):
        expected = gd.evaluate(outs, case.feeds)
    assume(moderate(expected))
    with np.errstate(all="ignore"):
        got = gd.compile(outs, debug=True)(case.feeds)
    for node, g, e in zip(outs, got, expected, strict=True):
        assert g.shape == node.shape and g.dtype == node.dtype, (node, case)
        np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-12, err_msg=f"{node!r} of {case!r}")
