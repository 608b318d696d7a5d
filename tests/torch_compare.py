"""Value, gradient and second derivative of graphdl functions against PyTorch's autograd, all
cases in one graph run the `runner` way (tests/helpers.py), with no fallback to a reference.

A case is (graphdl f, PyTorch f, float operands' shapes, integer operands): f takes the float
operands (input nodes, or tensors that require grad) and the integer ones as keywords (input
nodes fed the arrays, or int64 tensors). The loss is sum(y * y * w1); its gradients g_k, then
the gradients of sum_k sum(g_k * w_k), are compared with PyTorch's in float64.
"""

from __future__ import annotations

import warnings

import numpy as np

import graphdl as gd
from graphdl.facets import FallbackWarning
from tests.helpers import mismatches, onnxruntime_run, run_on

TOLERANCE = {"float64": (1e-10, 1e-12), "float32": (1e-4, 1e-5)}


def data(seed, shape, dtype):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def graph(k, case, dtype):
    """The case's outputs (value, gradients, second derivatives) and their feeds."""
    f, _, shapes, ints = case
    xs = [gd.input(f"x{k}_{j}", s, dtype) for j, s in enumerate(shapes)]
    named = {n: gd.input(f"{n}{k}", v.shape, v.dtype.name) for n, v in ints.items()}
    y = f(*xs, **named)
    gs = gd.grad(gd.sum(y * y * gd.constant(data(1, y.shape, dtype))), xs)
    second = sum(gd.sum(g * gd.constant(data(2 + j, s, dtype)))
                 for j, (g, s) in enumerate(zip(gs, shapes)))
    hs = gd.grad(second, xs)
    feeds = {x.name: data(10 * k + j, x.shape, dtype) for j, x in enumerate(xs)}
    feeds.update({named[n].name: v for n, v in ints.items()})
    return [y, *gs, *hs], feeds


def _reference(case, feeds, k, dtype):
    torch = __import__("torch")
    _, f, shapes, ints = case
    xs = [torch.tensor(feeds[f"x{k}_{j}"], dtype=torch.float64, requires_grad=True)
          for j in range(len(shapes))]
    y = f(*xs, **{n: torch.as_tensor(v).long() for n, v in ints.items()})
    w1 = torch.as_tensor(data(1, tuple(y.shape), dtype)).double()
    gs = torch.autograd.grad((y * y * w1).sum(), xs, create_graph=True)
    second = sum((g * torch.as_tensor(data(2 + j, s, dtype)).double()).sum()
                 for j, (g, s) in enumerate(zip(gs, shapes)))
    hs = torch.autograd.grad(second, xs, allow_unused=True) if second.requires_grad else (
        [None] * len(xs))
    hs = [torch.zeros_like(x) if h is None else h for x, h in zip(xs, hs)]
    return [t.detach().numpy() for t in (y, *gs, *hs)]


def problems(cases, runner, dtype):
    """How graphdl's values differ from PyTorch's, one line per difference."""
    built = {name: graph(k, case, dtype) for k, (name, case) in enumerate(cases.items())}
    feeds = {n: v for _, fs in built.values() for n, v in fs.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)  # every part has its backend's kernel
        values = run_on(runner, [o for outs, _ in built.values() for o in outs], feeds)
    rtol, atol = TOLERANCE[dtype]
    found, at = [], 0
    for k, (name, (outs, _)) in enumerate(built.items()):
        got, at = values[at:at + len(outs)], at + len(outs)
        want = _reference(cases[name], feeds, k, dtype)
        n = len(cases[name][2])
        labels = ["value"] + [f"d{j}" for j in range(n)] + [f"dd{j}" for j in range(n)]
        found += mismatches(name, labels, got, want, dtype, rtol, atol)
    return found


def assert_exported_agrees(case):
    """The case's graph (value, gradients, second derivatives) exported to ONNX: onnxruntime
    computes what graphdl computes, in float32."""
    nodes, feeds = graph(0, case, "float32")
    want = gd.evaluate(nodes, feeds)
    got = onnxruntime_run(gd.onnx.save(nodes).SerializeToString(), feeds)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
