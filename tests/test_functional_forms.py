"""PyTorch's prelu, softmin, normalizations (normalize, instance_norm, local_response_norm,
rms_norm) and fold (col2im), composites of graphdl's ops, against torch.nn.functional: the value
and the first and second derivatives of Σ w·f(...)² with respect to every argument, in float64
and float32, on the interpreter, compiled NumPy and the CUDA backend's kernels on the CPU, with
no fallback to a reference implementation. Then the edges (prelu at 0), PyTorch's spellings, the
refusals and one gate per composite in a drawing."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
from graphdl.ops.composite import COMPOSITES
from tests.helpers import loss_weights, runner_params, twice_against_torch

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
    "normalize": (gd.normalize, F.normalize, [_normal((2, 4, 3), 13)]),
    "normalize(p=1, dim=-1)": (lambda x: gd.normalize(x, 1, -1), lambda t: F.normalize(t, 1, -1),
                               [_normal((3, 4), 14)]),
    "normalize(p=3, dim=(0, 2))": (lambda x: gd.normalize(x, 3.0, (0, 2)),
                                   lambda t: F.normalize(t, 3.0, (0, 2)), [_normal((2, 3, 4), 15)]),
    # rows of norm below eps = 1: divided by eps, the clamp passing no gradient
    "normalize(eps=1), clamped": (lambda x: gd.normalize(x, eps=1.0),
                                  lambda t: F.normalize(t, eps=1.0), [_normal((3, 2), 16) * 0.6]),
    "instance_norm": (lambda x, w, b: gd.instance_norm(x, weight=w, bias=b),
                      lambda x, w, b: F.instance_norm(x, weight=w, bias=b),
                      [_normal((2, 3, 5), 17) * 2 + 1, _slopes(3, 18) + 1, _normal(3, 19)]),
    "instance_norm, 2-d, no affine": (lambda x: gd.instance_norm(x, eps=0.1),
                                      lambda t: F.instance_norm(t, eps=0.1),
                                      [_normal((2, 2, 3, 2), 20)]),
    "instance_norm, 3-d, weight only": (lambda x, w: gd.instance_norm(x, weight=w),
                                        lambda x, w: F.instance_norm(x, weight=w),
                                        [_normal((1, 2, 2, 1, 3), 21), _slopes(2, 22)]),
    "local_response_norm(3)": (lambda x: gd.local_response_norm(x, 3, 0.5, 0.75, 1.0),
                               lambda t: F.local_response_norm(t, 3, 0.5, 0.75, 1.0),
                               [_normal((2, 5, 4), 23)]),
    "local_response_norm(2), 4-d": (lambda x: gd.local_response_norm(x, 2, 1.0, 0.6, 2.0),
                                    lambda t: F.local_response_norm(t, 2, 1.0, 0.6, 2.0),
                                    [_normal((1, 4, 3, 2), 24)]),
    "local_response_norm(5), 5-d, wider than C": (
        lambda x: gd.local_response_norm(x, 5, 2.0, 1.5, 1.0),
        lambda t: F.local_response_norm(t, 5, 2.0, 1.5, 1.0), [_normal((2, 3, 2, 1, 2), 25)]),
    "local_response_norm(1), defaults": (lambda x: gd.local_response_norm(x, 1),
                                         lambda t: F.local_response_norm(t, 1),
                                         [_normal((2, 3, 4), 26) * 10]),
    "rms_norm((4,))": (lambda x, w: gd.rms_norm(x, (4,), w), lambda x, w: F.rms_norm(x, (4,), w),
                       [_normal((2, 3, 4), 27), _slopes(4, 28) + 1]),
    "rms_norm((3, 4)), eps": (lambda x: gd.rms_norm(x, (3, 4), eps=0.5),
                              lambda t: F.rms_norm(t, (3, 4), eps=0.5),
                              [_normal((2, 3, 4), 29) * 0.5]),
    # blocks of 2×3 overlapping, strided, padded and dilated; one of 2×2 tiling, unbatched
    "fold((5, 7), (2, 3), dilation (1, 2), padding (1, 0), stride (2, 1))": (
        lambda x: gd.fold(x, (5, 7), (2, 3), (1, 2), (1, 0), (2, 1)),
        lambda t: F.fold(t, (5, 7), (2, 3), (1, 2), (1, 0), (2, 1)), [_normal((2, 18, 9), 30)]),
    "fold((4, 4), 2, stride 2), unbatched": (lambda x: gd.fold(x, (4, 4), 2, stride=2),
                                             lambda t: F.fold(t, (4, 4), 2, stride=2),
                                             [_normal((8, 4), 31)]),
}

@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("runner", runner_params())
def test_value_and_two_derivatives_equal_pytorchs(runner, dtype):
    problems = twice_against_torch(CASES, runner, dtype)
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


def test_normalize_of_a_zero_vector_is_zero_with_gradient_g_over_eps():
    """0 / eps, d/dx = g / eps (the clamp passes no gradient to the norm), as PyTorch's; the
    second derivative there is finite (x / eps is linear), where PyTorch's is NaN (its 2-norm's
    double backward at 0) for p = 2, and the finite one for p = 1."""
    x0 = np.array([[0.0, 0.0, 0.0], [0.6, -0.8, 0.0]])
    x = gd.input("x", x0.shape, "float64")
    got, want = {}, {}
    for p in (2.0, 1.0):
        y = gd.normalize(x, p, eps=0.5)
        (g,) = gd.grad(gd.sum(y * y * loss_weights(x0.shape, 1)), [x])
        got[p] = gd.evaluate([y, g, *gd.grad(gd.sum(g * loss_weights(x0.shape, 2)), [x])], x=x0)
        t = torch.tensor(x0, requires_grad=True)
        yt = F.normalize(t, p, eps=0.5)
        (gt,) = torch.autograd.grad((yt * yt * torch.tensor(loss_weights(x0.shape, 1))).sum(), t,
                                    create_graph=True)
        (ht,) = torch.autograd.grad((gt * torch.tensor(loss_weights(x0.shape, 2))).sum(), t)
        want[p] = [a.detach().numpy() for a in (yt, gt, ht)]
        for a, b in zip(got[p][:2], want[p][:2]):
            np.testing.assert_allclose(a, b, rtol=1e-14, atol=0)
    np.testing.assert_array_equal(got[2.0][0][0], 0.0)
    row = 2 * loss_weights(x0.shape, 1)[0] * loss_weights(x0.shape, 2)[0] / 0.25  # of Σ w1·(x/eps)²
    np.testing.assert_allclose(got[2.0][2][0], row, rtol=1e-14)
    np.testing.assert_allclose(got[1.0][2], want[1.0][2], rtol=1e-13)
    assert np.isnan(want[2.0][2][0]).all()


def test_local_response_norm_pads_the_channels_with_zeros():
    """With α/size = 1, β = 1, k = 0 the divisor of ones counts the window's channels that exist:
    PyTorch's window c − size//2 … c + (size−1)//2 (for an even size, one more before)."""
    x0 = np.ones((1, 4, 2))
    x = gd.input("x", x0.shape, "float64")
    for size, counts in ((3, [2, 3, 3, 2]), (2, [1, 2, 2, 2]), (6, [3, 4, 4, 4])):
        got = gd.evaluate(gd.local_response_norm(x, size, alpha=size, beta=1.0, k=0.0), x=x0)
        want = F.local_response_norm(torch.tensor(x0), size, size, 1.0, 0.0).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-15)
        np.testing.assert_allclose(got[0, :, 0], 1 / np.array(counts), rtol=1e-15)


