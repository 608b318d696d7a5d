"""random_uniform(key, shape) and dropout(x, p, key=): the same numbers for the same key on the
interpreter, compiled NumPy and CUDA-on-CPU (bit for bit), other numbers for other keys,
uniform in [0, 1); dropout scales as torch.nn.functional.dropout, its gradient mask·g/(1 − p)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import graphdl as gd
from tests.helpers import run_on, runner_params

KEY = gd.input("key", (), "int64")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(), (0, 3), (7,), (33, 65), (2, 3, 5, 4)])
def test_every_runner_draws_the_same_bits(shape, dtype):
    u = gd.random_uniform(KEY, shape, dtype)
    x = gd.input("x", (*shape, 1), "float32")
    d = gd.dropout(x, 0.3, key=KEY)
    for key in (0, -1, 12345, 2**63 - 1):
        draws = [run_on(r, [u, d], {"key": key, "x": np.ones((*shape, 1), "float32")})
                 for r in ("evaluate", "numpy", "cuda-cpu")]
        for name, got in zip(("numpy", "cuda-cpu"), draws[1:]):
            for a, b in zip(got, draws[0]):
                a = np.asarray(a)
                assert a.dtype == b.dtype and a.shape == b.shape
                assert a.tobytes() == b.tobytes(), f"{name}, key {key}"


def test_a_draw_is_uniform_on_zero_to_one():
    """Mean and variance of 10^6 draws within 6 standard errors of 1/2 and 1/12; each tenth of
    [0, 1) holds its share within 6 standard deviations of the binomial; neighbours
    uncorrelated."""
    n = 10**6
    for dtype in ("float32", "float64"):
        u = np.asarray(gd.compile(gd.random_uniform(KEY, (n,), dtype))(key=3))
        assert u.dtype == dtype and u.min() >= 0 and u.max() < 1
        assert abs(u.mean() - 0.5) < 6 * np.sqrt(1 / 12 / n)
        assert abs(u.var() - 1 / 12) < 6 * np.sqrt(1 / 180 / n)  # var of (u − 1/2)² is 1/180
        counts = np.bincount((u * 10).astype(int), minlength=10)
        assert np.all(np.abs(counts - n / 10) < 6 * np.sqrt(n * 0.1 * 0.9)), counts
        assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 6 / np.sqrt(n)


def test_same_key_same_numbers_other_keys_others():
    fn = gd.compile(gd.random_uniform(KEY, (1000,), "float64"))
    first = np.asarray(fn(key=5)).copy()
    assert np.array_equal(fn(key=5), first)
    assert np.array_equal(gd.evaluate(gd.random_uniform(5, (1000,), "float64")), first)
    draws = [np.asarray(fn(key=k)).copy() for k in (-5, 4, 6, 2**40)]
    for other in draws:
        assert np.mean(other == first) < 0.01
    # across keys, the same element is uncorrelated
    column = np.array([fn(key=k)[0] for k in range(2000)])
    assert abs(np.corrcoef(column[:-1], column[1:])[0, 1]) < 6 / np.sqrt(2000)


@pytest.mark.parametrize("runner", runner_params())
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_keeps_a_binomial_share_scaled_as_torch(p, runner, rng):
    shape = (200, 300)
    n = np.prod(shape)
    x = rng.standard_normal(shape).astype("float32")
    out = np.asarray(run_on(runner, gd.dropout(gd.input("x", shape), p, key=KEY),
                            {"x": x, "key": 99}))
    kept = np.asarray(gd.evaluate(gd.random_uniform(99, shape))) >= p
    assert abs(kept.sum() - n * (1 - p)) < 6 * np.sqrt(n * p * (1 - p))
    want = torch.from_numpy(x) * torch.from_numpy(kept) * (1 / (1 - p))  # torch's scaling
    np.testing.assert_allclose(out, want.numpy(), rtol=1e-6)


def test_dropout_gradient_is_the_mask_over_one_minus_p(rng):
    """Against autograd of x · mask / (1 − p) with the mask graphdl drew."""
    p, shape = 0.4, (6, 7)
    x = gd.input("x", shape, "float64")
    y = gd.dropout(x, p, key=KEY)
    probe = rng.standard_normal(shape)
    (dx,) = gd.grad(gd.sum(y * y * probe), [x])
    values = rng.standard_normal(shape)
    mask = np.asarray(gd.evaluate(gd.random_uniform(KEY, shape), {"key": 8})) >= p
    tx = torch.tensor(values, requires_grad=True)
    ty = tx * torch.from_numpy(mask) / (1 - p)
    (ty * ty * torch.from_numpy(probe)).sum().backward()
    got = gd.compile([y, dx])(x=values, key=8)
    np.testing.assert_allclose(got[0], ty.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(got[1], tx.grad.numpy(), rtol=1e-12)


def test_dropout_edges_follow_torch(rng):
    x = rng.standard_normal((4, 5)).astype("float32")
    node = gd.input("x", (4, 5))
    assert gd.dropout(node, 0.0, key=KEY) is node
    assert gd.dropout(node, 0.7, key=KEY, training=False) is node
    ones = gd.compile(gd.dropout(node, 1.0, key=KEY))(x=x, key=1)
    np.testing.assert_array_equal(ones, torch.nn.functional.dropout(torch.from_numpy(x), 1.0))


@pytest.mark.parametrize(("make", "match"), [
    (lambda x: gd.dropout(x, 1.5, key=1), r"p must lie in \[0, 1\]"),
    (lambda x: gd.dropout(x, -0.1, key=1), r"p must lie in \[0, 1\]"),
    (lambda x: gd.dropout(x, 0.5, key=1, mask=np.ones((2, 3), bool)), "not both"),
    (lambda x: gd.dropout(x, 0.5, key=1.5), "integer scalar"),
    (lambda x: gd.dropout(x, 0.5, key=gd.input("k", (2,), "int64")), "integer scalar"),
    (lambda x: gd.dropout(x, 0.5), "needs a key"),
    (lambda x: gd.random_uniform(x, (2,)), "integer scalar"),
    (lambda x: gd.random_uniform(1, (2, -1)), "non-negative ints"),
    (lambda x: gd.random_uniform(1, (2,), "float16"), "float32, float64"),
    (lambda x: gd.random_uniform(2**64, (2,)), "64 bits"),
])
def test_bad_arguments_are_refused_by_name(make, match):
    with pytest.raises(gd.GraphError, match=match):
        make(gd.input("x", (2, 3)))


def test_a_draw_of_an_unknown_shape_follows_its_fed_size():
    x = gd.input("x", (None, 3))
    fn = gd.compile(gd.random_uniform(KEY, x))
    small, large = np.asarray(fn(x=np.zeros((2, 3), "float32"), key=4)).copy(), \
        np.asarray(fn(x=np.zeros((5, 3), "float32"), key=4))
    assert large.shape == (5, 3)
    np.testing.assert_array_equal(large[:2], small)  # element i depends on (key, i) only


def test_onnxruntime_draws_the_same_bits_from_a_fed_key(rng):
    ort = pytest.importorskip("onnxruntime")
    x = gd.input("x", (30, 7))
    outputs = [gd.random_uniform(KEY, (101, 3), "float64"), gd.dropout(x, 0.3, key=KEY * 2 + 1)]
    session = ort.InferenceSession(gd.onnx.save(outputs).SerializeToString())
    values = rng.standard_normal((30, 7)).astype("float32")
    for key in (-5, 0, 2**62 + 17):
        got = session.run(None, {"key": np.asarray(key, "int64"), "x": values})
        for a, b in zip(got, gd.evaluate(outputs, {"key": key, "x": values})):
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
