"""What every backend promises alike: outputs at call time beside updates (one simultaneous
assignment), calls from several threads at once, values printed as the graph says (no algebra
that changes them at 0, inf or NaN), and index checks for every integer dtype. Each test runs
on every backend and device `gd.compile` offers that this machine has: the CUDA backend on the
CPU wherever g++ is (`device="cpu"`: its kernels against the emulator), on a GPU where CuPy
sees one."""

from __future__ import annotations

import shutil
import sys
import threading

import numpy as np
import pytest

import graphdl as gd
from graphdl.codegen import BACKENDS as COMPILERS
from graphdl.codegen import backend_named

from .test_cuda_gpu import cp


def _missing(backend, device):
    """Why this machine cannot run `backend` on `device`, or None."""
    if backend == "cuda" and device == "cpu" and shutil.which("g++") is None:
        return "device='cpu' compiles CUDA kernels with g++"
    if device == "gpu" and cp is None:
        return "needs CuPy and an NVIDIA GPU"
    return None


BACKENDS = {f"{backend}-{device}": {"backend": backend, "device": device}
            for backend in COMPILERS for device in backend_named(backend).devices}
AVAILABLE = [name for name, options in BACKENDS.items() if _missing(**options) is None]
backends = pytest.mark.parametrize("backend", [
    pytest.param(name, marks=pytest.mark.skipif(bool(_missing(**options)),
                                                 reason=str(_missing(**options))))
    for name, options in BACKENDS.items()])


def compiled(backend, outputs, **options):
    return gd.compile(outputs, **BACKENDS[backend], **options)


# ---------------------------------------------------------------- outputs beside updates
def f32(name, shape):
    return gd.input(name, shape, "float32")


def _update_cases():
    """(id, outputs, updates, feeds): each returns inputs that the updates then overwrite."""
    W = f32("W", (3,))
    yield "output W, W := W * 10", [W], {W: W * 10}
    yield "output W * 1, W := W * 10", [W * 1], {W: W * 10}
    yield "output a view of W, W := W * 10", [W[1:]], {W: W * 10}
    yield "output W, W := W - 2 W", [W], {W: W - W * 2}
    a, b = f32("a", (3,)), f32("b", (3,))
    yield "the swap of docs/SEMANTICS.md", [a, b], {a: b, b: a}
    E, i = f32("E", (4, 3)), gd.input("i", (2,), "int64")
    (g,) = gd.grad(gd.sum(gd.take(E, i, axis=0) ** 2), [E])
    yield "output E, sparse step on E", [E, E[0]], {E: E - 0.5 * g}


UPDATE_CASES = {case[0]: case[1:] for case in _update_cases()}


@backends
@pytest.mark.parametrize("case", UPDATE_CASES)
def test_outputs_are_the_values_at_call_time(backend, case):
    outputs, updates = UPDATE_CASES[case]
    fn = compiled(backend, outputs, updates=updates)
    feeds = {n.name: np.arange(1.0, 1.0 + np.prod(n.shape), dtype=np.float32).reshape(n.shape)
             * (k + 1) for k, n in enumerate(fn.inputs) if n.dtype.kind == "f"}
    feeds.update({n.name: np.array([0, 2]) for n in fn.inputs if n.dtype.kind == "i"})
    before = {k: v.copy() for k, v in feeds.items()}
    values = gd.evaluate([*outputs, *updates.values()], **before)
    want, new = values[:len(outputs)], values[len(outputs):]
    got = fn(**feeds)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    for target, value in zip(updates, new, strict=True):
        np.testing.assert_array_equal(feeds[target.name], value)


