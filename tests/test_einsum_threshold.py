"""Both sides of the NumPy backend's size thresholds, in every float dtype: every value a
compiled step computes has the graph's dtype (issue 19 item 8: float32 loss gradients came out
float64 above 4,096 logits, an internal error as an output and a silent float64 step inside
`updates=`).

The thresholds the losses cross: `optimize.FOLD_LIMIT` (a constant result of more elements
stays a broadcast of one number, which fusion prints as the bare number; printed as a Python
float where NumPy's weak typing made the result float64) and `op_code.CONTRACTED_TERMS` (a sum
of a product is one einsum up to that many terms, else a product and numpy.sum)."""

import subprocess
import sys

import numpy as np
import pytest

import graphdl as gd
from graphdl.codegen.numpy_backend.op_code import CONTRACTED_TERMS
from graphdl.ir import topological_order
from graphdl.passes.optimize import FOLD_LIMIT

assert FOLD_LIMIT == CONTRACTED_TERMS == 4096  # the shapes below sit on both sides of 4,096

DTYPES = ["float16", "float32", "float64"]
RTOL = {"float16": 1e-2, "float32": 1e-5, "float64": 1e-12}
# (batch, classes): 4,096 logits, 4,097 (17 × 241), and far above (the 410 × 10 and
# 64 × 100 sit between)
LOGITS = [(64, 64), (17, 241), (410, 10), (512, 100)]


def declared_float_dtypes(nodes):
    return {n.dtype.name for n in topological_order(nodes) if n.dtype.kind == "f"}


def float_dtypes_bound(fn, **feeds):
    """The dtypes of the float arrays and scalars the generated `run` binds to its names while
    it runs once on `feeds` (each line's locals, traced): those the graph declares, no other
    (a float16 mean sums in float32)."""
    run = fn.specialize({k: np.shape(v) for k, v in feeds.items()}).run
    seen = set()

    def lines(frame, event, arg):
        seen.update(v.dtype.name for v in frame.f_locals.values()
                    if isinstance(v, np.ndarray | np.generic) and v.dtype.kind == "f")
        return lines

    sys.settrace(lambda frame, event, arg: lines if frame.f_code is run.__code__ else None)
    try:
        fn(**feeds)
    finally:
        sys.settrace(None)
    return seen


def _loss(kind, logits, n, c):
    if kind == "hinge":
        return gd.hinge_loss(logits, gd.input("y", (n,), "int64")), {}
    if kind == "one_hot":
        return gd.softmax_cross_entropy(logits, gd.input("y", (n, c), logits.dtype.name)), {}
    return gd.softmax_cross_entropy(logits, gd.input("y", (n,), "int64")), {}


def _labels(kind, n, c, dtype, rng):
    y = rng.integers(0, c, n)
    return np.eye(c, dtype=dtype)[y] if kind == "one_hot" else y


