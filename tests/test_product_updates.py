"""Updates `W - s * (A @ B)` accumulated into W by one BLAS product (`_gemm_update`): equal to the
dense form within float rounding, through NumPy's own BLAS or NumPy calls, on every memory
layout; refused where the product could read an array a write changes, or is read elsewhere."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import graphdl as gd
from graphdl.codegen import cuda_backend, numpy_backend
from graphdl.codegen.accumulate import ProductUpdate
from graphdl.codegen.lower import Statement, Update, lower, rewritten
from graphdl.codegen.numpy_backend import update_kernels as blas


def _layouts(rng, dtype):
    """(c, a, b) with a and b in C order, Fortran order and strided views."""
    a = rng.standard_normal((12, 7)).astype(dtype)
    b = rng.standard_normal((7, 5)).astype(dtype)
    yield a, b
    yield np.asfortranarray(a), np.asfortranarray(b)
    yield rng.standard_normal((7, 12)).astype(dtype).T, b
    yield rng.standard_normal((12, 14)).astype(dtype)[:, ::2], b[:, ::-1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("gemm", [True, False], ids=["numpy's blas gemm", "numpy calls"])
def test_gemm_update_equals_the_dense_form(dtype, gemm, rng, monkeypatch):
    if gemm and blas._blas_gemm(np.dtype(dtype)) is None:
        pytest.skip("NumPy's BLAS is not the OpenBLAS of NumPy's wheels here")
    if not gemm:
        monkeypatch.setattr(blas, "_blas_gemm", lambda dtype: None)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for a, b in _layouts(rng, dtype):
        for c in (rng.standard_normal((12, 5)).astype(dtype),
                  np.asfortranarray(rng.standard_normal((12, 5)).astype(dtype))):
            want = c - dtype(0.1) * (a @ b)
            address = c.ctypes.data
            blas._gemm_update(c, dtype(0.1), a, b)
            assert c.ctypes.data == address  # written in place
            np.testing.assert_allclose(c, want, rtol=tol, atol=tol)


def test_gemm_update_with_an_empty_inner_dimension_changes_nothing(rng):
    c = rng.standard_normal((3, 4)).astype(np.float32)
    before = c.copy()
    blas._gemm_update(c, 0.5, np.zeros((3, 0), np.float32), np.zeros((0, 4), np.float32))
    np.testing.assert_array_equal(c, before)


def _sgd(with_grads_out=False, lr=0.1):
    x, y = gd.input("x", (16, 10)), gd.input("y", (16,), "int64")
    W1, W2 = gd.input("W1", (10, 8)), gd.input("W2", (8, 3))
    loss = gd.softmax_cross_entropy(gd.tanh(x @ W1) @ W2, y)
    grads = gd.grad(loss, [W1, W2])
    outputs = [loss, *grads] if with_grads_out else [loss]
    return outputs, {W1: W1 - lr * grads[0], W2: W2 - lr * grads[1]}


def _feeds(rng):
    return {"x": rng.standard_normal((16, 10)).astype(np.float32),
            "y": rng.integers(0, 3, 16),
            "W1": rng.standard_normal((10, 8)).astype(np.float32),
            "W2": rng.standard_normal((8, 3)).astype(np.float32)}


def _step(outputs, updates, feeds, **options):
    params = {k: v.copy() for k, v in feeds.items()}
    fn = gd.compile(outputs, updates=updates, **options)
    fn(params)
    return fn, params


@pytest.mark.parametrize("with_grads_out", [False, True])
def test_sgd_step_is_the_dense_step(with_grads_out, rng):
    outputs, updates = _sgd(with_grads_out)
    feeds = _feeds(rng)
    fn, got = _step(outputs, updates, feeds)
    _, want = _step(outputs, updates, feeds, optimize=False, debug=True)
    assert fn.source.count("_gemm_update(W") == (0 if with_grads_out else 2)
    for k in ("W1", "W2"):
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)


def test_a_learning_rate_fed_at_call_time_scales_the_product(rng):
    lr = gd.input("lr", ())
    outputs, updates = _sgd(lr=lr)
    feeds = {**_feeds(rng), "lr": np.float32(0.05)}
    fn, got = _step(outputs, updates, feeds)
    _, want = _step(outputs, updates, feeds, debug=True)
    assert "_gemm_update(W1, lr," in fn.source
    np.testing.assert_allclose(got["W1"], want["W1"], rtol=1e-5, atol=1e-6)


def test_a_product_reading_an_updated_input_is_not_accumulated(rng):
    """W1's new value reads W2 and W2's reads W1: both must see the old values (one
    simultaneous assignment), so neither product may run while the other is being written."""
    W1, W2 = gd.input("W1", (4, 4)), gd.input("W2", (4, 4))
    A = gd.input("A", (4, 4))
    updates = {W1: W1 - 0.5 * (A @ W2), W2: W2 - 0.5 * (gd.transpose(W1) @ A)}
    feeds = {k: rng.standard_normal((4, 4)).astype(np.float32) for k in ("W1", "W2", "A")}
    fn, got = _step([gd.sum(A)], updates, feeds)
    assert "_gemm_update" not in fn.source
    np.testing.assert_allclose(got["W1"], feeds["W1"] - 0.5 * (feeds["A"] @ feeds["W2"]),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["W2"], feeds["W2"] - 0.5 * (feeds["W1"].T @ feeds["A"]),
                               rtol=1e-5, atol=1e-6)


def test_the_lowering_writes_plain_updates_that_the_numpy_target_rewrites():
    """`lower` knows no accumulation: the update is an `Update` and its product a statement.
    The NumPy target's rewrites make it a `ProductUpdate` and drop the product's statement;
    CUDA's (scatters only) and an unfused program (debug) keep the plain update."""
    x, W = gd.input("x", (6, 4)), gd.input("W", (4, 3))
    dW = gd.transpose(x) @ gd.tanh(x @ W)
    args = ([gd.sum(x)], [x, W], [(W, W - 0.1 * dW)])

    def products(program):  # statements computing dW
        return sum(isinstance(s, Statement) and s.node is dW for s in program.statements)

    plain = lower(*args, numpy_backend.BACKEND.target)
    assert [type(u) for u in plain.updates] == [Update] and products(plain) == 1
    (update,) = rewritten(plain).updates
    assert isinstance(update, ProductUpdate) and update.b is dW.inputs[1]
    assert products(rewritten(plain)) == 0
    for program in (lower(*args, cuda_backend.BACKEND.target),
                    lower(*args, numpy_backend.BACKEND.target, fuse=False)):
        assert [type(u) for u in rewritten(program).updates] == [Update]


def test_debug_mode_keeps_one_checked_statement_per_node():
    outputs, updates = _sgd()
    assert "_gemm_update" not in gd.compile(outputs, updates=updates, debug=True).source


def test_a_saved_module_updates_with_numpy_alone(rng, tmp_path):
    outputs, updates = _sgd()
    feeds = _feeds(rng)
    fn, want = _step(outputs, updates, feeds)
    fn.save(tmp_path / "step.py")
    np.savez(tmp_path / "feeds.npz", **feeds)
    script = f"""
import sys
sys.modules["scipy"] = sys.modules["graphdl"] = None  # importing them fails
sys.path.insert(0, {str(tmp_path)!r})
import numpy, step
feeds = dict(numpy.load({str(tmp_path / "feeds.npz")!r}))
step.run(**feeds)
numpy.savez({str(tmp_path / "after.npz")!r}, W1=feeds["W1"], W2=feeds["W2"])
"""
    subprocess.run([sys.executable, "-c", script], check=True)
    after = np.load(tmp_path / "after.npz")
    for k in ("W1", "W2"):
        np.testing.assert_allclose(after[k], want[k], rtol=1e-5, atol=1e-6)
