"""First and second derivatives of the smooth activations in their saturated tails (|x| from 20
to 1,000), float32 and float64, interpreted and compiled for both backends, against the true
values (mpmath at 50 digits) and PyTorch float64.

Finite is not enough: log_sigmoid''(-50) is -1.9e-22, and a float32 result of 0.017 (a
cancellation amplified by e^50) is as wrong as a NaN. The σ family is checked to relative
precision down to the smallest normal float; tanh's rule 1 - tanh² (PyTorch's, and the
primitive's) is accurate to float epsilon in absolute terms only.
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
