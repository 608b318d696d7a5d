"""The localization losses and their pieces (issue 11): `gd.abs`, `gd.clip`, `gd.smooth_l1` and
`gd.binary_cross_entropy_with_logits`, against PyTorch's values and gradients (float64 and
float32, every reduction), by finite differences, and their refusals at declaration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import graphdl as gd

F = torch.nn.functional
REDUCTIONS = ("mean", "sum", "none")


def _weights(shape):
    """Distinct output weights, so that every element's gradient is checked."""
    return np.linspace(-1.0, 2.0, int(np.prod(shape))).reshape(shape)


def value_and_grads(build, feeds, dtype="float64"):
    """`build(*inputs)`'s value and the gradients of its weighted sum with respect to every
    input, compiled and interpreted (both must agree)."""
    nodes = [gd.input(name, v.shape, dtype) for name, v in feeds.items()]
    out = build(*nodes)
    weights = gd.constant(_weights(out.shape).astype(dtype))
    outputs = [out, *gd.grad(gd.sum(out * weights), nodes)]
    compiled = gd.compile(outputs)(feeds)
    interpreted = gd.evaluate(outputs, feeds)
    for c, i in zip(compiled, interpreted, strict=True):
        np.testing.assert_allclose(c, i, rtol=1e-6 if dtype == "float32" else 1e-13, atol=0)
    return compiled


def torch_value_and_grads(fn, feeds, dtype=torch.float64):
    tensors = [torch.tensor(v, dtype=dtype, requires_grad=True) for v in feeds.values()]
    out = fn(*tensors)
    (out * torch.from_numpy(_weights(tuple(out.shape))).to(dtype)).sum().backward()
    return [out.detach().numpy(), *(t.grad.numpy() for t in tensors)]


def assert_like_torch(got, want, rtol):
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * 1e-2)


