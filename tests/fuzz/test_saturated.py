"""Every backend at the extremes, one program per dtype and backend:

- second derivatives of every smooth op at saturated inputs (|x| up to 1,000), value, first
  and second derivative against PyTorch float64 (rounded to the dtype): NaN only where
  PyTorch has NaN, infinities equal, the rest within `differential.RTOL`;
- every elementwise op (unary, binary on the outer grid, and binary on one node twice: x - x,
  x / x) at the edge values ±0, ±denormal, ±inf, NaN, value and gradient: the CUDA backend
  (on the CPU) and the interpreter against NumPy compiled, whose own values PyTorch checks in
  `test_edge_values`;
- `take` with an index at each index dtype's extremes: IndexError everywhere.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import graphdl as gd

from . import backends, differential

POINTS = np.array([0.0, 1.0, 10.0, 30.0, 50.0, 88.0, 100.0, 300.0, 710.0, 1000.0])
POINTS = np.concatenate([POINTS, -POINTS[1:]])
LABELS = np.zeros(len(POINTS), np.int64)
RUNS = {"numpy": {}, "cuda-cpu": {"backend": "cuda", "device": "cpu"}, "evaluate": None}
RUN_IDS = [name if name != "cuda-cpu" or shutil.which("g++") else
           pytest.param(name, marks=pytest.mark.skip(reason="needs g++")) for name in RUNS]


def _rows(v):
    """Rows (v, 0.5, -1) for each point v: a class axis for the row-wise ops."""
    return np.stack([v, np.full_like(v, 0.5), np.full_like(v, -1.0)], -1)


def _bce(target):
    return (lambda x: gd.binary_cross_entropy_with_logits(x, gd.constant(
                np.full(x.shape, target, x.dtype)), reduction="none"),
            lambda t: F.binary_cross_entropy_with_logits(t, torch.full_like(t, target),
                                                         reduction="none"))


# name -> (graphdl, PyTorch float64, rows?): every smooth op (the exact value is PyTorch's)
SMOOTH = {
    "exp": (gd.exp, torch.exp, False),
    "tanh": (gd.tanh, torch.tanh, False),
    "sigmoid": (gd.sigmoid, torch.sigmoid, False),
    "exp(x) / (1 + exp(x))": (lambda x: gd.exp(x) / (1 + gd.exp(x)), torch.sigmoid, False),
    # F.softplus: logaddexp's double backward is NaN at -710 (its e^x underflows)
    "softplus": (gd.softplus, F.softplus, False),
    "log_sigmoid": (gd.log_sigmoid, F.logsigmoid, False),
    "bce_with_logits 0.3": (*_bce(0.3), False),
    "bce_with_logits 1": (*_bce(1.0), False),
    "softmax": (gd.softmax, lambda t: torch.softmax(t, -1), True),
    "log_softmax": (gd.log_softmax, lambda t: torch.log_softmax(t, -1), True),
    "logsumexp": (gd.logsumexp, lambda t: torch.logsumexp(t, -1), True),
    "softmax_cross_entropy": (lambda x: gd.softmax_cross_entropy(x, LABELS),
                              lambda t: F.cross_entropy(t, torch.from_numpy(LABELS)), True),
}


def _weights(shape, k):
    return np.asarray(np.round(np.random.default_rng(k).uniform(0.5, 1.5, shape), 3))


def _torch(fn, x):
    """Value, gradient of Σ w1·f and gradient of Σ w2·(that gradient), in float64."""
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = fn(t)
    (d1,) = torch.autograd.grad((y * torch.from_numpy(_weights(y.shape, 1))).sum(), t,
                                create_graph=True)
    (d2,) = torch.autograd.grad((d1 * torch.from_numpy(_weights(x.shape, 2))).sum(), t)
    return [a.detach().numpy() for a in (y, d1, d2)]


def _graphdl(fn, x):
    y = fn(x)
    (d1,) = gd.grad(gd.sum(y * gd.constant(_weights(y.shape, 1).astype(x.dtype))), [x])
    (d2,) = gd.grad(gd.sum(d1 * gd.constant(_weights(x.shape, 2).astype(x.dtype))), [x])
    return [y, d1, d2]


def _run(how, outputs, feeds):
    with np.errstate(all="ignore"):
        if how is None:
            return gd.evaluate(outputs, feeds)
        return gd.compile(outputs, **how)(feeds)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("run", RUN_IDS)
def test_second_derivatives_of_smooth_ops_at_saturated_inputs(run, dtype):
    inputs, outputs, expected = {}, [], []
    for name, (gd_fn, torch_fn, rows) in SMOOTH.items():
        x = _rows(POINTS) if rows else POINTS
        node = gd.input(f"x{len(inputs)}", x.shape, dtype)
        inputs[node.name] = x.astype(dtype)
        outputs += _graphdl(gd_fn, node)
        expected += [(name, what, e) for what, e in zip(("value", "d1", "d2"),
                                                        _torch(torch_fn, x))]
    got = _run(RUNS[run], outputs, inputs)
    problems = []
    for (name, what, e), g in zip(expected, got):
        with np.errstate(over="ignore"):  # float64 values beyond float32 are its infinities
            e = e.astype(dtype).astype(np.float64)
        why = differential.differs(g, e, dtype)
        if why:
            problems.append(f"{name} {what}: {why}")
    assert not problems, "\n".join(problems)


UNARY = {"exp": gd.exp, "log": gd.log, "sqrt": gd.sqrt, "reciprocal": gd.reciprocal,
         "tanh": gd.tanh, "sigmoid": gd.sigmoid, "softplus": gd.softplus,
         "log_sigmoid": gd.log_sigmoid, "relu": gd.relu, "abs": gd.abs, "neg": lambda x: -x,
         "clip": lambda x: gd.clip(x, -1.0, 1.0), "stop_gradient": gd.stop_gradient,
         **{f"pow {p}": (lambda x, p=p: x ** p) for p in (0, 1, 2, 3, -1, -2, 0.5, -0.5, 2.5)}}
BINARY = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
          "div": lambda a, b: a / b, "maximum": gd.maximum, "minimum": gd.minimum,
          "where greater": lambda a, b: gd.where(gd.greater(a, b), a, b),
          "where equal": lambda a, b: gd.where(gd.equal(a, b), a, b)}


def _edges(dtype):
    return np.concatenate([backends.edge_values(dtype), np.array([1.0, -1.0, 1e30, -1e30],
                                                                  dtype)])


def _sweep(dtype):
    """Every elementwise op on the edge values: (outputs, feeds, labels)."""
    v = _edges(dtype)
    outputs, feeds, labels = [], {}, []

    def fed(value):
        node = gd.input(f"x{len(feeds)}", value.shape, dtype)
        feeds[node.name] = value
        return node

    for name, fn in UNARY.items():
        x = fed(v)
        outputs += [fn(x), *gd.grad(gd.sum(fn(x)), [x])]
        labels += [f"{name}(x)", f"{name}'(x)"]
    for name, fn in BINARY.items():
        a, b = fed(v[:, None]), fed(v[None, :])
        outputs += [fn(a, b), *gd.grad(gd.sum(fn(a, b)), [a, b])]
        x = fed(v)
        outputs += [fn(x, x), *gd.grad(gd.sum(fn(x, x)), [x])]
        labels += [f"{name}(a, b)", f"d{name}/da", f"d{name}/db", f"{name}(x, x)",
                   f"d{name}(x, x)/dx"]
    x = fed(v)
    outputs.append(gd.exp(x) - gd.exp(x))
    labels.append("exp(x) - exp(x)")
    return outputs, feeds, labels


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("run", RUN_IDS[1:])
def test_every_elementwise_op_agrees_with_numpy_on_edge_values(run, dtype):
    outputs, feeds, labels = _sweep(dtype)
    reference = _run(RUNS["numpy"], outputs, feeds)
    got = _run(RUNS[run], outputs, feeds)
    problems = [f"{label}: {why}" for label, g, e in zip(labels, got, reference)
                if (why := differential.differs(g, np.asarray(e, np.float64), dtype))]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("dtype", backends.INDEX_DTYPES)
@pytest.mark.parametrize("run", RUN_IDS[1:])
def test_every_index_dtype_is_range_checked_as_numpy_does(run, dtype):
    """take with an index at its dtype's largest (and smallest) value raises IndexError on
    every backend, forward and gradient."""
    info = np.iinfo(dtype)
    x = gd.input("x", (3, 2), "float64")
    i = gd.input("i", (2,), dtype)
    y = gd.take(x, i, axis=0)
    outputs = [y, *gd.grad(gd.sum(y), [x])]
    for extreme in {info.max, info.min} - {0}:
        feeds = {"x": np.ones((3, 2)), "i": np.array([0, extreme], dtype)}
        with pytest.raises(IndexError):
            _run(RUNS["numpy"], outputs, feeds)
        with pytest.raises(IndexError):
            _run(RUNS[run], outputs, feeds)
