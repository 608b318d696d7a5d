"""The NumPy runtime (`graphdl.runtime`) is written once: the reference interpreter calls its
functions and generated modules hold their source, verbatim."""

from __future__ import annotations

import builtins
import inspect

import numpy as np
import pytest

import graphdl as gd
from graphdl import runtime
from graphdl.codegen.numpy_backend import helpers as numpy_helpers
from graphdl.ops import conv
from graphdl.ops import elementwise as ew

from .helpers import assert_saved_module_runs_alone

# What the interpreter calls through the module (so a spy on `runtime` sees it) ...
INTERPRETED = {"_unslice", "_scatter_add", "_check_index", "_sum_to", "_sum_to_axes", "_conv_out",
               "_pad", "_pool_extra", "_avg_divisor", "_logcumsumexp", "_linear_scan",
               "_running_arg", "_random_uniform", "_allreduce"}
# ... and holds as the very function objects (the op's impl, the padding value).
HELD = {"_sigmoid": lambda: ew.SIGMOID.impl, "_softplus": lambda: ew.SOFTPLUS.impl,
        "_lowest": lambda: conv.lowest}
# What generated code calls. `_where` is numpy.where (the interpreter's, and its test oracle)
# made branch-free; sum_to's lowering prints its `numpy.sum` inline.
EMITTED = {"_sigmoid", "_softplus", "_where", "_unslice", "_scatter_add", "_index_major",
           "_rows_summed", "_row_groups", "_stable_order", "_check_index", "_conv_out", "_pad",
           "_pool_extra", "_lowest", "_avg_divisor", "_logcumsumexp", "_linear_scan",
           "_running_arg", "_random_uniform", "_mix64", "_swap32", "_allreduce"}
# Printed for user formulas (`sympy.erf`); their reference runs the same function.
PRINTED = {"_erf", "_erfc", "_per_element"}


def program():
    """One training graph that reaches every runtime function: padded convolution with bias
    (sum_to), relu (the select), ceil-mode max-pooling, average pooling without the padding,
    slicing, a sigmoid, a softplus of a dropout drawn from a fed key, an embedding lookup,
    logcumsumexp (its gradient a linear scan), cummax and an allreduce (one worker)."""
    x = gd.input("x", (2, 3, 7, 7), "float64")
    w = gd.input("w", (4, 3, 3, 3), "float64")
    b = gd.input("b", (4,), "float64")
    table = gd.input("table", (6, 4), "float64")
    idx = gd.input("idx", (5,), "int64")
    key = gd.input("key", (), "int64")
    h = gd.relu(gd.conv2d(x, w, b, padding=1))
    pooled = gd.max_pool2d(h, 3, stride=2, padding=1, ceil_mode=True)
    averaged = gd.avg_pool2d(h, 2, padding=1, count_include_pad=False)
    rows, cropped = gd.take(table, idx, axis=0), averaged[:, :, 1:]
    loss = (gd.sum(gd.sigmoid(pooled)) + gd.sum(cropped * cropped) + gd.sum(rows * rows)
            + gd.sum(gd.softplus(gd.dropout(h, 0.3, key=key)))
            + gd.sum(gd.logcumsumexp(b) * gd.allreduce(gd.cummax(b).values)))
    return [loss, *gd.grad(loss, [x, w, b, table])]


def feeds(rng):
    return {"x": rng.standard_normal((2, 3, 7, 7)), "w": rng.standard_normal((4, 3, 3, 3)),
            "b": rng.standard_normal(4), "table": rng.standard_normal((6, 4)),
            "idx": np.array([0, 5, -1, 2, 2]), "key": 11}


def test_every_runtime_function_is_used_by_the_interpreter_or_generated_code():
    assert set(runtime.__all__) == INTERPRETED | set(HELD) | EMITTED | PRINTED


def test_generated_modules_hold_the_runtime_source_verbatim():
    for name in runtime.__all__:
        assert numpy_helpers.HELPERS[name] == inspect.getsource(getattr(runtime, name))


def test_interpreter_calls_the_runtime_functions(monkeypatch, rng):
    called = set()

    def spy(name, function):
        def record(*args, **kwargs):
            called.add(name)
            return function(*args, **kwargs)
        return record

    for name in INTERPRETED:
        monkeypatch.setattr(runtime, name, spy(name, getattr(runtime, name)))
    gd.evaluate(program(), feeds(rng))
    assert called == INTERPRETED
    for name, held in HELD.items():
        assert held() is getattr(runtime, name)


def test_generated_module_runs_the_runtime_source(rng):
    fn, fed = gd.compile(program()), feeds(rng)
    got, want = fn(fed), gd.evaluate(program(), fed)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    for name in EMITTED:
        assert inspect.getsource(getattr(runtime, name)) in fn.source, name


def test_emitted_helpers_read_only_numpy_and_the_helpers_emitted_with_them():
    """Every global a helper reads is numpy, a builtin or a helper the backend emits with it
    (through other helpers too): a saved module never meets an undefined name."""
    namespaces = [runtime, numpy_helpers, numpy_helpers.conv_kernels, numpy_helpers.update_kernels]
    for name, needs in numpy_helpers.HELPER_NEEDS.items():
        function = next((getattr(m, name) for m in namespaces if hasattr(m, name)), None)
        if function is None:  # the printer's helpers are source text only
            continue
        names = set(inspect.getclosurevars(function).globals) - {"numpy", name}
        assert names - set(dir(builtins)) <= needs, name
        assert all(numpy_helpers.HELPER_NEEDS[n] - {name} <= needs for n in needs), name


def test_saved_module_with_every_runtime_helper_runs_without_graphdl(tmp_path, rng):
    assert_saved_module_runs_alone(gd.compile(program()), feeds(rng), tmp_path)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_where_into_a_strided_view_is_numpy_where_bit_for_bit(dtype, rng):
    """How max_pool2d_grad routes g into one kernel position of dx (the select it used to have
    a second copy of)."""
    g = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
    g.flat[:5] = [np.nan, np.inf, -np.inf, -0.0, 0.0]
    g = g.transpose(1, 0, 2, 3).copy().transpose(1, 0, 2, 3)  # channel-major, as conv's output
    mask = rng.random(g.shape) < 0.5
    dx = np.full((2, 3, 8, 10), 7.0, dtype)
    view = dx[:, :, 1::2, ::2]
    assert runtime._where(mask, g, 0, out=view) is view
    assert view.tobytes() == np.where(mask, g, 0).astype(dtype).tobytes()
    assert np.all(dx[:, :, ::2] == 7.0) and np.all(dx[:, :, :, 1::2] == 7.0)


def test_sigmoid_is_the_op_reference_and_finite_in_both_tails():
    a = np.array([-800.0, -40.0, 0.0, 40.0, 800.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = runtime._sigmoid(a)
    assert ew.SIGMOID.impl is runtime._sigmoid
    np.testing.assert_allclose(s[1:4], [np.exp(-40.0) / (1 + np.exp(-40.0)), 0.5, 1.0], rtol=1e-15)
    assert s[0] == 0.0 and s[4] == 1.0