def box_feeds(rng, dtype=np.float64):
    """Predicted and target boxes with differences inside and outside beta, exact ties at the
    kink |d| = beta and a zero difference."""
    pred = rng.standard_normal((5, 4)) * 2
    target = pred - rng.choice([-3.0, -1.0, -0.5, 0.0, 0.25, 1.0, 2.5], (5, 4))
    return {"pred": pred.astype(dtype), "target": target.astype(dtype)}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("beta", [1.0, 0.5, 2.5])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_smooth_l1_matches_torch_values_and_gradients(reduction, beta, dtype, rng):
    feeds = box_feeds(rng, np.dtype(dtype))
    got = value_and_grads(lambda p, t: gd.smooth_l1(p, t, beta=beta, reduction=reduction),
                          feeds, dtype)
    want = torch_value_and_grads(
        lambda p, t: F.smooth_l1_loss(p, t, beta=beta, reduction=reduction), feeds,
        getattr(torch, dtype))
    assert_like_torch(got, want, 1e-12 if dtype == "float64" else 1e-6)
    assert got[0].dtype == np.dtype(dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("pos_weight", [None, "scalar", "per-class"])
def test_bce_with_logits_matches_torch_values_and_gradients(reduction, pos_weight, rng):
    logits = rng.standard_normal((6, 3)) * 4
    targets = rng.uniform(0, 1, (6, 3))
    targets[0] = [0.0, 1.0, 0.5]
    weight = {None: None, "scalar": 2.5, "per-class": np.array([0.5, 1.0, 3.0])}[pos_weight]
    got = value_and_grads(
        lambda x, t: gd.binary_cross_entropy_with_logits(x, t, pos_weight=weight,
                                                         reduction=reduction),
        {"x": logits, "t": targets})
    torch_weight = None if weight is None else torch.as_tensor(weight, dtype=torch.float64)
    want = torch_value_and_grads(
        lambda x, t: F.binary_cross_entropy_with_logits(x, t, pos_weight=torch_weight,
                                                        reduction=reduction),
        {"x": logits, "t": targets})
    assert_like_torch(got, want, 1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bce_with_logits_is_finite_and_exact_for_large_logits(dtype):
    """log(1 + e^-x) overflows at x = -100 in float32 and e^100 in float64 if computed as
    written; PyTorch's values and gradients hold there, and so must graphdl's."""
    logits = np.array([-1e4, -100.0, -30.0, 30.0, 100.0, 1e4, -1e30, 1e30], dtype=dtype)
    targets = np.array([0.0, 1.0, 0.3, 1.0, 0.0, 0.7, 0.0, 1.0], dtype=dtype)
    feeds = {"x": logits, "t": targets}
    got = value_and_grads(
        lambda x, t: gd.binary_cross_entropy_with_logits(x, t, reduction="none"), feeds, dtype)
    want = torch_value_and_grads(
        lambda x, t: F.binary_cross_entropy_with_logits(x, t, reduction="none"), feeds,
        getattr(torch, dtype))
    assert all(np.all(np.isfinite(g)) for g in got)
    assert_like_torch(got, want, 1e-6 if dtype == "float32" else 1e-12)


def test_abs_gradient_is_sign_with_zero_at_zero_and_nan_as_torch():
    values = np.array([-2.0, -0.0, 0.0, 1e-300, 3.0, -np.inf, np.inf, np.nan])
    with np.errstate(invalid="ignore"):
        got = value_and_grads(gd.abs, {"x": values})
    want = torch_value_and_grads(torch.abs, {"x": values})
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[1], _weights(values.shape) * [-1, 0, 0, 1, 1, -1, 1, 0])


@pytest.mark.parametrize(("lo", "hi"), [(-0.5, 1.0), (0.0, None), (None, 0.5), (1.0, 1.0)])
def test_clip_gradient_at_the_bounds_and_nan_is_torch_clamp(lo, hi):
    """torch.clamp passes the whole gradient at x = lo or hi exactly (maximum/minimum would
    split it), none outside and none at NaN."""
    values = np.array([-2.0, -0.5, -0.25, 0.0, 0.5, 1.0, 3.0, -np.inf, np.inf, np.nan])
    with np.errstate(invalid="ignore"):
        got = value_and_grads(lambda x: gd.clip(x, lo, hi), {"x": values})
    want = torch_value_and_grads(lambda t: torch.clamp(t, lo, hi), {"x": values})
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_clip_float32_keeps_its_dtype_and_takes_bounds_in_it():
    x = gd.input("x", (3,), "float32")
    y = gd.clip(x, 0.1, 0.9)
    assert y.dtype == np.float32
    got = gd.compile(y)(x=np.array([0.0, 0.5, 1.0], np.float32))
    np.testing.assert_array_equal(got, np.array([0.1, 0.5, 0.9], np.float32))


@pytest.mark.parametrize("case", ["smooth_l1", "bce", "bce-pos-weight", "clip", "abs"])
def test_gradients_match_finite_differences(case, rng):
    """Away from the kinks, every gradient (targets' and weights' included) is the derivative."""
    shape = (4, 3)
    feeds = {"a": rng.standard_normal(shape) * 2, "b": rng.uniform(0.1, 0.9, shape),
             "w": rng.uniform(0.5, 2.0, (3,))}
    a, b, w = (gd.input(name, v.shape, "float64") for name, v in feeds.items())
    feeds["a"] = np.where(np.abs(feeds["a"] - feeds["b"]) < 0.05, 1.5, feeds["a"])  # no ties
    y = {"smooth_l1": lambda: gd.smooth_l1(a, b, beta=0.7) * gd.sum(w),
         "bce": lambda: gd.binary_cross_entropy_with_logits(a, b) * gd.sum(w),
         "bce-pos-weight": lambda: gd.binary_cross_entropy_with_logits(a, b, pos_weight=w),
         "clip": lambda: gd.sum(gd.clip(a, -1.0, 1.0) * b) * gd.sum(w),
         "abs": lambda: gd.sum(gd.abs(a - 0.05) * b) * gd.sum(w)}[case]()
    result = gd.check_grad(y, feeds)
    assert result.ok, str(result)
    assert {c.node.op.name for c in result.checks} and max(c.error for c in result.checks) < 1e-6


@pytest.mark.parametrize(("build", "message"), [
    (lambda p, t: gd.smooth_l1(p, t[:, :3]), r"pred .* has shape \(5, 4\) but target .* \(5, 3\)"),
    (lambda p, t: gd.smooth_l1(p, t, beta=0.0), r"beta must be a positive number, got 0\.0"),
    (lambda p, t: gd.smooth_l1(p, t, beta=-1), r"beta must be a positive number, got -1"),
    (lambda p, t: gd.smooth_l1(p, t, reduction="avg"), r"reduction must be one of .*'avg'"),
    (lambda p, t: gd.smooth_l1(p, gd.cast(t, "int32")), r"target .* dtype int32"),
    (lambda p, t: gd.binary_cross_entropy_with_logits(p, t[0]),
     r"logits .* \(5, 4\) but targets .* \(4,\)"),
    (lambda p, t: gd.binary_cross_entropy_with_logits(p, t, pos_weight=np.ones(3)),
     r"pos_weight .* shape \(3,\) must broadcast to the logits' shape \(5, 4\)"),
    (lambda p, t: gd.binary_cross_entropy_with_logits(gd.cast(p, "int64"), t),
     r"logits .* dtype int64"),
    (lambda p, t: gd.clip(p), r"give lo, hi or both"),
    (lambda p, t: gd.clip(p, float("nan")), r"lo must be a number or None, got nan"),
    (lambda p, t: gd.clip(p, None, t), r"hi must be a number or None"),
    (lambda p, t: gd.clip(gd.cast(p, "int32"), 0, 1), r"clip expects floating-point input"),
    (lambda p, t: gd.abs(p > 0), r"abs: .* is bool"),
], ids=["smooth_l1-shapes", "smooth_l1-beta-0", "smooth_l1-beta-negative",
        "smooth_l1-reduction", "smooth_l1-int-target", "bce-shapes", "bce-pos-weight-shape",
        "bce-int-logits", "clip-no-bound", "clip-nan-bound",
        "clip-node-bound", "clip-int", "abs-bool"])
def test_bad_arguments_are_refused_at_declaration_naming_them(build, message):
    p, t = gd.input("pred_boxes", (5, 4), "float64"), gd.input("gt_boxes", (5, 4), "float64")
    with pytest.raises(gd.GraphError, match=message):
        build(p, t)