@pytest.mark.parametrize("optimize", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", LOGITS)
@pytest.mark.parametrize("kind", ["int", "one_hot", "hinge"])
def test_loss_gradient_keeps_dtype(kind, shape, dtype, optimize):
    n, c = shape
    rng = np.random.default_rng(n * c)
    x = gd.input("x", shape, dtype)
    loss, _ = _loss(kind, x, n, c)
    (dx,) = gd.grad(loss, [x])
    fn = gd.compile([loss, dx], optimize=optimize)
    feeds = {"x": rng.standard_normal(shape).astype(dtype), "y": _labels(kind, n, c, dtype, rng)}
    got = fn(**feeds)  # raised "output 1 ... float64" for float32 above 4,096 logits
    assert [g.dtype for g in got] == [np.dtype(dtype)] * 2
    assert float_dtypes_bound(fn, **feeds) == declared_float_dtypes([loss, dx])
    for g, want in zip(got, gd.evaluate([loss, dx], **feeds)):
        np.testing.assert_allclose(g, want, rtol=RTOL[dtype], atol=RTOL[dtype] / n)


@pytest.mark.parametrize("optimize", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", LOGITS)
@pytest.mark.parametrize("kind", ["int", "hinge"])
def test_classifier_step_keeps_dtype(kind, shape, dtype, optimize):
    """A linear classifier's sgd step: W is updated in its own dtype, computed in it."""
    n, c = shape
    rng = np.random.default_rng(n + c)
    X, W = gd.input("X", (n, 8), dtype), gd.input("W", (8, c), dtype)
    loss, _ = _loss(kind, X @ W, n, c)
    opt = gd.optim.sgd(loss, [W], lr=0.1)
    fn = gd.compile(loss, updates=opt.updates, optimize=optimize)
    feeds = {"X": rng.standard_normal((n, 8)).astype(dtype), "y": rng.integers(0, c, n)}
    w0 = rng.standard_normal((8, c)).astype(dtype)
    want = gd.evaluate(opt.updates[W], W=w0, **feeds)
    W_fed = w0.copy()
    assert fn(W=W_fed, **feeds).dtype == np.dtype(dtype)
    assert W_fed.dtype == np.dtype(dtype)
    np.testing.assert_allclose(W_fed, want, rtol=RTOL[dtype], atol=RTOL[dtype])
    bound = float_dtypes_bound(fn, W=W_fed, **feeds)
    assert bound == declared_float_dtypes([loss, *opt.updates.values()])  # no float64 inside


@pytest.mark.parametrize("optimize", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("terms", [CONTRACTED_TERMS, CONTRACTED_TERMS + 1, 16 * CONTRACTED_TERMS])
def test_contraction_both_sides(terms, dtype, optimize):
    """A sum of a product (and a gradient's sum_to of one) is one einsum up to
    CONTRACTED_TERMS terms, a product and numpy.sum beyond: the same dtype and values either
    way."""
    rng = np.random.default_rng(terms)
    a, b = gd.input("a", (terms, 3), dtype), gd.input("b", (terms, 1), dtype)
    w = gd.input("w", (3,), dtype)
    summed = gd.sum(a * b, axis=0)
    (dw,) = gd.grad(gd.sum(b * (a * w)), [w])  # sum_to over the batch axis
    fn = gd.compile([summed, dw], optimize=optimize)
    feeds = {"a": rng.standard_normal((terms, 3)).astype(dtype),
             "b": rng.standard_normal((terms, 1)).astype(dtype),
             "w": rng.standard_normal(3).astype(dtype)}
    got = fn(**feeds)
    assert ("numpy.einsum" in fn.source) == (terms <= CONTRACTED_TERMS)
    assert float_dtypes_bound(fn, **feeds) == {dtype}
    exact = np.sum(feeds["a"].astype(np.float64) * feeds["b"], axis=0)
    scale = np.sum(np.abs(feeds["a"].astype(np.float64) * feeds["b"]), axis=0)
    for g in got:
        assert g.dtype == np.dtype(dtype)
        assert np.all(np.abs(g - exact) <= 4 * RTOL[dtype] * scale)


def test_float16_product_update_stays_in_its_memory():
    """`W - lr * (X.T @ g)` accumulates through a CBLAS gemm, which exists for float32 and
    float64 only: float16 memory handed to dgemm was overrun (heap corruption, an abort at a
    later free). Run apart, so a corrupted heap fails this test, not the session."""
    script = """if True:
        import numpy as np, graphdl as gd
        X, W = gd.input("X", (512, 8), "float16"), gd.input("W", (8, 100), "float16")
        loss = gd.softmax_cross_entropy(X @ W, gd.input("y", (512,), "int64"))
        fn = gd.compile(loss, updates=gd.optim.sgd(loss, [W], lr=0.1).updates)
        rng = np.random.default_rng(0)
        w = rng.standard_normal((8, 100)).astype("float16")
        for _ in range(20):
            fn(X=rng.standard_normal((512, 8)).astype("float16"), W=w,
               y=rng.integers(0, 100, 512))
        assert w.dtype == np.float16 and np.isfinite(w).all()
    """
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
