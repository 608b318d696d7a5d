"""Convolution and pooling: shapes, the lecture's numbers, gradients (finite differences, second
order), PyTorch agreement (values, gradients, max-pool ties), errors, compiled NumPy code."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import graphdl as gd
from graphdl import GraphError
from graphdl.ops import conv as cv


def f64(name, shape):
    return gd.input(name, shape, "float64")


def distinct(rng, shape):
    """Values far apart from each other (no max-pool ties, so finite differences are exact)."""
    n = int(np.prod(shape))
    return (rng.permutation(n) - n / 2 + rng.uniform(-0.1, 0.1, n)).reshape(shape) * (4 / n)


# (x shape, w shape, stride, padding, dilation, groups)
CONV_CONFIGS = [
    ((2, 3, 7, 7), (4, 3, 3, 3), 1, 0, 1, 1),
    ((2, 3, 7, 8), (4, 3, 3, 2), 2, 1, 1, 1),
    ((1, 4, 9, 7), (6, 2, 3, 3), (2, 1), (1, 2), (2, 1), 2),
    ((1, 2, 6, 5), (3, 2, 4, 2), 1, "same", 1, 1),
    ((1, 2, 6, 5), (3, 2, 3, 3), 1, "same", (2, 1), 1),
    ((2, 2, 6, 7), (2, 2, 3, 2), (1, 3), (0, 2, 1, 0), 1, 1),
    ((2, 4, 6, 6), (8, 1, 3, 3), 1, 1, 1, 4),
    ((1, 2, 8, 8), (2, 2, 2, 2), 3, 0, 1, 1),
    ((1, 1, 4, 5), (1, 1, 4, 5), 1, "valid", 1, 1),
]
CONV_IDS = [f"conv{k}" for k in range(len(CONV_CONFIGS))]

# max: (x shape, kernel, stride, padding, dilation, ceil_mode)
MAX_CONFIGS = [
    ((2, 3, 6, 6), 2, None, 0, 1, False),
    ((1, 2, 7, 8), 3, 2, 1, 1, True),
    ((2, 2, 9, 7), (3, 2), (2, 1), (1, 0), (2, 1), False),
    ((1, 1, 5, 5), 2, 2, 0, 1, True),
    ((1, 2, 5, 6), 3, 1, 1, 1, False),
    ((1, 2, 6, 6), 3, 2, 1, 2, True),
]
# avg: (x shape, kernel, stride, padding, ceil_mode, count_include_pad)
AVG_CONFIGS = [
    ((2, 3, 6, 6), 2, None, 0, False, True),
    ((1, 2, 7, 8), 3, 2, 1, True, True),
    ((1, 2, 7, 8), 3, 2, 1, True, False),
    ((2, 2, 9, 7), (3, 2), (2, 1), (1, 1), False, False),
    ((1, 1, 8, 8), 3, 3, 1, True, True),
    ((1, 2, 5, 6), 3, 1, 1, False, True),
]


def build_conv(cfg):
    xs, ws, stride, padding, dilation, groups = cfg
    x, w = f64("x", xs), f64("w", ws)
    return x, w, gd.conv2d(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)


def build_max(cfg, x=None):
    xs, k, s, p, d, ceil = cfg
    x = f64("x", xs) if x is None else x
    return x, gd.max_pool2d(x, k, stride=s, padding=p, dilation=d, ceil_mode=ceil)


def build_avg(cfg, x=None):
    xs, k, s, p, ceil, cip = cfg
    x = f64("x", xs) if x is None else x
    return x, gd.avg_pool2d(x, k, stride=s, padding=p, ceil_mode=ceil, count_include_pad=cip)


# ---------------------------------------------------------------- the lecture's facts
def test_lecture_conv_output_sizes():
    x = gd.input("image", (1, 1, 7, 7))
    k = gd.input("kernel", (1, 1, 3, 3))
    assert gd.conv2d(x, k).shape == (1, 1, 5, 5)
    assert gd.conv2d(x, k, stride=2).shape == (1, 1, 3, 3)
    img = gd.input("rgb", (1, 3, 32, 32))
    filters = gd.input("filters", (6, 3, 5, 5))
    y = gd.relu(gd.conv2d(img, filters))
    assert y.shape == (1, 6, 28, 28)
    value = gd.evaluate(y, rgb=np.ones((1, 3, 32, 32)), filters=np.ones((6, 3, 5, 5)))
    assert value.shape == (1, 6, 28, 28) and np.all(value == 75.0)


def test_lecture_pooling_example():
    x = f64("x", (1, 1, 4, 4))
    v = np.array([[1, 5, 4, 3], [2, 6, 4, 0], [3, 1, 7, 9], [2, 8, 6, 5]], float)[None, None]
    np.testing.assert_array_equal(gd.evaluate(gd.max_pool2d(x, 2), x=v)[0, 0], [[6, 4], [8, 9]])
    avg = gd.evaluate(gd.avg_pool2d(x, 2), x=v)[0, 0]
    np.testing.assert_array_equal(avg, [[3.5, 2.75], [3.5, 6.75]])
    np.testing.assert_array_equal(np.floor(avg), [[3, 2], [3, 6]])  # the slide rounds down
    fn = gd.compile([gd.max_pool2d(x, 2), gd.avg_pool2d(x, 2)])
    got_max, got_avg = fn(x=v)
    np.testing.assert_array_equal(got_max[0, 0], [[6, 4], [8, 9]])
    np.testing.assert_array_equal(got_avg[0, 0], avg)


def test_same_padding_is_asymmetric_for_even_kernels():
    y = gd.conv2d(f64("x", (1, 1, 6, 5)), f64("w", (1, 1, 4, 2)), padding="same")
    assert y.shape == (1, 1, 6, 5)
    assert y.attrs["padding"] == (1, 2, 0, 1)


# ---------------------------------------------------------------- reference vs brute force
def brute_conv(x, w, stride, padding, dilation, groups):
    n, _, h, wd = x.shape
    o, cg, kh, kw = w.shape
    pt, pb, pl, pr = padding
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    oh = (h + pt + pb - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + pl + pr - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, o, oh, ow))
    per = o // groups
    for b, oc, r, s in itertools.product(range(n), range(o), range(oh), range(ow)):
        g = oc // per
        for ci, i, j in itertools.product(range(cg), range(kh), range(kw)):
            out[b, oc, r, s] += (xp[b, g * cg + ci, r * stride[0] + i * dilation[0],
                                    s * stride[1] + j * dilation[1]] * w[oc, ci, i, j])
    return out


@pytest.mark.parametrize("cfg", CONV_CONFIGS, ids=CONV_IDS)
def test_conv_reference_matches_brute_force(cfg, rng):
    x, w, y = build_conv(cfg)
    xv, wv = rng.standard_normal(x.shape), rng.standard_normal(w.shape)
    got = gd.evaluate(y, x=xv, w=wv)
    a = y.attrs
    np.testing.assert_allclose(
        got, brute_conv(xv, wv, a["stride"], a["padding"], a["dilation"], a["groups"]),
        rtol=1e-12, atol=1e-12)


def brute_pool(x, kernel, stride, padding, dilation, out, reduce):
    """Windows by pixel loops: reduce(values of real cells, number of cells in the window
    clipped to the padded input)."""
    n, c, h, w = x.shape
    res = np.zeros((n, c, *out))
    for b, ch, r, s in itertools.product(range(n), range(c), range(out[0]), range(out[1])):
        cells, clipped = [], 0
        for i, j in itertools.product(range(kernel[0]), range(kernel[1])):
            hi = r * stride[0] + i * dilation[0] - padding[0]
            wi = s * stride[1] + j * dilation[1] - padding[2]
            if hi < h + padding[1] and wi < w + padding[3]:
                clipped += 1
            if 0 <= hi < h and 0 <= wi < w:
                cells.append(x[b, ch, hi, wi])
        res[b, ch, r, s] = reduce(cells, clipped)
    return res


ONNX_MAX = [((1, 2, 5, 5), 2, 1, 2, 1, False), ((1, 1, 4, 6), 3, 2, (3, 2), 1, True)]
ONNX_AVG = [((1, 2, 5, 5), 2, 1, 2, False, True), ((1, 2, 5, 5), 2, 1, 2, False, False),
            ((1, 1, 4, 6), 3, 2, (3, 2), True, True)]


@pytest.mark.parametrize("cfg", MAX_CONFIGS + ONNX_MAX)
def test_max_pool_matches_brute_force(cfg, rng):
    x, y = build_max(cfg)
    xv = rng.standard_normal(x.shape)
    a = y.attrs
    want = brute_pool(xv, a["kernel"], a["stride"], a["padding"], a["dilation"], y.shape[2:],
                      lambda cells, _: max(cells) if cells else -np.inf)
    np.testing.assert_array_equal(gd.evaluate(y, x=xv), want)
    np.testing.assert_array_equal(gd.compile(y)(x=xv), want)


@pytest.mark.parametrize("cfg", AVG_CONFIGS + ONNX_AVG)
def test_avg_pool_matches_brute_force(cfg, rng):
    x, y = build_avg(cfg)
    xv = rng.standard_normal(x.shape)
    a = y.attrs

    def mean(cells, clipped):
        div = clipped if a["count_include_pad"] else len(cells)
        return sum(cells) / max(div, 1)

    want = brute_pool(xv, a["kernel"], a["stride"], a["padding"], (1, 1), y.shape[2:], mean)
    np.testing.assert_allclose(gd.evaluate(y, x=xv), want, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gd.compile(y)(x=xv), want, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------- gradients
def _check_all_edges(y, feeds, tol=1e-5):
    result = gd.check_grad(y, feeds, tolerance=tol)
    assert result.ok, str(result)
    return result


@pytest.mark.parametrize("cfg", CONV_CONFIGS, ids=CONV_IDS)
def test_conv_gradients_first_and_second_order(cfg, rng):
    x, w, y = build_conv(cfg)
    u = gd.constant(rng.standard_normal(y.shape))
    loss = gd.sum(y * u)
    dx, dw = gd.grad(loss, [x, w])
    assert dx.op.name == "conv2d_input_grad" and dw.op.name == "conv2d_weight_grad"
    # Second order: a scalar of the gradients, differentiated again. Every edge, the gradient
    # ops' own pullbacks included, is checked against finite differences.
    second = gd.sum(dx * gd.constant(rng.standard_normal(x.shape)) * x) + gd.sum(dw * dw * w)
    feeds = {"x": rng.standard_normal(x.shape), "w": rng.standard_normal(w.shape)}
    result = _check_all_edges(second, feeds)
    ops = {c.node.op.name for c in result.checks}
    assert {"conv2d_input_grad", "conv2d_weight_grad"} <= ops
    ddx, ddw = gd.grad(second, [x, w])
    ops = {n.op.name for n in gd.topological_order([ddx, ddw])}
    assert {"conv2d", "conv2d_input_grad", "conv2d_weight_grad"} <= ops
    _check_all_edges(gd.sum(ddx * ddx) + gd.sum(ddw), feeds, tol=1e-4)


@pytest.mark.parametrize("cfg", MAX_CONFIGS + ONNX_MAX)
def test_max_pool_gradients_first_and_second_order(cfg, rng):
    x, y = build_max(cfg)
    xv = distinct(rng, x.shape)
    # Windows wholly in ONNX-style padding pool to -inf: zeroed, so that the rest stays finite
    # and every other edge is checked.
    y = gd.where(gd.greater(y, -np.inf), y, 0.0)
    (dx,) = gd.grad(gd.sum(y * y * gd.constant(rng.standard_normal(y.shape))), [x])
    assert dx.op.name == "max_pool2d_grad"
    second = gd.sum(dx * gd.constant(rng.standard_normal(x.shape)) * x)
    result = _check_all_edges(second, {"x": xv})
    assert "max_pool2d_grad" in {c.node.op.name for c in result.checks}
    (ddx,) = gd.grad(second, [x])
    assert "max_pool2d_select" in {n.op.name for n in gd.topological_order([ddx])}
    _check_all_edges(gd.sum(ddx * x * x), {"x": xv})


@pytest.mark.parametrize("cfg", AVG_CONFIGS + ONNX_AVG)
def test_avg_pool_gradients_first_and_second_order(cfg, rng):
    x, y = build_avg(cfg)
    (dx,) = gd.grad(gd.sum(y * y), [x])
    assert "avg_pool2d_grad" in {n.op.name for n in gd.topological_order([dx])}
    second = gd.sum(dx * dx * x)
    _check_all_edges(second, {"x": rng.standard_normal(x.shape)})
    (ddx,) = gd.grad(second, [x])
    _check_all_edges(gd.sum(ddx * x), {"x": rng.standard_normal(x.shape)})


def test_a_small_cnn_gradient_check(rng):
    x = f64("x", (2, 2, 9, 9))
    w1, b1 = f64("w1", (3, 2, 3, 3)), f64("b1", (3,))
    w2 = f64("w2", (4, 3, 2, 2))
    h = gd.tanh(gd.conv2d(x, w1, b1, padding=1))  # no relu: its zeros would tie in the max
    h = gd.max_pool2d(h, 2, ceil_mode=True)
    h = gd.avg_pool2d(gd.conv2d(h, w2, stride=2), 2, padding=1, count_include_pad=False)
    y = gd.sum(h * h)
    feeds = {"x": distinct(rng, x.shape), "w1": rng.standard_normal(w1.shape) * 0.3,
             "b1": rng.standard_normal(3) * 0.3, "w2": rng.standard_normal(w2.shape)}
    _check_all_edges(y, feeds, tol=1e-5)


# ---------------------------------------------------------------- PyTorch agreement
def _torch_pad4(t, padding, value=0.0):
    pt, pb, pl, pr = padding
    import torch.nn.functional as F

    return F.pad(t, (pl, pr, pt, pb), value=value)


@pytest.mark.parametrize("cfg", CONV_CONFIGS, ids=CONV_IDS)
def test_conv_matches_torch_values_gradients_and_second_order(cfg, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, w, y = build_conv(cfg)
    b = f64("b", (w.shape[0],))
    _, _, stride, padding, dilation, groups = cfg
    y = gd.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)
    xv, wv = rng.standard_normal(x.shape), rng.standard_normal(w.shape)
    bv, uv = rng.standard_normal(b.shape), rng.standard_normal(y.shape)
    loss = gd.sum(y * gd.constant(uv))
    grads = gd.grad(loss, [x, w, b])
    second = gd.sum(grads[0] ** 2) + gd.sum(grads[1] ** 2)
    dd = gd.grad(second, [x, w])
    feeds = {"x": xv, "w": wv, "b": bv}
    got = gd.evaluate([y, *grads, *dd], feeds)

    tx, tw, tb = (torch.tensor(v, requires_grad=True) for v in (xv, wv, bv))
    if isinstance(padding, str):
        ty = F.conv2d(tx, tw, tb, stride=stride, padding=padding, dilation=dilation,
                      groups=groups)
    else:
        ty = F.conv2d(_torch_pad4(tx, y.inputs[0].attrs["padding"]), tw, tb, stride=stride,
                      dilation=dilation, groups=groups)
    tgrads = torch.autograd.grad((ty * torch.tensor(uv)).sum(), [tx, tw, tb], create_graph=True)
    tdd = torch.autograd.grad((tgrads[0] ** 2).sum() + (tgrads[1] ** 2).sum(), [tx, tw])
    want = [ty, *tgrads, *tdd]
    for g, t in zip(got, want, strict=True):
        np.testing.assert_allclose(g, t.detach().numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cfg", MAX_CONFIGS)
def test_max_pool_matches_torch_with_ties(cfg, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, y = build_max(cfg)
    xs, k, s, p, d, ceil = cfg
    for xv in (rng.integers(0, 3, xs).astype(float), rng.standard_normal(xs)):
        uv = rng.standard_normal(y.shape)
        (dx,) = gd.grad(gd.sum(y * gd.constant(uv)), [x])
        (ddx,) = gd.grad(gd.sum(dx * dx * x), [x])
        got = gd.evaluate([y, dx, ddx], x=xv)
        tx = torch.tensor(xv, requires_grad=True)
        ty = F.max_pool2d(tx, k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
        (tdx,) = torch.autograd.grad((ty * torch.tensor(uv)).sum(), [tx], create_graph=True)
        (tddx,) = torch.autograd.grad((tdx * tdx * tx).sum(), [tx])
        for g, t in zip(got, [ty, tdx, tddx], strict=True):
            np.testing.assert_allclose(g, t.detach().numpy(), rtol=1e-12, atol=1e-12)
        compiled = gd.compile([y, dx])(x=xv)
        np.testing.assert_array_equal(compiled[0], got[0])
        np.testing.assert_allclose(compiled[1], got[1], rtol=1e-12, atol=1e-12)


def test_max_pool_tie_goes_to_the_first_cell_in_scan_order():
    x = f64("x", (1, 1, 2, 2))
    (dx,) = gd.grad(gd.sum(gd.max_pool2d(x, 2)), [x])
    ones = np.ones((1, 1, 2, 2))
    np.testing.assert_array_equal(gd.evaluate(dx, x=ones)[0, 0], [[1, 0], [0, 0]])
    np.testing.assert_array_equal(gd.compile(dx)(x=ones)[0, 0], [[1, 0], [0, 0]])


@pytest.mark.parametrize("cfg", AVG_CONFIGS)
def test_avg_pool_matches_torch(cfg, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, y = build_avg(cfg)
    xs, k, s, p, ceil, cip = cfg
    xv, uv = rng.standard_normal(xs), rng.standard_normal(y.shape)
    (dx,) = gd.grad(gd.sum(y * gd.constant(uv)), [x])
    got = gd.evaluate([y, dx], x=xv)
    tx = torch.tensor(xv, requires_grad=True)
    ty = F.avg_pool2d(tx, k, stride=s, padding=p, ceil_mode=ceil, count_include_pad=cip)
    (ty * torch.tensor(uv)).sum().backward()
    np.testing.assert_allclose(got[0], ty.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got[1], tx.grad.numpy(), rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- compiled NumPy code
@pytest.mark.parametrize("cfg", CONV_CONFIGS, ids=CONV_IDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_compiled_conv_matches_interpreter(cfg, dtype, rng):
    xs, ws, stride, padding, dilation, groups = cfg
    x, w = gd.input("x", xs, dtype), gd.input("w", ws, dtype)
    y = gd.conv2d(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)
    u = gd.constant(rng.standard_normal(y.shape).astype(dtype))
    dx, dw = gd.grad(gd.sum(y * u), [x, w])
    ddx, ddw = gd.grad(gd.sum(dx * dx) + gd.sum(dw * dw), [x, w])
    outs = [y, dx, dw, ddx, ddw]
    feeds = {"x": rng.standard_normal(xs).astype(dtype), "w": rng.standard_normal(ws).astype(dtype)}
    fn = gd.compile(outs)
    tol = 1e-12 if dtype == "float64" else 2e-4
    for got, want in zip(fn(feeds), gd.evaluate(outs, feeds), strict=True):
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * 10)
    assert "_conv2d(" in fn.source and "_im2col(" in fn.source


@pytest.mark.parametrize("cfg", AVG_CONFIGS + ONNX_AVG)
def test_compiled_avg_pool_gradients_match_interpreter(cfg, rng):
    x, y = build_avg(cfg)
    (dx,) = gd.grad(gd.sum(y * y), [x])
    (ddx,) = gd.grad(gd.sum(dx * dx * x), [x])
    xv = rng.standard_normal(x.shape)
    for got, want in zip(gd.compile([y, dx, ddx])(x=xv), gd.evaluate([y, dx, ddx], x=xv)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cfg", MAX_CONFIGS + ONNX_MAX)
def test_compiled_max_pool_gradients_match_interpreter(cfg, rng):
    x, y = build_max(cfg)
    (dx,) = gd.grad(gd.sum(y * y), [x])
    (ddx,) = gd.grad(gd.sum(dx * dx * x), [x])
    for xv in (rng.integers(0, 3, x.shape).astype(float), rng.standard_normal(x.shape)):
        for got, want in zip(gd.compile([y, dx, ddx])(x=xv), gd.evaluate([y, dx, ddx], x=xv)):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cfg", MAX_CONFIGS + ONNX_MAX)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.filterwarnings("ignore:invalid value encountered in multiply:RuntimeWarning")  # inf*0
def test_max_pool_and_its_gradients_share_one_arg_max_search(cfg, dtype, rng):
    """The forward pool keeps its arg-max for the gradient and select nodes (one
    `_max_pool2d_route` statement); ties, NaN and infinities route as in the interpreter."""
    x, y = build_max(cfg, gd.input("x", cfg[0], dtype))
    (dx,) = gd.grad(gd.sum(y * y), [x])
    (ddx,) = gd.grad(gd.sum(dx * dx * x), [x])  # max_pool2d_select on the same x
    fn = gd.compile([y, dx, ddx])
    run = fn.source[fn.source.index("def run("):]
    assert run.count("_max_pool2d_route(") == 1 and "_max_pool2d(" not in run
    assert "_max_pool2d_route(" not in gd.compile(y).source  # inference: the plain maximum
    special = rng.integers(0, 3, x.shape).astype(dtype)
    special.flat[rng.choice(special.size, 4, replace=False)] = [np.nan, np.inf, -np.inf, -0.0]
    for xv in (rng.integers(0, 3, x.shape).astype(dtype), special,
               np.full(x.shape, -np.inf, dtype), rng.standard_normal(x.shape).astype(dtype)):
        for got, want in zip(fn(x=xv), gd.evaluate([y, dx, ddx], x=xv), strict=True):
            assert got.dtype == want.dtype
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12)


def test_pooled_scratch_buffers_never_leak_between_calls(rng):
    """im2col slices (cols of 15 MB here: several slices) and input-gradient columns come
    from a pool reused across calls: results of one call survive the next and match the
    interpreter."""
    x, w = f64("x", (20, 3, 40, 40)), f64("w", (4, 3, 5, 5))
    y = gd.conv2d(x, w)
    u = gd.constant(rng.standard_normal(y.shape))
    dx, dw = gd.grad(gd.sum(gd.relu(y) * u), [x, w])
    fn = gd.compile([y, dx, dw])
    feeds = [{"x": rng.standard_normal(x.shape), "w": rng.standard_normal(w.shape)}
             for _ in range(2)]
    first = fn(feeds[0])
    kept = [a.copy() for a in first]
    second = fn(feeds[1])
    for got, copy in zip(first, kept, strict=True):
        np.testing.assert_array_equal(got, copy)
    for feed, got in zip(feeds, (first, second), strict=True):
        for a, want in zip(got, gd.evaluate([y, dx, dw], feed), strict=True):
            np.testing.assert_allclose(a, want, rtol=1e-10, atol=1e-10)


def test_compiled_cnn_with_unknown_batch_and_saved_module(tmp_path, rng):
    x = gd.input("x", (None, 1, 12, 12))
    w1, b1 = gd.input("w1", (4, 1, 3, 3)), gd.input("b1", (4,))
    w2 = gd.input("w2", (4 * 5 * 5, 3))
    h = gd.max_pool2d(gd.relu(gd.conv2d(x, w1, b1)), 2)
    h = gd.avg_pool2d(h, 3, stride=1, padding=1)
    logits = gd.reshape(h, (-1, 4 * 5 * 5)) @ w2
    loss = gd.sum(logits * logits)
    outs = [loss, *gd.grad(loss, [w1, b1, w2])]
    fn = gd.compile(outs)
    params = {"w1": rng.standard_normal((4, 1, 3, 3)).astype(np.float32),
              "b1": rng.standard_normal(4).astype(np.float32),
              "w2": rng.standard_normal((100, 3)).astype(np.float32)}
    for batch in (3, 5):
        feeds = {"x": rng.standard_normal((batch, 1, 12, 12)).astype(np.float32), **params}
        for got, want in zip(fn(feeds), gd.evaluate(outs, feeds)):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    src = fn.source
    assert "import numpy" in src and "graphdl" not in src.split('"""')[2]
    namespace = {}
    exec(src, namespace)  # noqa: S102 - the generated module runs alone
    got = namespace["run"](*[feeds[n] for n in namespace["INPUTS"]])
    np.testing.assert_allclose(got[0], fn(feeds)[0], rtol=1e-6)


