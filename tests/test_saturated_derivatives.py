"""First and second derivatives of the smooth activations in their saturated tails (|x| from 20
to 1,000), float32 and float64, interpreted and compiled for both backends, against the true
values (mpmath at 50 digits) and PyTorch float64.

Finite is not enough: log_sigmoid''(-50) is -1.9e-22, and a float32 result of 0.017 (a
cancellation amplified by e^50) is as wrong as a NaN. Everything is checked to relative
precision down to the smallest normal float, except the tanh primitive (an imported ONNX Tanh),
whose rule 1 - tanh² (PyTorch's) is accurate to float epsilon in absolute terms only.
"""

from __future__ import annotations

import shutil

import mpmath
import numpy as np
import pytest
import torch

import graphdl as gd
from graphdl.ops import elementwise as ew

POINTS = np.array([s * p for p in (20, 50, 88, 100, 300, 710, 1000) for s in (-1, 1)], float)
T = 0.3  # the target of the binary cross-entropy


def _sigma(x):
    return 1 / (1 + mpmath.exp(-x))


def _tanh_d2(x):
    return -2 * mpmath.tanh(x) * mpmath.sech(x) ** 2


# name: (graph builder, f', f'' as mpmath functions, PyTorch form, absolute tolerance in eps)
CASES = {
    "sigmoid": (gd.sigmoid, lambda x: _sigma(x) * _sigma(-x),
                lambda x: _sigma(x) * _sigma(-x) * (1 - 2 * _sigma(x)), torch.sigmoid, 0),
    "hand-written sigmoid": (lambda x: gd.exp(x) / (1 + gd.exp(x)),
                             lambda x: _sigma(x) * _sigma(-x),
                             lambda x: _sigma(x) * _sigma(-x) * (1 - 2 * _sigma(x)),
                             torch.sigmoid, 0),
    "sigmoid primitive": (ew.SIGMOID, lambda x: _sigma(x) * _sigma(-x),
                          lambda x: _sigma(x) * _sigma(-x) * (1 - 2 * _sigma(x)),
                          torch.sigmoid, 0),
    "softplus primitive": (ew.SOFTPLUS, _sigma, lambda x: _sigma(x) * _sigma(-x),
                           lambda t: -torch.nn.functional.logsigmoid(-t), 0),
    "softplus": (gd.softplus, _sigma, lambda x: _sigma(x) * _sigma(-x),
                 lambda t: -torch.nn.functional.logsigmoid(-t), 0),  # logaddexp's d'' is NaN
    "log_sigmoid": (gd.log_sigmoid, lambda x: _sigma(-x), lambda x: -_sigma(x) * _sigma(-x),
                    torch.nn.functional.logsigmoid, 0),
    "binary_cross_entropy_with_logits": (
        lambda x: gd.binary_cross_entropy_with_logits(
            x, gd.constant(np.full(x.shape, T, x.dtype)), reduction="none"),
        lambda x: _sigma(x) - T, lambda x: _sigma(x) * _sigma(-x),
        lambda t: torch.nn.functional.binary_cross_entropy_with_logits(
            t, torch.full_like(t, T), reduction="none"), 0),
    "tanh": (gd.tanh, lambda x: mpmath.sech(x) ** 2, _tanh_d2, torch.tanh, 0),
    "tanh primitive": (ew.TANH, lambda x: mpmath.sech(x) ** 2, _tanh_d2, torch.tanh, 4),
}


def derivatives(x):
    """[f'(x), f''(x)] for every case, elementwise (one graph: one compilation per backend)."""
    outs = []
    for build, *_ in CASES.values():
        d1 = gd.grad(gd.sum(build(x)), x)
        outs += [d1, gd.grad(gd.sum(d1), x)]
    return outs


def _cuda_cpu(outs, x):
    if shutil.which("g++") is None:
        pytest.skip("device='cpu' compiles CUDA kernels with g++")
    return gd.compile(outs, backend="cuda", device="cpu")(x=x)


RUNNERS = {
    "interpreted": lambda outs, x: gd.evaluate(outs, x=x),
    "numpy": lambda outs, x: gd.compile(outs)(x=x),
    "numpy unoptimized": lambda outs, x: gd.compile(outs, optimize=False)(x=x),
    "cuda on the cpu": _cuda_cpu,
}


def _true(f, dtype):
    with mpmath.workdps(50):
        return np.array([float(f(mpmath.mpf(p))) for p in POINTS]).astype(dtype)


