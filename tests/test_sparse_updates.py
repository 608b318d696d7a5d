"""Updates by the gradient of `take` (an embedding lookup) touch only the addressed rows: the
generated step has no dense zero gradient and no pass over the table, repeated indices add up,
and the result equals the dense step within float rounding."""

from __future__ import annotations

import re
import shutil
import sys

import numpy as np
import pytest

import graphdl as gd
from graphdl import runtime
from graphdl.codegen.numpy_backend import update_kernels


def skipgram(V, D, B, K, dtype="float32", lr=0.025):
    """Skip-gram with negative sampling, declared the obvious way."""
    W_in, W_out = gd.input("W_in", (V, D), dtype), gd.input("W_out", (V, D), dtype)
    center, context = gd.input("center", (B,), "int64"), gd.input("context", (B,), "int64")
    negatives = gd.input("negatives", (B, K), "int64")
    v = gd.take(W_in, center, axis=0)
    u, un = gd.take(W_out, context, axis=0), gd.take(W_out, negatives, axis=0)
    positive = gd.sum(v * u, axis=1)
    negative = gd.sum(gd.expand_dims(v, 1) * un, axis=2)
    loss = gd.sum(gd.softplus(-positive)) + gd.sum(gd.softplus(negative))
    d_in, d_out = gd.grad(loss, [W_in, W_out])
    return loss, {W_in: W_in - lr * d_in, W_out: W_out - lr * d_out}


def feeds(rng, V, D, B, K, dtype=np.float32):
    return {"W_in": (rng.standard_normal((V, D)) * 0.5).astype(dtype),
            "W_out": (rng.standard_normal((V, D)) * 0.5).astype(dtype),
            "center": rng.integers(0, 4, B),  # few distinct rows: many repeats
            "context": rng.integers(-V, V, B),  # negative indices count from the end
            "negatives": rng.integers(0, V, (B, K))}


def step(loss, updates, fed, **options):
    arrays = {k: v.copy() for k, v in fed.items()}
    fn = gd.compile(loss, updates=updates, **options)
    value = fn(arrays)
    return fn, value, arrays


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sparse_step_equals_the_dense_step(dtype, rng):
    loss, updates = skipgram(50, 8, 32, 5, dtype)
    fed = feeds(rng, 50, 8, 32, 5, np.dtype(dtype))
    fn, got_loss, got = step(loss, updates, fed)
    _, want_loss, want = step(loss, updates, fed, debug=True)  # the dense form, node by node
    assert "_scatter_update(W_in" in fn.source and "_scatter_update(W_out" in fn.source
    assert "_scatter_add" not in fn.source and "numpy.zeros((50, 8)" not in fn.source
    tol = 1e-6 if dtype == "float32" else 1e-13
    np.testing.assert_allclose(got_loss, want_loss, rtol=tol)
    for k in ("W_in", "W_out"):
        np.testing.assert_allclose(got[k], want[k], rtol=tol, atol=tol)


def scatter_terms(source, target):
    """The terms of the generated `_scatter_update(target, ...)` call, each as its names."""
    call = re.search(rf"_scatter_update\({target}, [^,]+, \d+, \((.*)\)\)  #", source)
    return [term.split(", ") for term in re.findall(r"\(([^()]*)\)", call.group(1))]


def test_outer_product_gradients_reach_the_update_as_their_factors(rng):
    """W_out's gradients are (σ(score) − label) times the center's row: the update gets the
    coefficients and the rows, never their (B, K, D) products; W_in's is a sum: kept whole."""
    loss, updates = skipgram(50, 8, 32, 5)
    fn, _, _ = step(loss, updates, feeds(rng, 50, 8, 32, 5))
    assert [len(t) for t in scatter_terms(fn.source, "W_out")] == [3, 3]
    assert [len(t) for t in scatter_terms(fn.source, "W_in")] == [2]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_without_scipy_the_factors_are_multiplied_out_to_the_same_step(dtype, rng,
                                                                        monkeypatch):
    loss, updates = skipgram(50, 8, 32, 5, dtype)
    fed = feeds(rng, 50, 8, 32, 5, np.dtype(dtype))
    _, _, with_scipy = step(loss, updates, fed)
    monkeypatch.setitem(sys.modules, "scipy", None)  # `from scipy import sparse` fails
    _, _, without = step(loss, updates, fed)
    _, _, dense = step(loss, updates, fed, debug=True)
    tol = 1e-6 if dtype == "float32" else 1e-13
    for got in (with_scipy, without):
        np.testing.assert_allclose(got["W_out"], dense["W_out"], rtol=tol, atol=tol)


