"""PyTorch's prelu, softmin and normalizations (normalize, instance_norm, local_response_norm,
rms_norm), composites of graphdl's ops, against torch.nn.functional: the value and the first and
second derivatives of Σ w·f(...)² with respect to every argument, in float64 and float32, on
the interpreter, compiled NumPy and the CUDA backend's kernels on the CPU, with no fallback to
a reference implementation. Then the edges (prelu at 0), PyTorch's spellings, the refusals and
one gate per composite in a drawing."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import graphdl as gd
from graphdl.facets import FallbackWarning
from graphdl.ops.composite import COMPOSITES
from tests.helpers import mismatches, run_on, runner_params

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _normal(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


def _slopes(shape, seed):
    return np.random.default_rng(seed).uniform(-0.5, 0.5, shape)


# name -> (graphdl, PyTorch, the arguments' float64 values, each differentiated)
CASES = {
    "prelu, a slope per channel": (gd.prelu, F.prelu, [_normal((2, 3, 4), 0), _slopes(3, 1)]),
    "prelu, one slope (1,)": (gd.prelu, F.prelu, [_normal((2, 3, 2, 2), 2), _slopes(1, 3)]),
    "prelu, 0-d slope": (gd.prelu, F.prelu, [_normal((3, 2), 4), _slopes((), 5)]),
    "prelu, 1-d x": (gd.prelu, F.prelu, [_normal(5, 6), _slopes(1, 7)]),
    "prelu, 0-d x": (gd.prelu, F.prelu, [_normal((), 8), _slopes(1, 9)]),
    "softmin": (gd.softmin, lambda t: F.softmin(t, -1), [_normal((2, 5), 10)]),
    "softmin(dim=0)": (lambda x: gd.softmin(x, dim=0), lambda t: F.softmin(t, 0),
                       [_normal((4, 3), 11)]),
    "softmin(axis=1), 3-d": (lambda x: gd.softmin(x, axis=1), lambda t: F.softmin(t, 1),
                             [_normal((2, 3, 4), 12) * 3]),
}

# float64: to the last digits; float32: its rounding of every step, against float64
TOLERANCE = {"float64": (1e-10, 1e-12), "float32": (2e-4, 2e-5)}


def _weights(shape, seed):
    return np.round(np.random.default_rng(seed).uniform(0.5, 1.5, shape), 3).reshape(shape)


def _reference(name):
    """PyTorch float64: f, and the gradients of Σ w1·f² and of Σ w2·(those gradients)."""
    _, fn, arrays = CASES[name]
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    y = fn(*ts)
    w1 = torch.tensor(_weights(tuple(y.shape), 1))
    gs = torch.autograd.grad((w1 * y * y).sum(), ts, create_graph=True)
    total = sum((torch.tensor(_weights(np.shape(a), 2 + k)) * g).sum() for k, (a, g) in
                enumerate(zip(arrays, gs)))
    hs = torch.autograd.grad(total, ts)
    return [y.detach().numpy(), *(g.detach().numpy() for g in gs), *(h.numpy() for h in hs)]


def _graph(name, dtype):
    """(inputs, [f, its gradients, their gradients]), as `_reference` computes them."""
    fn, _, arrays = CASES[name]
    case = list(CASES).index(name)
    xs = [gd.input(f"a{case}_{k}", np.shape(a), dtype) for k, a in enumerate(arrays)]
    y = fn(*xs)
    w1 = gd.constant(_weights(y.shape, 1).astype(dtype))
    gs = gd.grad(gd.sum(w1 * y * y), xs)
    total = sum(gd.sum(gd.constant(_weights(np.shape(a), 2 + k).astype(dtype)) * g)
                for k, (a, g) in enumerate(zip(arrays, gs)))
    return xs, [y, *gs, *gd.grad(total, xs)]


def _labels(name):
    n = len(CASES[name][2])
    return ["value", *(f"d/d arg {k}" for k in range(n)), *(f"d²/d arg {k}" for k in range(n))]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("runner", runner_params())
def test_value_and_two_derivatives_equal_pytorchs(runner, dtype):
    """Every case in one graph (one compilation per backend and dtype)."""
    graphs = {name: _graph(name, dtype) for name in CASES}
    outputs = [node for _, nodes in graphs.values() for node in nodes]
    feeds = {x.name: np.asarray(a, dtype) for name, (xs, _) in graphs.items()
             for x, a in zip(xs, CASES[name][2])}
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)  # every part has its backend's kernel
        values = run_on(runner, outputs, feeds)
    rtol, atol = TOLERANCE[dtype]
    problems, start = [], 0
    for name, (_, nodes) in graphs.items():
        got, start = values[start:start + len(nodes)], start + len(nodes)
        for label, a, b in zip(_labels(name), got, _reference(name)):
            scale = max(1.0, float(np.abs(b).max(initial=0)))
            problems += mismatches(name, [label], [a], [b.astype(dtype)], dtype, rtol,
                                   atol * scale)
    assert not problems, "\n".join(problems)


def test_prelu_at_zero_takes_the_slope_and_differentiates_it_again():
    """At x = 0, PyTorch's value and gradient: d/dx = weight, and x adds nothing to d/dweight.
    The second derivative there is that gradient's own (d/dweight of d/dx = 1); PyTorch's double
    backward takes the side x ≥ 0 there instead (d/dx of its gradient as if slope 1, and 0 for
    d/dweight), which is not the derivative of its own first derivative."""
    x0, w0 = np.array([[-2.0, 0.0, 3.0, 0.0]]), np.array(0.25)
    x, w = gd.input("x", x0.shape, "float64"), gd.input("w", (), "float64")
    y = gd.prelu(x, w)
    dx, dw = gd.grad(gd.sum(y), [x, w])
    got = gd.evaluate([y, dx, dw, *gd.grad(gd.sum(dx), [x, w])], x=x0, w=w0)
    xt, wt = torch.tensor(x0, requires_grad=True), torch.tensor(w0, requires_grad=True)
    yt = F.prelu(xt, wt)
    want = [yt.detach(), *torch.autograd.grad(yt.sum(), [xt, wt])]
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b.numpy())
    np.testing.assert_array_equal(got[3], 0.0)  # piecewise linear in x
    assert got[4] == 3.0  # the three x ≤ 0; PyTorch's double backward counts only x < 0


def test_softmin_takes_axis_or_dim():
    x = gd.input("x", (3, 4), "float32")
    assert gd.softmin(x, dim=0) is gd.softmin(x, axis=0) is gd.softmin(x, -2)
    assert gd.softmin(x) is gd.softmin(x, axis=1) and gd.softmin(x).name == "softmin"


@pytest.mark.parametrize(("call", "message"), [
    (lambda x: gd.prelu(x, np.ones(4, "float32")),
     r"prelu: weight .* has shape \(4,\); 'x' of shape \(2, 3, 5\) takes one slope or 3 "),
    (lambda x: gd.prelu(x, np.ones((1, 3), "float32")), r"weight .* has shape \(1, 3\)"),
    (lambda x: gd.prelu(x[0, 0], np.ones(5, "float32")), "takes one slope or 1 "),
    (lambda x: gd.prelu(x, np.ones(3)), "has dtype float64, not the dtype of 'x', float32"),
    (lambda x: gd.prelu(gd.cast(x, "int32"), 0.5), "prelu expects floating-point input"),
    (lambda x: gd.softmin(x, axis=0, dim=0), "softmin of 'x': give axis or dim, not both"),
    (lambda x: gd.softmin(x, 3), "softmin of 'x': axis 3 is out of range for 3 dimensions"),
    (lambda x: gd.softmin(x, (0, 1)), r"softmin of 'x': axis must be an int, got \(0, 1\)"),
    (lambda x: gd.softmin(gd.cast(x, "int64")), "softmin expects floating-point input"),
])
def test_bad_arguments_are_refused_naming_the_input(call, message):
    with pytest.raises(gd.GraphError, match=message):
        call(gd.input("x", (2, 3, 5), "float32"))


@pytest.mark.parametrize(("name", "build"), [
    ("prelu", lambda x: gd.prelu(x, np.full(3, 0.25))),
    ("softmin", lambda x: gd.softmin(x, dim=1)),
])
def test_each_is_drawn_as_one_gate(name, build):
    x = gd.input("x", (2, 3, 4), "float64")
    y = gd.sum(build(x) * 2.0)
    values = {"x": _normal((2, 3, 4), 0)}
    gates = [g for g in gd.draw(y, values, collapse=[name]).circuit.gates if g.kind != "input"]
    assert [g.label for g in gates if g.kind == "region"] == [COMPOSITES[name].symbol]
    assert not [g for g in gates if g.kind == "op" and g.node.op.name in ("exp", "where")]
    step = next(s for s in gd.explain(y, values, collapse=name).steps
                if s.gate is not None and s.gate.kind == "region")
    assert all(COMPOSITES[name].rule in t.rule for t in step.terms)