@pytest.fixture(scope="module", params=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.mark.parametrize("runner", RUNNERS)
def test_saturated_derivatives_are_accurate(runner, dtype):
    x = gd.input("x", POINTS.shape, dtype)
    got = RUNNERS[runner](derivatives(x), POINTS.astype(dtype))
    info = np.finfo(dtype)
    rtol = 1e-5 if dtype == "float32" else 1e-12
    failures = []
    for i, (name, (_, d1, d2, _, eps_abs)) in enumerate(CASES.items()):
        for order, f in ((1, d1), (2, d2)):
            value, want = got[2 * i + order - 1], _true(f, dtype)
            atol = max(eps_abs * float(info.eps), 4 * float(info.tiny))
            bad = ~(np.abs(value.astype(float) - want) <= rtol * np.abs(want) + atol)
            failures += [f"{name}{chr(39) * order}({p:g}) = {v:.4g}, true {w:.4g}"
                         for p, v, w in zip(POINTS[bad], value[bad], want[bad])]
    assert not failures, "\n".join(failures)


def test_saturated_derivatives_match_pytorch_float64():
    x = gd.input("x", POINTS.shape, "float64")
    got = gd.compile(derivatives(x))(x=POINTS)
    for i, (name, (*_, torch_fn, _)) in enumerate(CASES.items()):
        t = torch.tensor(POINTS, requires_grad=True)
        (d1,) = torch.autograd.grad(torch_fn(t).sum(), t, create_graph=True)
        (d2,) = torch.autograd.grad(d1.sum(), t)
        for order, want in ((1, d1.detach().numpy()), (2, d2.numpy())):
            np.testing.assert_allclose(got[2 * i + order - 1], want, rtol=1e-9, atol=1e-15,
                                       err_msg=f"{name}, derivative {order}")


def test_second_derivative_of_log_sigmoid_keeps_its_tail_in_float32():
    """The issue's example: log_sigmoid''(-50) in float32 came out 0.017 (true -1.9e-22)."""
    x = gd.input("x", (), "float32")
    (d1,) = gd.grad(gd.log_sigmoid(x), [x])
    (d2,) = gd.grad(d1, [x])
    for got in (gd.evaluate(d2, x=-50.0), gd.compile(d2)(x=-50.0)):
        np.testing.assert_allclose(got, -1.9287498e-22, rtol=1e-5)


def test_optimizing_keeps_the_stabilized_derivatives_bit_for_bit(dtype):
    x = gd.input("x", POINTS.shape, dtype)
    outs = derivatives(x)
    points = POINTS.astype(dtype)
    for a, b in zip(gd.compile(outs)(x=points), gd.compile(outs, optimize=False)(x=points)):
        assert np.array_equal(a, b, equal_nan=True)


COMPOSED = {"sigmoid": (gd.sigmoid, torch.sigmoid), "tanh": (gd.tanh, torch.tanh),
            "log_sigmoid": (gd.log_sigmoid, torch.nn.functional.logsigmoid),
            "softplus": (gd.softplus, lambda t: -torch.nn.functional.logsigmoid(-t)),
            "swish": (lambda x: x * gd.sigmoid(x), lambda t: t * torch.sigmoid(t)),
            "hand-written sigmoid": (lambda x: gd.exp(x) / (1 + gd.exp(x)), torch.sigmoid)}


def test_composed_activations_with_weighted_gradients(dtype):
    """f(3·g(x) - 1)·y for every pair: the upstream gradient is no longer 1, the second
    derivative differentiates the first through both circuits, and nothing may overflow where
    PyTorch float64 is finite."""
    x, y = gd.input("x", POINTS.shape, dtype), gd.input("y", POINTS.shape, dtype)
    weights = np.linspace(-1, 2, POINTS.size)
    pairs = [(f, g) for f in COMPOSED.values() for g in COMPOSED.values()]
    outs = []
    for (f, _), (g, _) in pairs:
        d1 = gd.grad(gd.sum(f(g(x) * 3 - 1) * y), x)
        outs += [d1, gd.grad(gd.sum(d1 * y), x)]
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        got = gd.compile(outs)(x=POINTS.astype(dtype), y=weights.astype(dtype))
    tol = 1e-4 if dtype == "float32" else 1e-9
    t, w = torch.tensor(POINTS, requires_grad=True), torch.tensor(weights)
    for i, ((_, f), (_, g)) in enumerate(pairs):
        (d1,) = torch.autograd.grad((f(g(t) * 3 - 1) * w).sum(), t, create_graph=True)
        (d2,) = torch.autograd.grad((d1 * w).sum(), t)
        for value, want in zip(got[2 * i:2 * i + 2], (d1.detach().numpy(), d2.numpy())):
            finite = np.isfinite(want)
            np.testing.assert_allclose(value[finite], want[finite], rtol=tol, atol=tol,
                                       err_msg=f"pair {i}")


def test_an_unknown_length_compiles_as_a_known_one(dtype):
    """Autodiff sums a gradient back to its input's shape wherever that shape is unknown; once
    the shape is fed those sums are identities, and they must not hide e^-x from the σ that
    cancels it (the binary cross-entropy's gradient over a batch of None overflowed at -300)."""

    def outputs(shape):
        x, t = gd.input("x", shape, dtype), gd.input("t", shape, dtype)
        d1 = gd.grad(gd.binary_cross_entropy_with_logits(x, t), x)
        outs = [d1, gd.grad(gd.sum(d1), x)]
        for name, (build, *_) in CASES.items():
            if name != "binary_cross_entropy_with_logits":  # its case builds a constant target
                d1 = gd.grad(gd.sum(build(x)), x)
                outs += [d1, gd.grad(gd.sum(d1), x)]
        return outs

    feeds = {"x": POINTS.astype(dtype), "t": np.full(POINTS.shape, T, dtype)}
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        for optimize in (True, False):
            unknown = gd.compile(outputs((None,)), optimize=optimize)(**feeds)
            known = gd.compile(outputs(POINTS.shape), optimize=optimize)(**feeds)
            for i, (a, b) in enumerate(zip(unknown, known)):
                assert np.array_equal(a, b), (optimize, i, a, b)