def test_factors_broadcast_along_index_axes_with_repeats_and_negative_indices(rng):
    """Rows shared by the K indices of a batch row, coefficients one per index, mixed with
    a plain term into the same table (CBOW's masked mean has this shape)."""
    B, K, V, D = 6, 4, 5, 3
    table = gd.input("table", (V, D), "float64")
    idx, other = gd.input("idx", (B, K), "int64"), gd.input("other", (B,), "int64")
    mask, h = gd.input("mask", (B, K), "float64"), gd.input("h", (B, D), "float64")
    rows = gd.take(table, idx, axis=0)  # (B, K, D)
    mean = gd.sum(rows * gd.expand_dims(mask, 2), axis=1) / gd.sum(mask, axis=1, keepdims=True)
    loss = gd.sum(mean * h) + gd.sum(gd.take(table, other, axis=0) ** 2)
    (grad,) = gd.grad(loss, [table])
    updates = {table: table - 0.5 * grad}
    fed = {"table": rng.standard_normal((V, D)), "idx": rng.integers(-V, V, (B, K)),
           "other": rng.integers(0, 2, B), "mask": (rng.random((B, K)) < 0.7) + 0.0,
           "h": rng.standard_normal((B, D))}
    fed["mask"][:, 0] = 1.0
    fn, _, got = step(loss, updates, fed)
    _, _, want = step(loss, updates, fed, debug=True)
    assert sorted(len(t) for t in scatter_terms(fn.source, "table")) == [2, 3]
    np.testing.assert_allclose(got["table"], want["table"], rtol=1e-13, atol=1e-13)


def test_rows_no_index_addresses_are_left_bit_for_bit(rng):
    loss, updates = skipgram(50, 8, 32, 5)
    fed = feeds(rng, 50, 8, 32, 5)
    _, _, got = step(loss, updates, fed)
    touched = set(fed["center"] % 50)
    untouched = [r for r in range(50) if r not in touched]
    assert np.array_equal(got["W_in"][untouched], fed["W_in"][untouched])
    assert not np.array_equal(got["W_in"][sorted(touched)], fed["W_in"][sorted(touched)])


def test_a_row_addressed_many_times_moves_by_the_sum(rng):
    table, idx = gd.input("table", (4, 3)), gd.input("idx", (6,), "int64")
    loss = gd.sum(gd.take(table, idx, axis=0) * gd.constant(np.arange(18.0).reshape(6, 3)))
    (grad,) = gd.grad(loss, [table])
    fed = {"table": np.zeros((4, 3), np.float32), "idx": np.array([1, 1, 3, -3, 1, 0])}
    fn, _, got = step(loss, {table: table - 1.0 * grad}, fed)
    assert "_scatter_update" in fn.source
    rows = np.arange(18.0).reshape(6, 3)
    want = -np.stack([rows[5], rows[0] + rows[1] + rows[3] + rows[4], np.zeros(3), rows[2]])
    np.testing.assert_array_equal(got["table"], want.astype(np.float32))


def test_take_along_another_axis_updates_its_columns(rng):
    table, idx = gd.input("table", (3, 7, 2)), gd.input("idx", (2, 4), "int64")
    picked = gd.take(table, idx, axis=1)  # (3, 2, 4, 2)
    loss = gd.sum(picked * picked)
    (grad,) = gd.grad(loss, [table])
    updates = {table: table - 0.1 * grad}
    fed = {"table": rng.standard_normal((3, 7, 2)).astype(np.float32),
           "idx": rng.integers(-7, 7, (2, 4))}
    fn, _, got = step(loss, updates, fed)
    _, _, want = step(loss, updates, fed, debug=True)
    assert "_scatter_update(table, numpy.float32(0.1), 1," in fn.source
    np.testing.assert_allclose(got["table"], want["table"], rtol=1e-6, atol=1e-6)


def test_the_gradient_as_an_output_keeps_the_dense_form(rng):
    loss, updates = skipgram(20, 4, 8, 3)
    W_in = next(t for t in updates if t.name == "W_in")
    (d_in,) = gd.grad(loss, [W_in])
    fn = gd.compile([loss, d_in], updates=updates)
    assert "_scatter_update(W_in" not in fn.source  # d_in is returned: it must exist


