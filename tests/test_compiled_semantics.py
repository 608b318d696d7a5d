"""What a compiled function returns and writes: declared shapes and dtypes, arrays the caller
owns, and updates as one simultaneous assignment (regressions found by differential testing)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import graphdl as gd
from graphdl.errors import InputError


def f64(name, shape):
    return gd.input(name, shape, "float64")


@pytest.mark.parametrize("optimize", [True, False])
def test_two_broadcast_operands_keep_the_declared_shape(optimize):
    a, b = f64("a", (3,)), f64("b", (1, 3))
    y = gd.broadcast_to(a, (4, 3)) + gd.broadcast_to(b, (4, 3))
    fn = gd.compile([y, gd.sum(y), gd.reshape(y, (12,))], optimize=optimize)
    got, total, flat = fn(a=np.ones(3), b=np.ones((1, 3)))
    assert got.shape == (4, 3) and total == 24.0 and flat.shape == (12,)
    np.testing.assert_array_equal(got, np.full((4, 3), 2.0))


def test_second_derivative_through_broadcast_log_softmax_compiles():
    x = f64("x", (2, 3))
    y = gd.broadcast_to(gd.log_softmax(x), (2, 2, 3))
    (g,) = gd.grad(gd.sum(y * y), [x])
    (h,) = gd.grad(gd.sum(g * g), [x])
    v = np.array([[0.1, -0.4, 2.0], [1.5, 0.3, -1.0]])
    want = gd.evaluate(h, x=v)
    for optimize in (True, False):
        np.testing.assert_allclose(gd.compile(h, optimize=optimize)(x=v), want, rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_pow_zero_has_the_input_shape_and_dtype(dtype):
    x = gd.input("x", (3,), dtype)
    got = gd.compile(x ** 0)(x=np.array([0.0, 2.0, np.nan]))
    assert got.shape == (3,) and got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, np.ones(3))


def test_debug_mode_checks_every_statement_shape_and_dtype():
    a, b = f64("a", (3,)), f64("b", (1, 3))
    y = gd.broadcast_to(a, (4, 3)) + gd.broadcast_to(b, (4, 3))
    fn = gd.compile(y * 2.0, debug=True)
    assert "_check(" in fn.source and "(4, 3), numpy.float64)" in fn.source
    assert fn(a=np.ones(3), b=np.ones((1, 3))).shape == (4, 3)


def test_updates_are_one_simultaneous_assignment():
    a, b = f64("a", (3,)), f64("b", (3,))
    fn = gd.compile([a + 0.5], updates={a: b, b: a})
    av, bv = np.zeros(3), np.ones(3)
    (out,) = fn(a=av, b=bv)
    np.testing.assert_array_equal(av, np.ones(3))
    np.testing.assert_array_equal(bv, np.zeros(3))
    np.testing.assert_array_equal(out, np.full(3, 0.5))  # computed from a at call time


@pytest.mark.parametrize("optimize", [True, False])
def test_update_reading_another_updated_input_sees_its_old_value(optimize):
    m, n = f64("m", (2, 2)), f64("n", (4,))
    fn = gd.compile([m, gd.reshape(m, (4,))], optimize=optimize,
                    updates={m: m - 1, n: gd.reshape(m, (4,))})
    mv, nv = np.arange(4.0).reshape(2, 2), np.zeros(4)
    out_m, out_flat = fn(m=mv, n=nv)
    np.testing.assert_array_equal(nv, [0.0, 1.0, 2.0, 3.0])  # the old m
    np.testing.assert_array_equal(mv, [[-1.0, 0.0], [1.0, 2.0]])
    np.testing.assert_array_equal(out_m, [[0.0, 1.0], [2.0, 3.0]])  # values at call time
    np.testing.assert_array_equal(out_flat, [0.0, 1.0, 2.0, 3.0])
    assert out_m is not mv and not np.shares_memory(out_m, mv)
    assert not np.shares_memory(out_flat, mv)


def test_in_place_subtract_update_reads_other_updates_before_any_write():
    w, v = f64("w", (2,)), f64("v", (2,))
    fn = gd.compile([], updates={w: w - v, v: v - w})
    wv, vv = np.array([5.0, 7.0]), np.array([1.0, 2.0])
    fn(w=wv, v=vv)
    np.testing.assert_array_equal(wv, [4.0, 5.0])
    np.testing.assert_array_equal(vv, [-4.0, -5.0])


def test_one_array_fed_to_two_updated_inputs_is_refused():
    a, b = f64("a", (3,)), f64("b", (3,))
    fn = gd.compile([a * 2.0], updates={a: b, b: a})
    shared = np.zeros(3)
    with pytest.raises(InputError, match="'a' and 'b' are both updated in place"):
        fn(a=shared, b=shared)
    with pytest.raises(InputError, match="share memory"):
        fn(a=shared[:3], b=shared)


def test_gradient_outputs_are_writeable_and_own_their_memory():
    x = f64("x", (3,))
    (g,) = gd.grad(gd.mean(x), [x])
    for optimize in (True, False):
        first, second, same_input = gd.compile([g, g, x], optimize=optimize)(x=np.ones(3))
        for out in (first, second, same_input):
            assert out.flags.writeable and out.flags.owndata
        first += 1.0  # a caller's in-place update touches nothing else
        np.testing.assert_array_equal(second, np.full(3, 1 / 3))


def test_input_returned_as_output_is_a_copy():
    x = f64("x", (2,))
    xv = np.array([1.0, 2.0])
    out = gd.compile(gd.stop_gradient(x))(x=xv)
    assert out is not xv and not np.shares_memory(out, xv)


@pytest.mark.parametrize("optimize", [True, False])
def test_conv2d_on_an_empty_batch(optimize):
    x, w = f64("x", (None, 2, 5, 5)), f64("w", (4, 1, 3, 3))
    y = gd.max_pool2d(gd.conv2d(x, w, stride=2, padding=1, groups=2), 2, ceil_mode=True)
    loss = gd.sum(y * y)
    outs = [y, loss, *gd.grad(loss, [x, w])]
    feeds = {"x": np.zeros((0, 2, 5, 5)), "w": np.ones((4, 1, 3, 3))}
    got = gd.compile(outs, optimize=optimize)(feeds)
    want = gd.evaluate(outs, feeds)
    assert [g.shape for g in got] == [(0, 4, 2, 2), (), (0, 2, 5, 5), (4, 1, 3, 3)]
    for g, e in zip(got, want):
        np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize("optimize", [True, False])
def test_fused_broadcast_keeps_its_shape_into_a_reduction_or_view(optimize):
    x = f64("x", (1, 7))
    wide = gd.broadcast_to(x, (300, 7)) * 2.0
    outs = [gd.sum(wide, axis=0), gd.reshape(wide, (2100,)), gd.sum(x ** 0, axis=1),
            gd.sum(gd.broadcast_to(x, (300, 7)) * gd.broadcast_to(x, (300, 7)))]
    xv = np.arange(7.0).reshape(1, 7)
    got = gd.compile(outs, optimize=optimize)(x=xv)
    want = [600.0 * xv[0], np.tile(2.0 * xv[0], 300), np.array([7.0]), 300 * np.sum(xv * xv)]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-13)


def test_optimizer_guarantee_for_reductions_over_folded_constants(rng):
    """Folding makes `transpose(C) * 1.5` a contiguous constant where the unoptimized code
    multiplies a view: products and sums over it may round differently in the last bits only."""
    c = gd.constant(rng.standard_normal((5, 7)))
    x = f64("x", (3, 7))
    outs = [x @ (gd.transpose(c) * 1.5), gd.sum(gd.transpose(gd.exp(c)), axis=1),
            gd.sum(gd.broadcast_to(gd.constant(rng.standard_normal((1, 7))), (300, 7)) * gd.sum(x))]
    xv = rng.standard_normal((3, 7))
    fast = gd.compile(outs, optimize=True)(x=xv)
    plain = gd.compile(outs, optimize=False)(x=xv)
    for f, p, w in zip(fast, plain, gd.evaluate(outs, x=xv)):
        np.testing.assert_allclose(f, p, rtol=1e-13, atol=1e-13 * np.max(np.abs(w)))
        np.testing.assert_allclose(f, w, rtol=1e-13, atol=1e-13 * np.max(np.abs(w)))


def test_constant_arrays_holding_inf_and_nan_compile():
    x = gd.input("x", (3,), "float32")
    c = gd.constant(np.array([np.inf, -np.inf, np.nan], np.float32))
    got = gd.compile(gd.maximum(x, c), optimize=False)(x=np.zeros(3, np.float32))
    np.testing.assert_array_equal(got, [np.inf, 0.0, np.nan])


def test_folded_uniform_constants_stay_scalars_and_keep_dtypes(rng):
    """The mean's gradient folds to one repeated number: it stays a scalar broadcast (no
    (batch, classes) blob in the source), and printed as a scalar it keeps float32 (a bare
    Python float beside only scalars would compute in float64)."""
    logits = gd.input("logits", (64, 10), "float32")
    labels = gd.input("labels", (64,), "int64")
    loss = gd.softmax_cross_entropy(logits, labels)
    (grad,) = gd.grad(loss, [logits])
    fn = gd.compile([loss, grad])
    assert "base64" not in fn.source
    feeds = {"logits": rng.standard_normal((64, 10)).astype(np.float32),
             "labels": rng.integers(0, 10, 64)}
    got = fn(feeds)  # the call checks every output's declared dtype
    assert got[1].dtype == np.float32
    np.testing.assert_allclose(got[1], gd.evaluate(grad, feeds), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("backend", ["numpy", "cuda"])
def test_large_constants_live_beside_the_module_not_in_its_text(backend, tmp_path, rng):
    if backend == "cuda" and shutil.which("g++") is None:
        pytest.skip("device='cpu' needs g++")
    table = rng.standard_normal((300, 4))
    x = f64("x", (300, 4))
    fn = gd.compile(gd.sum(x * gd.constant(table)), backend=backend,
                    **({"device": "cpu"} if backend == "cuda" else {}))
    xv = rng.standard_normal((300, 4))
    np.testing.assert_allclose(fn(x=xv), np.sum(xv * table), rtol=1e-12)
    module = fn._last.generated.module
    assert len(module) < 20_000 and "_CONSTANTS[" in module
    fn.save(tmp_path / "model.py")
    saved = np.load(tmp_path / "model.npz")
    assert len(saved.files) == 1 and np.array_equal(saved[saved.files[0]], table)
