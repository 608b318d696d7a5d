"""Reverse-mode autodiff: higher derivatives, fan-out, broadcasting, unknown dimensions,
composites against NumPy formulas, finite differences and (when installed) PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd

from .helpers import graph_numeric_grads


def f64(name, shape=()):
    return gd.input(name, shape, "float64")


def sig(v):
    return 1.0 / (1.0 + np.exp(-v))


# --- the lecture's sigmoid neuron -------------------------------------------------------


def test_lecture_sigmoid_neuron():
    w0, x0, w1, x1, w2 = (f64(n) for n in ("w0", "x0", "w1", "x1", "w2"))
    f = 1 / (1 + gd.exp(-(w0 * x0 + w1 * x1 + w2)))
    grads = gd.grad(f, [w0, x0, w1, x1, w2])
    values = gd.evaluate([f, *grads], w0=2, x0=-1, w1=-3, x1=-2, w2=-3)
    assert round(float(values[0]), 2) == 0.73
    assert [round(float(v), 2) for v in values[1:]] == [-0.20, 0.39, -0.39, -0.59, 0.20]
    # Exactly: df/dz = σ(1)(1 - σ(1)) at z = 1, times each local derivative.
    s = sig(1.0)
    np.testing.assert_allclose(values[1:], np.array([-1, 2, -2, -3, 1]) * s * (1 - s))
    assert [g.name for g in grads] == ["dw0", "dx0", "dw1", "dx1", "dw2"]


# --- higher derivatives ------------------------------------------------------------------

SCALAR_FUNCTIONS = [
    ("cube", lambda x: x**3, lambda v: 3 * v**2, lambda v: 6 * v),
    ("sigmoid", gd.sigmoid, lambda v: sig(v) * (1 - sig(v)),
     lambda v: sig(v) * (1 - sig(v)) * (1 - 2 * sig(v))),
    ("tanh", gd.tanh, lambda v: 1 - np.tanh(v) ** 2,
     lambda v: -2 * np.tanh(v) * (1 - np.tanh(v) ** 2)),
    ("log", gd.log, lambda v: 1 / v, lambda v: -1 / v**2),
    ("x_exp_neg_x", lambda x: x * gd.exp(-x), lambda v: (1 - v) * np.exp(-v),
     lambda v: (v - 2) * np.exp(-v)),
    ("reciprocal", lambda x: 1 / x, lambda v: -1 / v**2, lambda v: 2 / v**3),
    ("sqrt", gd.sqrt, lambda v: 0.5 / np.sqrt(v), lambda v: -0.25 * v**-1.5),
    ("div", lambda x: (x + 1) / (x * x + 1), lambda v: (1 - 2 * v - v * v) / (v * v + 1) ** 2,
     lambda v: (2 * v**3 + 6 * v**2 - 6 * v - 2) / (v * v + 1) ** 3),
    ("softplus", lambda x: gd.REGISTRY["softplus"](x), sig, lambda v: sig(v) * (1 - sig(v))),
    ("relu", gd.relu, lambda v: float(v > 0), lambda v: 0.0),
]


@pytest.mark.parametrize("name,f,d1,d2", SCALAR_FUNCTIONS, ids=[s[0] for s in SCALAR_FUNCTIONS])
@pytest.mark.parametrize("at", [0.3, 1.7])
def test_second_derivatives(name, f, d1, d2, at):
    x = f64("x")
    y = f(x)
    dy = gd.grad(y, x)
    d2y = gd.grad(dy, x)
    got1, got2 = gd.evaluate([dy, d2y], x=at)
    assert got1 == pytest.approx(d1(at), rel=1e-12, abs=1e-14)
    assert got2 == pytest.approx(d2(at), rel=1e-10, abs=1e-14)


def test_third_derivative_and_mixed_partials():
    x, y = f64("x"), f64("y")
    f = x**4
    d3 = gd.grad(gd.grad(gd.grad(f, x), x), x)
    assert gd.evaluate(d3, x=1.5) == pytest.approx(24 * 1.5)
    g = x * y * y + gd.exp(x * y)
    dxy = gd.grad(gd.grad(g, y), x)
    dyx = gd.grad(gd.grad(g, x), y)
    xv, yv = 0.4, -1.3
    expected = 2 * yv + np.exp(xv * yv) * (1 + xv * yv)
    assert gd.evaluate(dxy, x=xv, y=yv) == pytest.approx(expected)
    assert gd.evaluate(dyx, x=xv, y=yv) == pytest.approx(expected)


def test_hessian_vector_product_of_a_vector_function(rng):
    x = f64("x", (4,))
    v = f64("v", (4,))
    y = gd.sum(gd.exp(x) * x) + gd.sum(x) ** 2
    hvp = gd.grad(gd.sum(gd.grad(y, x) * v), x)
    xv, vv = rng.standard_normal(4), rng.standard_normal(4)
    hessian = np.diag(np.exp(xv) * (xv + 2)) + 2 * np.ones((4, 4))
    np.testing.assert_allclose(gd.evaluate(hvp, x=xv, v=vv), hessian @ vv)


# --- structure ---------------------------------------------------------------------------


def test_fan_out_sums_contributions():
    x = f64("x")
    y = x * x + x
    assert gd.evaluate(gd.grad(y, x), x=3.0) == pytest.approx(7.0)
    a = gd.exp(x)
    z = a * a * a + a  # one node used four times
    assert gd.evaluate(gd.grad(z, x), x=0.5) == pytest.approx(3 * np.exp(1.5) + np.exp(0.5))


def test_broadcasting_is_undone(rng):
    X, b = f64("X", (5, 3)), f64("b", (3,))
    w = rng.standard_normal((5, 3))
    y = gd.sum(gd.constant(w) * (X + b))
    db, dX = gd.grad(y, [b, X])
    assert db.shape == (3,) and dX.shape == (5, 3)
    got_db, got_dX = gd.evaluate([db, dX], X=rng.standard_normal((5, 3)), b=rng.standard_normal(3))
    np.testing.assert_allclose(got_db, w.sum(0))
    np.testing.assert_allclose(got_dX, w)
    # A scalar and a (3, 1) column broadcast against (2, 3, 4).
    s, c, T = f64("s"), f64("c", (3, 1)), f64("T", (2, 3, 4))
    wt = rng.standard_normal((2, 3, 4))
    y = gd.sum(gd.constant(wt) * (T * c + s))
    ds, dc = gd.evaluate(gd.grad(y, [s, c]), s=0.5, c=rng.standard_normal((3, 1)),
                         T=(tv := rng.standard_normal((2, 3, 4))))
    assert np.shape(ds) == () and ds == pytest.approx(wt.sum())
    np.testing.assert_allclose(dc, (wt * tv).sum(axis=(0, 2))[:, None])


def test_unused_wrt_gets_zeros_of_its_shape():
    x = f64("x", (3,))
    z = gd.input("z", (4, 2), "float32")
    y = gd.sum(x * x)
    _, dz = gd.grad(y, [x, z])
    assert dz.shape == (4, 2) and dz.dtype == np.float32
    got = gd.evaluate(dz, z=np.ones((4, 2), np.float32))
    np.testing.assert_array_equal(got, np.zeros((4, 2), np.float32))
    assert got.dtype == np.float32
    # Reached only through stop_gradient: also zero.
    y2 = gd.sum(gd.stop_gradient(x) * 2.0)
    np.testing.assert_array_equal(gd.evaluate(gd.grad(y2, x), x=np.ones(3)), np.zeros(3))


def test_grad_wrt_an_intermediate_node(rng):
    x = f64("x", (3,))
    h = x * x
    y = gd.sum(gd.exp(h)) + gd.sum(x)
    dh, dx = gd.grad(y, [h, x])
    xv = rng.standard_normal(3)
    got_dh, got_dx = gd.evaluate([dh, dx], x=xv)
    np.testing.assert_allclose(got_dh, np.exp(xv * xv))
    np.testing.assert_allclose(got_dx, np.exp(xv * xv) * 2 * xv + 1)
    dy = gd.grad(y, y)
    assert dy.shape == () and gd.evaluate(dy) == 1.0  # a constant: it needs no inputs


def test_grad_wrt_a_hash_consed_subexpression_counts_every_use(rng):
    x = f64("x", (3,))
    a = x * 2.0
    b = x * 2.0  # the same node as a
    assert a is b
    y = gd.sum(a * b) + gd.sum(gd.exp(x * 2.0))
    xv = rng.standard_normal(3)
    np.testing.assert_allclose(gd.evaluate(gd.grad(y, a), x=xv), 2 * (2 * xv) + np.exp(2 * xv))
    np.testing.assert_allclose(gd.evaluate(gd.grad(y, x), x=xv),
                               2 * (2 * (2 * xv) + np.exp(2 * xv)))


def test_gradient_dtypes_follow_the_inputs(rng):
    x = gd.input("x", (3,), "float32")
    w = f64("w", (3,))
    y = gd.sum(x * w) + gd.sum(gd.relu(x) * 2.0)
    dx, dw = gd.grad(y, [x, w])
    assert (dx.dtype, dw.dtype) == (np.float32, np.float64)
    xv = rng.standard_normal(3).astype(np.float32)
    wv = rng.standard_normal(3)
    got_dx, got_dw = gd.evaluate([dx, dw], x=xv, w=wv)
    assert got_dx.dtype == np.float32 and got_dw.dtype == np.float64
    np.testing.assert_allclose(got_dx, wv + 2.0 * (xv > 0), rtol=1e-6)
    np.testing.assert_allclose(got_dw, xv.astype(np.float64))


def test_grad_through_1d_matmul_and_indexing(rng):
    v, M = f64("v", (3,)), f64("M", (3, 4))
    u = v @ M  # (4,)
    y = gd.sum(u[1:3] * u[0]) + v @ v
    feeds = {"v": rng.standard_normal(3), "M": rng.standard_normal((3, 4))}
    grads = gd.evaluate(gd.grad(y, [v, M]), feeds)
    for got, expected in zip(grads, graph_numeric_grads(y, feeds, ["v", "M"]), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-8)


# --- unknown (None) dimensions -----------------------------------------------------------


def test_none_batch_dimension_grads_for_several_batch_sizes(rng):
    x = f64("x", (None, 3))
    w = f64("w", (3, 2))
    b = f64("b", (2,))
    s = f64("s", (None, 1))
    h = gd.tanh(x @ w + b) * s
    y = gd.mean(h * h) + gd.sum(gd.softmax(h, axis=0)[0])
    dx, dw, db, ds = gd.grad(y, [x, w, b, s])
    assert dx.shape == (None, 3) and ds.shape == (None, 1)
    assert dw.shape == (3, 2) and db.shape == (2,)
    for batch in (1, 4, 7):
        feeds = {"x": rng.standard_normal((batch, 3)), "w": rng.standard_normal((3, 2)),
                 "b": rng.standard_normal(2), "s": rng.standard_normal((batch, 1))}
        got = gd.evaluate([dx, dw, db, ds], feeds)
        expected = graph_numeric_grads(y, feeds, ["x", "w", "b", "s"])
        for g, e, name in zip(got, expected, "xwbs", strict=True):
            assert g.shape == feeds[name].shape
            np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-8, err_msg=f"d{name}, {batch=}")


def unbroadcast(full, shape):
    """NumPy reference: sum `full` down to `shape` (what autodiff must do for broadcasting)."""
    lead = full.ndim - len(shape)
    full = full.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, d in enumerate(shape) if d == 1 and full.shape[i] != 1)
    return full.sum(axis=axes, keepdims=True)


def test_none_dimensions_that_broadcast_only_at_run_time(rng):
    a, b = f64("a", (None,)), f64("b", (None, None))
    y = gd.sum(a * b * 2.0)
    da, db = gd.grad(y, [a, b])
    assert da.shape == (None,) and db.shape == (None, None)
    for a_len, b_shape in [(1, (2, 5)), (5, (2, 5)), (3, (1, 1)), (4, (3, 1)), (1, (1, 1))]:
        av, bv = rng.standard_normal(a_len), rng.standard_normal(b_shape)
        got_da, got_db = gd.evaluate([da, db], a=av, b=bv)
        out = np.broadcast_shapes(av.shape, bv.shape)
        np.testing.assert_allclose(got_da, unbroadcast(2 * np.broadcast_to(bv, out), av.shape))
        np.testing.assert_allclose(got_db, unbroadcast(2 * np.broadcast_to(av, out), bv.shape))
        assert got_da.shape == av.shape and got_db.shape == bv.shape


def test_mean_over_a_none_dimension_divides_by_the_fed_size():
    x = f64("x", (None,))
    y = gd.mean(x)
    dx = gd.grad(y, x)
    for n in (1, 2, 5):
        assert gd.evaluate(y, x=np.arange(n, dtype=float)) == pytest.approx((n - 1) / 2)
        np.testing.assert_allclose(gd.evaluate(dx, x=np.zeros(n)), np.full(n, 1 / n))


# --- composites: values against NumPy, gradients against finite differences ------------


def np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_hinge(s, y):
    n = s.shape[0]
    correct = s[np.arange(n), y][:, None]
    margins = np.maximum(0.0, s - correct + 1.0)
    margins[np.arange(n), y] = 0.0
    return margins.sum(1).mean()


@pytest.fixture
def scores(rng):
    return rng.standard_normal((6, 4)) * 2.0


LABELS = np.array([0, 3, 1, 1, 2, 3])


def _composite_cases(scores):
    onehot = np.eye(4)[LABELS]
    return [
        ("sigmoid", lambda z: gd.sum(gd.sigmoid(z) * gd.constant(scores)),
         (sig(scores) * scores).sum()),
        ("tanh", lambda z: gd.sum(gd.tanh(z) * gd.constant(scores)),
         (np.tanh(scores) * scores).sum()),
        ("softmax", lambda z: gd.sum(gd.softmax(z) * gd.constant(scores)),
         (np.exp(np_log_softmax(scores)) * scores).sum()),
        ("softmax_axis0", lambda z: gd.sum(gd.softmax(z, axis=0) * gd.constant(scores)),
         (np.exp(np_log_softmax(scores.T)).T * scores).sum()),
        ("log_softmax", lambda z: gd.sum(gd.log_softmax(z) * gd.constant(scores)),
         (np_log_softmax(scores) * scores).sum()),
        ("logsumexp", lambda z: gd.sum(gd.logsumexp(z)),
         np.log(np.exp(scores).sum(-1)).sum()),
        ("cross_entropy_int",
         lambda z: gd.softmax_cross_entropy(z, gd.constant(LABELS)),
         -np_log_softmax(scores)[np.arange(6), LABELS].mean()),
        ("cross_entropy_onehot",
         lambda z: gd.softmax_cross_entropy(z, gd.constant(onehot)),
         -np_log_softmax(scores)[np.arange(6), LABELS].mean()),
        ("hinge_int", lambda z: gd.hinge_loss(z, gd.constant(LABELS)),
         np_hinge(scores, LABELS)),
        ("hinge_onehot", lambda z: gd.hinge_loss(z, gd.constant(onehot)),
         np_hinge(scores, LABELS)),
        ("mse", lambda z: gd.mse(z, gd.constant(onehot)), ((scores - onehot) ** 2).mean()),
        ("l2", lambda z: gd.l2(z, z[0], lam=0.3),
         0.3 * ((scores**2).sum() + (scores[0] ** 2).sum())),
    ]


COMPOSITE_NAMES = [c[0] for c in _composite_cases(np.zeros((6, 4)))]


@pytest.mark.parametrize("index", range(len(COMPOSITE_NAMES)), ids=COMPOSITE_NAMES)
def test_composite_value_and_gradient(index, scores):
    _, build, expected = _composite_cases(scores)[index]
    z = f64("z", (6, 4))
    y = build(z)
    assert y.shape == ()
    feeds = {"z": scores}
    assert gd.evaluate(y, feeds) == pytest.approx(expected, rel=1e-12)
    got = gd.evaluate(gd.grad(y, z), feeds)
    (numeric,) = graph_numeric_grads(y, feeds, ["z"])
    np.testing.assert_allclose(got, numeric, rtol=1e-6, atol=1e-8)
    assert gd.check_grad(y, feeds).ok


def test_hinge_loss_is_the_lecture_formula():
    # The lecture's example: scores for cat/car/frog images, correct classes 0, 1, 2.
    s = np.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])
    z = f64("s", (3, 3))
    loss = gd.hinge_loss(z, gd.constant(np.array([0, 1, 2])))
    assert gd.evaluate(loss, s=s) == pytest.approx((2.9 + 0 + 12.9) / 3)
    # Gradient: each positive margin pushes s_j up and s_y down.
    d = gd.evaluate(gd.grad(loss, z), s=s)
    expected = np.array([[-1, 1, 0], [0, 0, 0], [1, 1, -2]]) / 3
    np.testing.assert_allclose(d, expected)


def test_softmax_is_a_distribution_and_stable():
    z = f64("z", (2, 3))
    big = np.array([[1000.0, 0.0, -1000.0], [-1e4, -1e4, -1e4 + 1]])
    p, lp = gd.evaluate([gd.softmax(z), gd.log_softmax(z)], z=big)
    assert np.all(np.isfinite(p)) and np.all(np.isfinite(lp))
    np.testing.assert_allclose(p.sum(-1), [1.0, 1.0])
    np.testing.assert_allclose(lp, np_log_softmax(big))
    loss = gd.softmax_cross_entropy(z, gd.constant(np.array([2, 0])))
    value, grad = gd.evaluate([loss, gd.grad(loss, z)], z=big)
    assert value == pytest.approx(-np_log_softmax(big)[[0, 1], [2, 0]].mean())
    assert np.all(np.isfinite(grad))


def test_cross_entropy_gradient_is_softmax_minus_onehot(scores):
    z = f64("z", (6, 4))
    loss = gd.softmax_cross_entropy(z, gd.constant(LABELS))
    got = gd.evaluate(gd.grad(loss, z), z=scores)
    expected = (np.exp(np_log_softmax(scores)) - np.eye(4)[LABELS]) / 6
    np.testing.assert_allclose(got, expected, atol=1e-15)


def test_composites_with_a_none_batch(rng):
    z = f64("z", (None, 4))
    labels = gd.input("labels", (None,), "int64")
    loss = gd.softmax_cross_entropy(z, labels) + gd.hinge_loss(z, labels)
    dz = gd.grad(loss, z)
    for n in (1, 3):
        s = rng.standard_normal((n, 4))
        y = rng.integers(0, 4, n)
        value, got = gd.evaluate([loss, dz], z=s, labels=y)
        assert value == pytest.approx(-np_log_softmax(s)[np.arange(n), y].mean()
                                      + np_hinge(s, y))
        (numeric,) = graph_numeric_grads(loss, {"z": s, "labels": y}, ["z"])
        np.testing.assert_allclose(got, numeric, rtol=1e-6, atol=1e-8)


# --- PyTorch agreement -------------------------------------------------------------------


def _torch_grad(torch, fn, value):
    t = torch.tensor(value, dtype=torch.float64, requires_grad=True)
    out = fn(t)
    out.backward()
    return out.item(), t.grad.numpy()


def test_losses_match_torch(scores):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    labels = torch.tensor(LABELS)
    onehot = np.eye(4)[LABELS]
    z = f64("z", (6, 4))

    def torch_hinge(s):  # the lecture's formula, without multi_margin_loss's 1/C
        correct = s.gather(1, labels[:, None])
        margins = torch.clamp(s - correct + 1, min=0)
        mask = 1 - F.one_hot(labels, 4).to(s.dtype)
        return (margins * mask).sum(1).mean()

    cases = [
        (gd.softmax_cross_entropy(z, gd.constant(LABELS)), lambda s: F.cross_entropy(s, labels)),
        (gd.softmax_cross_entropy(z, gd.constant(onehot)),
         lambda s: F.cross_entropy(s, torch.tensor(onehot))),
        (gd.hinge_loss(z, gd.constant(LABELS)), torch_hinge),
        (gd.mse(z, gd.constant(onehot)), lambda s: F.mse_loss(s, torch.tensor(onehot))),
        (gd.sum(gd.relu(z) * gd.constant(onehot + 0.5)),
         lambda s: (torch.relu(s) * torch.tensor(onehot + 0.5)).sum()),
        (gd.sum(gd.log_softmax(z, axis=0)[1]), lambda s: F.log_softmax(s, dim=0)[1].sum()),
    ]
    for loss, torch_fn in cases:
        expected_value, expected_grad = _torch_grad(torch, torch_fn, scores)
        value, grad = gd.evaluate([loss, gd.grad(loss, z)], z=scores)
        assert value == pytest.approx(expected_value, rel=1e-12)
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-10, atol=1e-14)


def test_relu_and_mlp_grads_match_torch(rng):
    torch = pytest.importorskip("torch")
    xv, wv, bv = rng.standard_normal((5, 3)), rng.standard_normal((3, 4)), rng.standard_normal(4)
    x, w, b = f64("x", (None, 3)), f64("w", (3, 4)), f64("b", (4,))
    loss = gd.mean(gd.relu(x @ w + b) ** 2) + gd.l2(w, lam=0.1)
    grads = gd.evaluate(gd.grad(loss, [x, w, b]), x=xv, w=wv, b=bv)
    tx, tw, tb = (torch.tensor(v, requires_grad=True) for v in (xv, wv, bv))
    tloss = (torch.relu(tx @ tw + tb) ** 2).mean() + 0.1 * (tw * tw).sum()
    tloss.backward()
    for got, t in zip(grads, (tx, tw, tb), strict=True):
        np.testing.assert_allclose(got, t.grad.numpy(), rtol=1e-10, atol=1e-14)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # 0 / 0
@pytest.mark.filterwarnings("ignore:divide by zero encountered:RuntimeWarning")
def test_nothing_depends_on_anything_through_an_empty_array():
    """The fuzzer's case: mean over an empty slice is NaN (as PyTorch's), but x1's gradient
    reaches it only through the empty slice, so it is exactly 0, and so is its derivative
    with respect to x0 (PyTorch: 0; the path used to send back 0 * (1 / 0) = NaN)."""
    x0, x1 = gd.input("x0", (3,), "float64"), gd.input("x1", (3,), "float64")
    nothing = gd.smooth_l1(x1[0:0], gd.input("x5", (0,), "float64"), reduction="mean")
    d0, d1 = gd.grad(gd.sum(x0 * nothing), [x0, x1])
    second = gd.grad(gd.sum(d1), x0)
    feeds = {"x0": np.array([-0.5, 0.0, 1.0]), "x1": np.array([0.0, 1.0, -1.0]), "x5": np.zeros(0)}
    for got in (gd.evaluate([d0, d1, second], feeds), gd.compile([d0, d1, second])(feeds)):
        assert np.isnan(got[0]).all()  # d/dx0 is the mean of nothing, NaN
        np.testing.assert_array_equal(got[1], np.zeros(3))
        np.testing.assert_array_equal(got[2], np.zeros(3))
