"""Small helpers shared by the test modules."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import graphdl as gd


def numeric_grad(f, x, eps=1e-6):
    """Central finite differences of the scalar function `f` at the float64 array `x`."""
    x = np.array(x, dtype=np.float64)
    out = np.zeros_like(x)
    flat, gflat = x.reshape(-1), out.reshape(-1)
    for k in range(flat.size):
        orig = flat[k]
        flat[k] = orig + eps
        plus = float(f(x))
        flat[k] = orig - eps
        minus = float(f(x))
        flat[k] = orig
        gflat[k] = (plus - minus) / (2 * eps)
    return out


def graph_numeric_grads(y, feeds, names, eps=1e-6):
    """Finite-difference gradients of the scalar node `y` with respect to the inputs `names`,
    each computed with the interpreter (`gd.evaluate`)."""
    grads = []
    for name in names:
        def f(v, name=name):
            return gd.evaluate(y, {**feeds, name: v})

        grads.append(numeric_grad(f, feeds[name], eps))
    return grads


def inputs_of(nodes):
    """The names of the `input` placeholders that `nodes` depend on."""
    return {n.name for n in gd.topological_order(list(nodes)) if n.op.name == "input"}


def moderate(values, bound=1e4):
    """Whether every array is finite and below `bound` in magnitude: where comparisons with a
    relative tolerance mean something."""
    return all(np.all(np.isfinite(v)) and np.all(np.abs(v) < bound) for v in values)


def only(feeds, nodes):
    """`feeds` restricted to the inputs `nodes` use (the interpreter refuses unknown names)."""
    names = inputs_of(nodes)
    return {k: v for k, v in feeds.items() if k in names}


# The lecture's sigmoid neuron f(w, x) = 1/(1 + e^-(w0·x0 + w1·x1 + w2)) and its slide values.
NEURON_VALUES = {"w0": 2.0, "x0": -1.0, "w1": -3.0, "x1": -2.0, "w2": -3.0}


def neuron():
    """(f, [w0, x0, w1, x1, w2]) as the lecture's circuit of primitive gates."""
    w0, x0, w1, x1, w2 = (gd.input(n, (), "float64") for n in NEURON_VALUES)
    f = 1 / (1 + gd.exp(-(w0 * x0 + w1 * x1 + w2)))
    f.name = "f"
    return f, [w0, x0, w1, x1, w2]


def assert_saved_module_runs_alone(fn, feeds, tmp_path):
    """`fn.save` it, run the saved module in a fresh interpreter where importing graphdl or
    SymPy fails, and check that it returns what `fn` does, bit for bit."""
    expected = fn(feeds)
    path = tmp_path / "model.py"
    fn.save(path)
    np.savez(tmp_path / "feeds.npz", **feeds)
    script = (
        "import sys, numpy, importlib.util\n"
        "sys.modules['graphdl'] = None; sys.modules['sympy'] = None\n"  # importing them fails
        f"spec = importlib.util.spec_from_file_location('model', {str(path)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        f"f = numpy.load({str(tmp_path / 'feeds.npz')!r})\n"
        "outs = m.run(*[f[name] for name in m.INPUTS])\n"
        f"numpy.savez({str(tmp_path / 'out.npz')!r}, *outs)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    got = np.load(tmp_path / "out.npz")
    assert len(got.files) == len(expected)
    for k, want in enumerate(expected):
        assert np.array_equal(got[f"arr_{k}"], want)


# The three ways graphdl runs a graph: the interpreter, compiled NumPy, the CUDA kernels on the
# CPU (g++ and the emulator; skipped where g++ is missing).
RUNNERS = {"evaluate": None, "numpy": {}, "cuda-cpu": {"backend": "cuda", "device": "cpu"}}


def runner_params():
    """`RUNNERS`' names for `pytest.mark.parametrize`, cuda-cpu skipped without g++."""
    import shutil

    import pytest

    needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="no g++")
    return [pytest.param(r, marks=needs_gxx if r == "cuda-cpu" else ()) for r in RUNNERS]


def run_on(runner, outputs, feeds):
    """The values of `outputs` at `feeds`, computed the `runner` way."""
    if RUNNERS[runner] is None:
        return gd.evaluate(outputs, feeds)
    return gd.compile(outputs, **RUNNERS[runner])(**feeds)