def test_local_response_norm_of_an_unknown_batch_and_of_nothing():
    x = gd.input("x", (None, 3, 2, 2), "float32")
    y = gd.local_response_norm(x, 2, alpha=1.0)
    x0 = _normal((2, 3, 2, 2), 0).astype("float32")
    np.testing.assert_allclose(gd.evaluate(y, x=x0), F.local_response_norm(
        torch.tensor(x0), 2, alpha=1.0).numpy(), rtol=1e-6)
    empty = gd.input("e", (0, 3, 4), "float64")
    assert gd.local_response_norm(empty, 3) is empty  # PyTorch gives an empty input back


def test_rms_norm_eps_is_the_dtypes_machine_epsilon_by_default():
    x0 = np.array([[1e-4, -2e-4, 3e-4]])
    for dtype in ("float32", "float64"):
        x = gd.input("x", x0.shape, dtype)
        assert gd.rms_norm(x, 3) is gd.rms_norm(x, [3], eps=float(np.finfo(dtype).eps))
        want = F.rms_norm(torch.tensor(x0.astype(dtype)), (3,)).numpy()
        np.testing.assert_allclose(gd.evaluate(gd.rms_norm(x, 3), x=x0.astype(dtype)), want,
                                   rtol=2e-6 if dtype == "float32" else 1e-14)


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
    (lambda x: gd.normalize(x, dim=3), "normalize of 'x': axis 3 is out of range"),
    (lambda x: gd.normalize(x, eps="1"), "normalize: eps must be a number, got '1'"),
    (lambda x: gd.normalize(x, p="nuc"), "norm of 'x': p must be a number, inf, -inf or 'fro'"),
    (lambda x: gd.normalize(gd.cast(x, "int32")), "normalize expects floating-point input"),
    (lambda x: gd.instance_norm(x, np.zeros(3, "float32")),
     (r"instance_norm of 'x': running statistics \(running_mean, running_var, "
     r"use_input_stats=False\) are not supported; give weight= and bias= by name")),
    (lambda x: gd.instance_norm(x, use_input_stats=False), "gd.batch_norm"),
    (lambda x: gd.instance_norm(x[0]), r"instance_norm: .* has shape \(3, 5\), not \(N, C, L"),
    (lambda x: gd.instance_norm(x[..., :1]), (r"shape \(2, 3, 1\) has 1 value per channel; "
                                             "instance statistics need more than 1")),
    (lambda x: gd.instance_norm(x, weight=np.ones(5, "float32")),
     r"instance_norm: weight .* has shape \(5,\), not \(3,\)"),
    (lambda x: gd.local_response_norm(x, 0), ("local_response_norm of 'x': size must be an int "
                                             "of at least 1, got 0")),
    (lambda x: gd.local_response_norm(x, 2.0), "size must be an int of at least 1, got 2.0"),
    (lambda x: gd.local_response_norm(x[0], 2), r"has shape \(3, 5\), not \(N, C, L, ...\)"),
    (lambda x: gd.local_response_norm(x, 2, beta=float("nan")),
     "local_response_norm: beta must be a number"),
    (lambda x: gd.local_response_norm(gd.input("u", (2, None, 5), "float32"), 2),
     r"the channels and spatial sizes must be known at declaration, got shape \(2, \?, 5\)"),
    (lambda x: gd.rms_norm(x, (3,)), (r"rms_norm: 'x' has shape \(2, 3, 5\), whose last axes are "
                                     r"not normalized_shape \(3,\)")),
    (lambda x: gd.rms_norm(x, 5, np.ones(3, "float32")),
     r"rms_norm: weight .* has shape \(3,\), not \(5,\)"),
    (lambda x: gd.rms_norm(x, 5, eps=[1e-5]), r"rms_norm: eps must be a number"),
    (lambda x: gd.fold(x, (3, 3), 2), (r"fold of 'x': of shape \(2, 3, 5\), expected C·4 rows "
                                       r"\(kernel \(2, 2\)\) and 2·2 blocks")),
    (lambda x: gd.fold(x, (3, 5), (3, 1), stride=0), "fold of 'x': stride must be positive"),
    (lambda x: gd.fold(x, (3, 5), (3, 1), padding=-1), "fold of 'x': padding must be non-negative"),
])
def test_bad_arguments_are_refused_naming_the_input(call, message):
    with pytest.raises(gd.GraphError, match=message):
        call(gd.input("x", (2, 3, 5), "float32"))


@pytest.mark.parametrize(("name", "build"), [
    ("prelu", lambda x: gd.prelu(x, np.full(3, 0.25))),
    ("softmin", lambda x: gd.softmin(x, dim=1)),
    ("normalize", lambda x: gd.normalize(x, 1.5, dim=(1, 2))),
    ("instance_norm", lambda x: gd.instance_norm(x, weight=np.full(3, 2.0))),
    ("local_response_norm", lambda x: gd.local_response_norm(x, 2, alpha=1.0)),
    ("rms_norm", lambda x: gd.rms_norm(x, (3, 4), np.ones((3, 4)))),
    ("fold", lambda x: gd.fold(x, (3, 4), (3, 1))),
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
