"""The float32 edge-value table: every elementwise op, composite and loss at ±0, ±denormal,
±1e-38, ±1, ±100, ±1e30, ±inf and NaN, value and gradient, compiled and interpreted.

The reference is PyTorch float32, or the float64 result rounded to float32 where float32
PyTorch rounds an intermediate graphdl does not: a result passes if it matches either (the
failure message shows both). NaN must sit exactly where the reference has NaN. Three references
are not PyTorch's own numbers, because PyTorch is inexact or follows another convention there:

- `x ** ±0.5`: PyTorch computes sqrt/rsqrt, so (-0) ** -0.5 = -inf and (-inf) ** 0.5 = NaN;
  graphdl follows IEEE pow as NumPy does (+inf and +inf). Reference: NumPy float64, and the
  derivative p * x ** (p - 1) evaluated the same way.
- the gradient of `logsumexp` is softmax(row): PyTorch's exp(x - logsumexp(x)) loses it when
  the row is large (a row of three 1e30 gives 1 for each element instead of 1/3); in a row
  holding +inf the finite entries get exactly 0, as PyTorch's own backward gives.
- `hinge_loss` with a NaN score is NaN; `F.multi_margin_loss` skips NaN margins and gives 0.
- relu, maximum and minimum give gradient 0 at a NaN operand (graphdl's documented choice,
  see `tests/fuzz/__init__.py`); PyTorch passes the incoming gradient on.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import graphdl as gd

EDGES = {"0": 0.0, "-0": -0.0, "1e-45": 1e-45, "-1e-45": -1e-45, "1e-38": 1e-38,
         "-1e-38": -1e-38, "1": 1.0, "-1": -1.0, "100": 100.0, "-100": -100.0, "1e30": 1e30,
         "-1e30": -1e30, "inf": np.inf, "-inf": -np.inf, "nan": np.nan}
ALL = np.array(list(EDGES.values()), dtype=np.float32)
MODES = ("compiled", "interpreted")
EXPONENTS = (0, 1, 2, 3, -1, -2, 0.5, -0.5, 2.5)
ONES = np.ones(ALL.shape, np.float32)  # the targets of the elementwise losses
WEIGHTS = np.array([1.0, -2.0, 3.0], dtype=np.float32)  # a row of a weighted sum: sum(softmax)
# would have gradient 0 everywhere


def _unary(name, gd_fn, torch_fn):
    return [(f"{name}(x)", lambda x, f=gd_fn: f(x), lambda t, f=torch_fn: f(t), ALL)]


class _IEEEPow(torch.autograd.Function):
    """x ** p with NumPy's IEEE pow, forward and derivative (PyTorch's ±0.5 paths are not)."""

    @staticmethod
    def forward(ctx, t, p):
        ctx.save_for_backward(t)
        ctx.p = p
        with np.errstate(all="ignore"):
            return torch.from_numpy(np.power(t.detach().numpy().astype(np.float64), p)).to(t.dtype)

    @staticmethod
    def backward(ctx, g):
        (t,) = ctx.saved_tensors
        with np.errstate(all="ignore"):
            d = ctx.p * np.power(t.numpy().astype(np.float64), ctx.p - 1)
        return g * torch.from_numpy(d).to(g.dtype), None


class _LogSumExp(torch.autograd.Function):
    """torch.logsumexp with softmax as its gradient."""

    @staticmethod
    def forward(ctx, t):
        ctx.save_for_backward(t)
        return torch.logsumexp(t, -1)

    @staticmethod
    def backward(ctx, g):
        (t,) = ctx.saved_tensors
        # A row holding +inf: the finite entries' share is exactly 0 (PyTorch's own backward
        # agrees), where softmax meets inf - inf.
        infinite = torch.isposinf(t).any(-1, keepdim=True) & torch.isfinite(t)
        return g[..., None] * torch.where(infinite, 0.0, torch.softmax(t, -1))


def _pow_reference(p):
    return (lambda t: _IEEEPow.apply(t, p)) if p in (0.5, -0.5) else (lambda t: t ** p)


def _nan_gives_zero(torch_fn):
    """PyTorch's op with graphdl's rule at NaN: no gradient flows to or past a NaN operand."""
    def reference(t, y=None):
        out = torch_fn(t) if y is None else torch_fn(t, y)
        nan = torch.isnan(t) if y is None else torch.isnan(t) | torch.isnan(y)
        return torch.where(nan, out.detach(), out)
    return reference


def _binary(name, gd_fn, torch_fn):
    """x at every edge value against one edge y per case, both differentiated."""
    return [(f"{name}(x, {label})", lambda x, y=y, f=gd_fn: f(x, gd.constant(np.float32(y))),
             lambda t, y=y, f=torch_fn: f(t, torch.tensor(y, dtype=t.dtype)), ALL)
            for label, y in EDGES.items()]


def _rows(name, gd_fn, torch_fn):
    """Rows [v, 1, -2] and [v, v, v] for every edge v, reduced along the row, weighted."""
    rows = np.concatenate([np.stack([ALL, np.ones_like(ALL), -2 * np.ones_like(ALL)], 1),
                           np.repeat(ALL[:, None], 3, 1)])
    return [(f"{name}(rows)", lambda x, f=gd_fn: f(x), lambda t, f=torch_fn: f(t), rows)]


def _loss(name, gd_fn, torch_fn):
    """One row per case (a loss averages its rows): the edge value as target and non-target."""
    cases = []
    for label, v in EDGES.items():
        row = np.array([[v, 1.0, -2.0]], dtype=np.float32)
        for target in (0, 1):
            labels = np.array([target])
            cases.append((f"{name}({label} at class 0, label {target})",
                           lambda x, y=labels, f=gd_fn: f(x, y),
                           lambda t, y=labels, f=torch_fn: f(t, torch.from_numpy(y)), row))
    return cases


def _hinge_torch(scores, labels):
    """Σ_{j≠y} relu(1 − s_y + s_j), averaged over the batch: F.multi_margin_loss times the
    number of classes, except that a NaN score gives NaN (multi_margin_loss skips NaN margins
    and returns 0; graphdl does not hide a NaN), with graphdl's relu'(NaN) = 0."""
    correct = scores.gather(-1, labels[:, None])
    others = torch.ones_like(scores, dtype=torch.bool).scatter(-1, labels[:, None], False)
    margins = torch.where(others, _nan_gives_zero(torch.relu)(1 - correct + scores), 0.0)
    return margins.sum(-1).mean()


CASES = [
    *_unary("exp", gd.exp, torch.exp),
    *_unary("log", gd.log, torch.log),
    *_unary("sqrt", gd.sqrt, torch.sqrt),
    *_unary("reciprocal", gd.reciprocal, torch.reciprocal),
    *_unary("tanh", gd.tanh, torch.tanh),
    *_unary("sigmoid", gd.sigmoid, torch.sigmoid),
    *_unary("softplus", gd.softplus, lambda x: torch.logaddexp(x, torch.zeros_like(x))),
    *_unary("log_sigmoid", gd.log_sigmoid, torch.nn.functional.logsigmoid),
    *_unary("relu", gd.relu, _nan_gives_zero(torch.relu)),
    *_unary("neg", lambda x: -x, torch.neg),
    *[case for p in EXPONENTS for case in _unary(f"pow_{p}", lambda x, p=p: x ** p,
                                                 _pow_reference(p))],
    *_unary("abs", gd.abs, torch.abs),
    *_unary("clip", lambda x: gd.clip(x, -1.0, 1.0), lambda t: torch.clamp(t, -1.0, 1.0)),
    *_unary("smooth_l1", lambda x: gd.smooth_l1(x, ONES, reduction="none"),
            lambda t: F.smooth_l1_loss(t, torch.ones_like(t), reduction="none")),
    *[case for target in (0.0, 0.3, 1.0) for case in _unary(
        f"bce_with_logits_{target}",
        lambda x, t=target: gd.binary_cross_entropy_with_logits(x, ONES * t, reduction="none"),
        lambda x, t=target: F.binary_cross_entropy_with_logits(x, torch.full_like(x, t),
                                                               reduction="none"))],
    *_binary("add", lambda a, b: a + b, torch.add),
    *_binary("sub", lambda a, b: a - b, torch.sub),
    *_binary("mul", lambda a, b: a * b, torch.mul),
    *_binary("div", lambda a, b: a / b, torch.div),
    *_binary("rdiv", lambda a, b: b / a, lambda a, b: b / a),
    *_binary("maximum", gd.maximum, _nan_gives_zero(torch.maximum)),
    *_binary("minimum", gd.minimum, _nan_gives_zero(torch.minimum)),
    *_rows("softmax", lambda x: gd.softmax(x) * WEIGHTS,
           lambda t: torch.softmax(t, -1) * torch.from_numpy(WEIGHTS)),
    *_rows("log_softmax", lambda x: gd.log_softmax(x) * WEIGHTS,
           lambda t: torch.log_softmax(t, -1) * torch.from_numpy(WEIGHTS)),
    *_rows("logsumexp", gd.logsumexp, _LogSumExp.apply),
    *_loss("softmax_cross_entropy", gd.softmax_cross_entropy, F.cross_entropy),
    *_loss("hinge_loss", gd.hinge_loss, _hinge_torch),
    *_rows("mse", lambda x: gd.mse(x, np.float32(1.0)),
           lambda t: F.mse_loss(t, torch.ones_like(t))),
    *_rows("l2", lambda x: gd.l2(x), lambda t: torch.sum(t * t)),
]


def _torch(torch_fn, values, dtype):
    t = torch.tensor(values, dtype=dtype, requires_grad=True)
    out = torch_fn(t)
    (grad,) = torch.autograd.grad(out.sum(), t, allow_unused=True)
    grad = torch.zeros_like(t) if grad is None else grad
    with np.errstate(over="ignore"):  # the float64 reference rounds to ±inf in float32
        return [out.detach().numpy().astype(np.float32), grad.numpy().astype(np.float32)]


def _graphdl(gd_fn, values, mode):
    x = gd.input("x", values.shape, "float32")
    out = gd_fn(x)
    outputs = [out, *gd.grad(gd.sum(out), [x])]
    with np.errstate(all="ignore"):
        if mode == "compiled":
            return gd.compile(outputs)(x=values)
        return gd.evaluate(outputs, {"x": values})


def _matches(got, expected):
    got, expected = np.asarray(got), np.asarray(expected)
    if got.shape != expected.shape or got.dtype != np.float32:
        return np.zeros(expected.shape, bool)
    same_nan = np.isnan(got) == np.isnan(expected)
    close = np.isclose(got, expected, rtol=1e-5, atol=1e-30, equal_nan=True)
    return same_nan & close


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("gd_fn", "torch_fn", "values"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_float32_edge_values_match_pytorch(gd_fn, torch_fn, values, mode):
    values = np.asarray(values, dtype=np.float32)
    got = _graphdl(gd_fn, values, mode)
    f32, f64 = _torch(torch_fn, values, torch.float32), _torch(torch_fn, values, torch.float64)
    problems = []
    for what, g, e32, e64 in zip(("value", "gradient"), got, f32, f64, strict=True):
        ok = _matches(g, e32) | _matches(g, e64)
        if not np.all(ok):
            bad = np.argwhere(~ok)[:6]
            shown = [f"x={values[tuple(i[:values.ndim])]!r}: got {np.asarray(g)[tuple(i)]!r}, "
                     f"torch float32 {e32[tuple(i)]!r}, float64 {e64[tuple(i)]!r}" for i in bad]
            problems.append(f"{what} differs at {int((~ok).sum())} place(s): " + "; ".join(shown))
    assert not problems, "\n".join(problems)