def run_cases(runner, cases):
    """{label: (the case's outputs computed the `runner` way, its wanted values)} for `cases`
    {label: (outputs, feeds, wanted values)}, all in one graph: one compilation per runner,
    not one per case (a kernel build each on the CUDA backend). Inputs must be named apart."""
    outputs = [node for nodes, _, _ in cases.values() for node in nodes]
    feeds = {name: value for _, case_feeds, _ in cases.values()
             for name, value in case_feeds.items()}
    assert len(feeds) == sum(len(case_feeds) for _, case_feeds, _ in cases.values()), \
        "two cases name an input alike"
    values = iter(run_on(runner, outputs, feeds))
    return {label: ([next(values) for _ in nodes], want)
            for label, (nodes, _, want) in cases.items()}


def mismatches(name, labels, got, want, dtype, rtol, atol):
    """What of `got` (values named by `labels`) differs from PyTorch's `want` in dtype, shape
    or value, in words, for one failure listing every case."""
    problems = []
    for what, a, b in zip(labels, got, want):
        a = np.asarray(a)
        if a.dtype != dtype or a.shape != b.shape:
            problems.append(f"{name} {what}: {a.dtype}{a.shape}, PyTorch {b.shape}")
        elif not np.allclose(a, b, rtol=rtol, atol=atol):
            problems.append(f"{name} {what}: {a} is not PyTorch's {b}")
    return problems


def onnxruntime_run(model_bytes, feeds):
    """The model's outputs as onnxruntime computes them on the CPU (skips without it)."""
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


# ---------------------------------------------------------------- two derivatives against PyTorch
# float64: to the last digits; float32: its rounding of every step, against PyTorch's float64
TWICE_TOLERANCE = {"float64": (1e-10, 1e-12), "float32": (2e-4, 2e-5)}


def loss_weights(shape, seed):
    """Fixed weights in [0.5, 1.5] (three decimals) of a loss Σ w·(...) over `shape`."""
    return np.round(np.random.default_rng(seed).uniform(0.5, 1.5, shape), 3).reshape(shape)


def _torch_twice(fn, arrays):
    """PyTorch float64: f, the gradients of Σ w1·f² and the gradients of Σ w2·(those)."""
    import torch

    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    y = fn(*ts)
    w1 = torch.tensor(loss_weights(tuple(y.shape), 1))
    gs = torch.autograd.grad((w1 * y * y).sum(), ts, create_graph=True)
    total = sum((torch.tensor(loss_weights(np.shape(a), 2 + k)) * g).sum()
                for k, (a, g) in enumerate(zip(arrays, gs)))
    hs = torch.autograd.grad(total, ts)
    return [y.detach().numpy(), *(g.detach().numpy() for g in gs), *(h.numpy() for h in hs)]


def _graph_twice(fn, arrays, dtype, prefix):
    """(inputs, [f, its gradients, their gradients]) in graphdl, as `_torch_twice` has them."""
    xs = [gd.input(f"{prefix}_{k}", np.shape(a), dtype) for k, a in enumerate(arrays)]
    y = fn(*xs)
    gs = gd.grad(gd.sum(gd.constant(loss_weights(y.shape, 1).astype(dtype)) * y * y), xs)
    total = sum(gd.sum(gd.constant(loss_weights(np.shape(a), 2 + k).astype(dtype)) * g)
                for k, (a, g) in enumerate(zip(arrays, gs)))
    return xs, [y, *gs, *gd.grad(total, xs)]


def twice_against_torch(cases, runner, dtype):
    """What differs from PyTorch, in words, of `cases` (name -> (graphdl function, PyTorch
    function, the arguments' float64 values, each differentiated)): the value and the first
    and second derivatives of Σ w·f² to every argument, every case in one graph (one compilation
    per backend and dtype), on `runner`, with no fallback to a reference implementation."""
    import warnings

    from graphdl.facets import FallbackWarning

    graphs = {}
    for k, (name, (fn, torch_fn, arrays)) in enumerate(cases.items()):
        xs, nodes = _graph_twice(fn, arrays, dtype, f"a{k}")
        feeds = {x.name: np.asarray(a, dtype) for x, a in zip(xs, arrays)}
        graphs[name] = nodes, feeds, _torch_twice(torch_fn, arrays)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)  # every part has its backend's kernel
        results = run_cases(runner, graphs)
    rtol, atol = TWICE_TOLERANCE[dtype]
    problems = []
    for name, (got, want) in results.items():
        n = len(cases[name][2])
        labels = ["value", *(f"d/d arg {k}" for k in range(n)),
                  *(f"d²/d arg {k}" for k in range(n))]
        for label, a, b in zip(labels, got, want):
            scale = max(1.0, float(np.abs(b).max(initial=0)))
            problems += mismatches(name, [label], [a], [b.astype(dtype)], dtype, rtol,
                                   atol * scale)
    return problems