def test_indices_from_an_updated_input_are_not_accumulated(rng):
    """The rows to move are read while targets are being written: an updated index array
    (however unusual) keeps the plain simultaneous assignment."""
    table, idx = gd.input("table", (5, 2)), gd.input("idx", (3,), "int64")
    rows = gd.take(table, idx, axis=0)
    (grad,) = gd.grad(gd.sum(rows * rows), [table])
    updates = {idx: idx + 1, table: table - 0.5 * grad}  # idx is written first
    fed = {"table": rng.standard_normal((5, 2)).astype(np.float32), "idx": np.array([0, 2, 2])}
    fn, _, got = step([gd.sum(table)], updates, fed)
    assert "_scatter_update" not in fn.source
    want = fed["table"].copy()
    np.add.at(want, fed["idx"], -0.5 * 2 * fed["table"][fed["idx"]])
    np.testing.assert_allclose(got["table"], want, rtol=1e-6)
    np.testing.assert_array_equal(got["idx"], [1, 3, 3])


def test_rows_summed_matches_add_at_with_repeats_and_negative_indices(rng):
    indices = rng.integers(-9, 9, 200)
    slices = rng.standard_normal((200, 3))
    rows, sums = runtime._rows_summed(indices, slices, 9)
    dense = np.zeros((9, 3))
    np.add.at(dense, indices, slices)
    assert list(rows) == sorted(set(indices % 9))
    np.testing.assert_allclose(sums, dense[rows], rtol=1e-12, atol=1e-12)
    empty_rows, empty_sums = runtime._rows_summed(np.zeros(0, np.int64), np.zeros((0, 3)), 9)
    assert empty_rows.size == 0 and empty_sums.shape == (0, 3)


@pytest.mark.skipif(shutil.which("g++") is None, reason="device='cpu' compiles CUDA with g++")
def test_cuda_kernels_update_only_the_addressed_rows(rng):
    """The CUDA backend's scatter update (atomics into the target) on the CPU emulator."""
    loss, updates = skipgram(30, 4, 16, 3, "float64")
    fed = feeds(rng, 30, 4, 16, 3, np.float64)
    fn, got_loss, got = step(loss, updates, fed, backend="cuda", device="cpu")
    _, want_loss, want = step(loss, updates, fed, debug=True)
    assert "k_update_W_in" in fn.source and "scatter_add" not in fn.source
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-12)
    for k in ("W_in", "W_out"):
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", [7, 2**16, 2**16 + 1, 2**32 + 5])
def test_stable_order_is_numpys_stable_argsort(n, rng):
    """One radix pass up to 2**16 rows, two up to 2**32, NumPy's comparison sort beyond: each
    the same order as argsort(kind="stable"), ties in their order of appearance."""
    keys = rng.integers(0, n, 3000)
    keys[::7] = keys[0]  # many ties
    keys[1::11] = n - 1
    np.testing.assert_array_equal(runtime._stable_order(keys, n),
                                  np.argsort(keys, kind="stable"))
    if n < 2**8:  # narrow index dtypes, as `take` accepts them
        for dtype in (np.uint8, np.int16):
            np.testing.assert_array_equal(runtime._stable_order(keys.astype(dtype), n),
                                          np.argsort(keys, kind="stable"))


@pytest.mark.parametrize("with_scipy", [True, False])
@pytest.mark.parametrize("case", ["empty", "int8 negative", "int64 and uint64", "3-D axis 1"])
def test_scatter_update_matches_add_at_on_edge_indices(case, with_scipy, rng, monkeypatch):
    """The generated `_scatter_update` against numpy.add.at: no index at all, negative indices
    of a dtype the table's size does not fit, terms whose index dtypes differ, a middle axis."""
    if not with_scipy:
        monkeypatch.setitem(sys.modules, "scipy", None)
    target, axis = rng.standard_normal((200, 3)), 0
    if case == "empty":
        terms = [(np.zeros(0, np.int64), np.zeros((0, 3)))]
    elif case == "int8 negative":
        terms = [(np.array([-1, 5, -1, 127], np.int8), rng.standard_normal((4, 3)))]
    elif case == "int64 and uint64":
        terms = [(np.array([3, -2]), rng.standard_normal((2, 3))),
                 (np.array([3, 7], np.uint64), rng.standard_normal((2, 3)))]
    else:
        target, axis = rng.standard_normal((2, 9, 4)), 1
        terms = [(np.array([[8, 0], [8, -1]]), rng.standard_normal((2, 2, 2, 4)))]
    want = target.copy()
    moved = np.moveaxis(want, axis, 0)
    for index, g in terms:
        slices = runtime._index_major(g, index.ndim, axis).reshape(index.shape + moved.shape[1:])
        np.add.at(moved, index.astype(np.int64), -0.1 * slices)
    update_kernels._scatter_update(target, 0.1, axis, terms)
    np.testing.assert_allclose(target, want, rtol=1e-13, atol=1e-13)