# ---------------------------------------------------------------- errors
def test_errors_name_the_variables():
    img = gd.input("image", (2, 3, 8, 8))
    with pytest.raises(GraphError, match=r"'image'.*3 channels.*'kernels'"):
        gd.conv2d(img, gd.input("kernels", (4, 2, 3, 3)))
    with pytest.raises(GraphError, match=r"groups=2 does not divide the 3 channels of 'image'"):
        gd.conv2d(img, gd.input("k", (4, 1, 3, 3)), groups=2)
    with pytest.raises(GraphError, match=r"groups=3 does not divide the 4 output channels"):
        gd.conv2d(img, gd.input("k", (4, 1, 3, 3)), groups=3)
    with pytest.raises(GraphError, match=r"kernel.*larger than 'image'"):
        gd.conv2d(img, gd.input("big", (4, 3, 9, 3)))
    with pytest.raises(GraphError, match=r"kernel.*larger than 'image'"):
        gd.conv2d(img, gd.input("k", (4, 3, 5, 3)), dilation=2)
    gd.conv2d(img, gd.input("k", (4, 3, 9, 3)), padding=1)  # fits once padded
    with pytest.raises(GraphError, match="stride must be positive"):
        gd.conv2d(img, gd.input("k", (4, 3, 3, 3)), stride=0)
    with pytest.raises(GraphError, match="stride must be positive"):
        gd.max_pool2d(img, 2, stride=(1, -1))
    with pytest.raises(GraphError, match=r"'flat' must be 4-D"):
        gd.conv2d(gd.input("flat", (3, 8, 8)), gd.input("k", (4, 3, 3, 3)))
    with pytest.raises(GraphError, match=r"'k3' must be 4-D"):
        gd.conv2d(img, gd.input("k3", (4, 3, 3)))
    with pytest.raises(GraphError, match=r"'vec' must be 4-D"):
        gd.max_pool2d(gd.input("vec", (8,)), 2)
    with pytest.raises(GraphError, match=r"kernel.*larger than 'image'"):
        gd.avg_pool2d(img, 9)
    with pytest.raises(GraphError, match="'same' needs stride 1"):
        gd.conv2d(img, gd.input("k", (4, 3, 3, 3)), stride=2, padding="same")
    with pytest.raises(GraphError, match="padding must be"):
        gd.conv2d(img, gd.input("k", (4, 3, 3, 3)), padding="full")
    with pytest.raises(GraphError, match=r"bias 'b'.*\(4,\)"):
        gd.conv2d(img, gd.input("k", (4, 3, 3, 3)), gd.input("b", (3,)))
    with pytest.raises(GraphError, match="floating-point"):
        gd.conv2d(gd.input("ints", (1, 3, 8, 8), "int32"), gd.input("k", (4, 3, 3, 3)))


def test_unknown_batch_and_sizes_follow_pytorch():
    x = gd.input("x", (None, 3, 227, 227))
    y = gd.conv2d(x, gd.input("w", (96, 3, 11, 11)), stride=4)
    assert y.shape == (None, 96, 55, 55)
    assert gd.max_pool2d(y, 3, stride=2).shape == (None, 96, 27, 27)
    for size, k, s, p, ceil in itertools.product(range(4, 12), (2, 3), (1, 2, 3), (0, 1),
                                                 (False, True)):
        if p <= k // 2:
            torch_like = cv.pool_out(size, k, s, p, p, 1, ceil)
            expect = ((size + 2 * p - k + (s - 1 if ceil else 0)) // s) + 1
            if ceil and (expect - 1) * s >= size + p:
                expect -= 1
            assert torch_like == expect