# ---------------------------------------------------------------- threads
@pytest.fixture
def frequent_thread_switches():
    """Threads switch every microsecond, so that calls interleave between kernel launches."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def _in_threads(count, work):
    """work(k) in `count` threads started together; their results by k."""
    start, results, errors = threading.Barrier(count), [None] * count, []

    def run(k):
        start.wait()
        try:
            results[k] = work(k)
        except Exception as e:  # noqa: BLE001 - reported below, with the thread's number
            errors.append((k, e))

    threads = [threading.Thread(target=run, args=(k,)) for k in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


@backends
@pytest.mark.usefixtures("frequent_thread_switches")
def test_calls_from_threads_are_independent(backend):
    x = f32("x", (64,))
    y = gd.tanh(x * 2.0) @ gd.exp(x)  # several kernels a call: room for another call between
    fn = compiled(backend, [gd.sigmoid(x) + 1.0, y])
    feeds = [np.linspace(-1, 1, 64, dtype=np.float32) * (k + 1) for k in range(8)]
    want = [compiled("numpy-cpu", [gd.sigmoid(x) + 1.0, y])(x=v) for v in feeds]
    results = _in_threads(8, lambda k: [fn(x=feeds[k]) for _ in range(4)])
    for k, calls in enumerate(results):
        for got in calls:
            for g, w in zip(got, want[k], strict=True):
                np.testing.assert_allclose(g, w, rtol=1e-5, err_msg=f"thread {k}")


@backends
@pytest.mark.usefixtures("frequent_thread_switches")
def test_training_steps_in_threads_update_their_own_parameters(backend):
    W, x = f32("W", (4, 3)), f32("x", (5, 4))
    loss = gd.sum(gd.tanh(x @ W) ** 2)
    (dW,) = gd.grad(loss, [W])
    fn = compiled(backend, loss, updates={W: W - 0.01 * dW})
    rng = np.random.default_rng(7)
    xs = [rng.standard_normal((5, 4)).astype(np.float32) for _ in range(8)]
    starts = [rng.standard_normal((4, 3)).astype(np.float32) for _ in range(8)]

    def train(k, step):
        w = starts[k].copy()
        for _ in range(5):
            step(W=w, x=xs[k])
        return w

    reference = compiled("numpy-cpu", loss, updates={W: W - 0.01 * dW})
    want = [train(k, reference) for k in range(8)]
    got = _in_threads(8, lambda k: train(k, fn))
    for k in range(8):
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, err_msg=f"thread {k}")


@backends
@pytest.mark.usefixtures("frequent_thread_switches")
def test_threads_calling_with_a_new_shape_compile_it_once(backend):
    x = f32("x", (None,))
    fn = compiled(backend, gd.exp(x) + 1.0)
    compile_one, compiled_keys = fn._compile, []
    fn._compile = lambda key: compiled_keys.append(key) or compile_one(key)
    results = _in_threads(4, lambda k: fn(x=np.ones(3, np.float32)))
    assert compiled_keys == [((3,),)]
    for got in results:
        np.testing.assert_allclose(got, np.full(3, np.e + 1.0, np.float32), rtol=1e-6)


# ---------------------------------------------------------------- values as the graph says
SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.5, -2.0]


def _repeated_operands(x):
    """Expressions whose operands are one node twice: algebra would cancel or merge them."""
    minus = gd.elementwise_op("minus", lambda a, b: a - b)
    yield "x - x", x - x
    yield "x / x", x / x
    yield "exp(x) - exp(x)", gd.exp(x) - gd.exp(x)
    yield "x + x", x + x
    yield "x * x", x * x
    yield "user op minus(x, x)", minus(x, x)
    yield "x == x", gd.equal(x, x)
    yield "x != x", gd.not_equal(x, x)
    yield "x >= x", gd.greater_equal(x, x)
    yield "max(x, x)", gd.maximum(x, x)


@backends
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_repeated_operands_are_computed_not_simplified(backend, dtype):
    x = gd.input("x", (len(SPECIAL),), dtype)
    cases = dict(_repeated_operands(x))
    fn = compiled(backend, list(cases.values()))
    v = np.array(SPECIAL, dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        want = [v - v, v / v, np.exp(v) - np.exp(v), v + v, v * v, v - v, np.equal(v, v),
                np.not_equal(v, v), np.greater_equal(v, v), np.maximum(v, v)]
    for name, got, w in zip(cases, fn(x=v), want, strict=True):
        np.testing.assert_array_equal(got, w, err_msg=name)


# ---------------------------------------------------------------- index checks
INDEX_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
ROWS = 5


def _bad_indices(dtype, negative):
    """Indices outside [-ROWS, ROWS) (`negative`) or [0, ROWS), each at its dtype's edges."""
    info = np.iinfo(dtype)
    values = {ROWS, info.max, info.max - 1}
    if info.min < 0:
        values |= {info.min, -ROWS - 1} | ({-1} if not negative else set())
    return sorted(values)


def _run_each(outputs, feeds):
    """Each available backend's result or the message of the IndexError it raised."""
    found = {}
    for backend in AVAILABLE:
        try:
            found[backend] = compiled(backend, outputs)(**feeds)
        except IndexError as e:
            found[backend] = str(e)
    return found


@pytest.mark.parametrize("dtype", INDEX_DTYPES)
def test_take_checks_indices_alike_for_every_dtype(dtype):
    E, i = f32("E", (ROWS, 2)), gd.input("i", (1,), dtype)
    table = np.arange(2.0 * ROWS, dtype=np.float32).reshape(ROWS, 2)
    for bad in _bad_indices(dtype, negative=True):
        found = _run_each(gd.take(E, i, axis=0), {"E": table, "i": np.array([bad], dtype)})
        assert set(map(type, found.values())) == {str}, (bad, found)
        assert len(set(found.values())) == 1, (bad, found)
    good = [ROWS - 1] + ([-ROWS, -1] if np.iinfo(dtype).min < 0 else [0])
    for index in good:
        found = _run_each(gd.take(E, i, axis=0), {"E": table, "i": np.array([index], dtype)})
        for got in found.values():
            np.testing.assert_array_equal(got, table[[index]])


@pytest.mark.parametrize("dtype", INDEX_DTYPES)
def test_class_labels_are_checked_alike_for_every_dtype(dtype):
    labels, logits = gd.input("y", (1,), dtype), f32("s", (1, ROWS))
    outputs = [gd.one_hot(labels, ROWS), gd.softmax_cross_entropy(logits, labels)]
    zeros = np.zeros((1, ROWS), np.float32)
    for bad in _bad_indices(dtype, negative=False):
        found = _run_each(outputs, {"y": np.array([bad], dtype), "s": zeros})
        assert set(map(type, found.values())) == {str}, (bad, found)
        assert len(set(found.values())) == 1, (bad, found)
