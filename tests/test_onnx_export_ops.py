"""Every op the ONNX exporter has an emitter for, gradient ops included, exported inside first-
and second-order gradient graphs and run by onnxruntime against `gd.evaluate` (issue 19 item 9:
a max-pool gradient in ceil mode whose last window is dropped passed `onnx.checker` and failed
in onnxruntime)."""

from __future__ import annotations

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

import graphdl as gd
from graphdl.ir import topological_order
from graphdl.passes.optimize import prepare


def _probe(shape, seed):
    """Fixed weights for a loss, so that no two gradient entries are alike."""
    return gd.constant(np.random.default_rng(seed).uniform(0.5, 1.5, shape).astype(np.float32))


def _with_gradients(x, y, seed=0):
    """y, dL/dx and the gradient of |dL/dx|² (second order: the gradient ops' own
    gradients) for L = Σ y² · probe."""
    (dx,) = gd.grad(gd.sum(y * y * _probe(y.shape, seed)), [x])
    (ddx,) = gd.grad(gd.sum(dx * dx), [x])
    return {"y": y, "dx": dx, "ddx": ddx}


# (max or avg, input (H, W), kernel, stride, padding (top, bottom, left, right), dilation,
# count_include_pad): each in ceil mode
POOLS = {
    "last_window_dropped": ("max", (5, 5), (2, 2), (2, 2), (1, 1, 1, 1), (1, 1), True),
    "dropped_stride_3": ("max", (5, 7), (2, 2), (3, 3), (1, 1, 1, 1), (1, 1), True),
    "dropped_dilated": ("max", (5, 5), (2, 2), (3, 3), (1, 1, 1, 1), (2, 2), True),
    "partial_window": ("max", (7, 6), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), True),
    "avg_dropped": ("avg", (5, 5), (2, 2), (2, 2), (1, 1, 1, 1), (1, 1), True),
    "avg_dropped_exclude_pad": ("avg", (5, 5), (2, 2), (2, 2), (1, 1, 1, 1), (1, 1), False),
    # rows drop their last window, columns clip theirs at the padded input's end
    "avg_dropped_rows_partial_columns": ("avg", (5, 6), (2, 3), (2, 2), (1, 1, 1, 1), (1, 1),
                                         True),
    "max_dropped_rows_partial_columns": ("max", (5, 6), (2, 3), (2, 2), (1, 1, 1, 1), (1, 1),
                                         True),
    "avg_partial_window": ("avg", (7, 6), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), True),
}


def _pool_case(kind, size, kernel, stride, padding, dilation, counted):
    x = gd.input("x", (2, 3, *size))
    if kind == "max":
        y = gd.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode=True)
    else:
        y = gd.avg_pool2d(x, kernel, stride, padding, ceil_mode=True, count_include_pad=counted)
    return _with_gradients(x, y), {"x": (2, 3, *size)}


def _conv_case():
    x, w = gd.input("x", (2, 4, 9, 8)), gd.input("w", (6, 2, 3, 2))
    y = gd.relu(gd.conv2d(x, w, stride=(2, 3), padding=(1, 2, 0, 1), dilation=(1, 2), groups=2))
    (dx, dw) = gd.grad(gd.sum(y * y * _probe(y.shape, 1)), [x, w])
    (ddw,) = gd.grad(gd.sum(dx * dx), [w])  # the input gradient's weight gradient
    return {"y": y, "dx": dx, "dw": dw, "ddw": ddw}, {"x": (2, 4, 9, 8), "w": (6, 2, 3, 2)}


def _movement_case():
    """slice/unslice, take/scatter_add (negative indices), concatenate, transposes, reshapes,
    broadcasting and its sum_to, reductions, mean's size."""
    a, b = gd.input("a", (5, 6)), gd.input("b", (6,))
    idx = gd.input("idx", (4,), "int64")
    rows = gd.take(a, idx, axis=0)
    y = gd.concatenate([a[::2, 5:0:-2] * 3.0, rows[:3, :3].T], axis=0) + b[:3]
    y = gd.squeeze(gd.reshape(gd.expand_dims(y, 0), (1, 6, 3)), 0)
    y = gd.max(y, axis=1) + gd.min(y, axis=1) + gd.mean(y, axis=1)
    (da, db) = gd.grad(gd.sum(y * y), [a, b])
    (dda,) = gd.grad(gd.sum(da * da) + gd.sum(db), [a])
    return {"y": y, "da": da, "db": db, "dda": dda}, {"a": (5, 6), "b": (6,), "idx": (4,)}


def _elementwise_case():
    x, W = gd.input("x", (4, 3)), gd.input("W", (3, 3))
    h = x @ W
    y = (gd.exp(-gd.abs(h)) + gd.log(gd.sqrt(h * h + 1.0)) + gd.tanh(h) * gd.sigmoid(h)
         + gd.softplus(h) / (1.0 + gd.reciprocal(2.0 + h * h)) + gd.maximum(h, 0.1)
         - gd.minimum(h, -0.1) + h ** 3 + gd.where(h > 0, h, 0.5 * h)
         + gd.cast(gd.less(h, 1.0), "float32") * gd.cast(gd.greater_equal(h, -2.0), "float32")
         + gd.cast(gd.less_equal(h, 0.0), "float32") * gd.cast(gd.not_equal(h, 0.0), "float32")
         + gd.stop_gradient(h) + gd.relu(h))
    (dW,) = gd.grad(gd.sum(y * _probe(y.shape, 2)), [W])
    (unused, _) = gd.grad(gd.sum(gd.stop_gradient(x)) + gd.sum(W), [x, W])  # a zeros_like
    (ddW,) = gd.grad(gd.sum(dW * dW), [W])
    return {"y": y, "dW": dW, "ddW": ddW, "zero": unused}, {"x": (4, 3), "W": (3, 3)}


def _scan_and_erf_case():
    """cumsum both ways (its gradient is the other way), erf and the gelu built from it."""
    x = gd.input("x", (3, 5))
    y = gd.cumsum(gd.gelu(x), 1) * gd.cumsum(gd.erf(x), 0, reverse=True)
    return _with_gradients(x, y, seed=3), {"x": (3, 5)}


def _allreduce_case():
    """allreduce, mean (weighted too) and sum: one worker's, the identity."""
    x = gd.input("x", (3, 4))
    y = gd.allreduce(x * x, weight=2.0) * gd.allreduce(gd.sin(x), "sum")
    return _with_gradients(x, y, seed=5), {"x": (3, 4)}


def _cumulative_case():
    """cumprod, logcumsumexp (its gradient a linear_scan), cummax and cummin (their indices a
    running-index op), each an ONNX Scan, forward and reversed."""
    x = gd.input("x", (3, 5))
    peak = gd.cummax(x, 1)
    y = (gd.cumprod(x, 0) * gd.logcumsumexp(x, 1, reverse=True) + peak.values
         + gd.cummin(x, 0, reverse=True).values * gd.cast(peak.indices, "float32"))
    return _with_gradients(x, y, seed=4), {"x": (3, 5)}


def _dropout_case():
    """dropout with a key: the counter-based draw written in uint64 Add, Mul and BitShift."""
    x = gd.input("x", (4, 6))
    return _with_gradients(x, gd.dropout(x, 0.4, key=-77), seed=4), {"x": (4, 6)}


def _logic_and_fmod_case():
    """fmod (Mod with fmod=1) with its gradient; logical ops of floats, bitwise ops of bools and
    shifts of unsigned integers, their results cast to float."""
    x, w = gd.input("x", (2, 4)), gd.input("w", (2, 4))
    p, q = x > 0, w > 0
    truths = [gd.logical_and(x, w), gd.logical_or(p, w), gd.logical_xor(x, q),
              gd.logical_not(x), p & q, p | q, p ^ q, ~p]
    u = gd.cast(gd.abs(x) * 8, "uint8")
    s = gd.cast(gd.abs(w) * 2, "uint8")
    ints = [u << s, u >> s]
    z = gd.fmod(x, w + 3) + sum(gd.cast(t, "float32") for t in truths + ints)
    return _with_gradients(x, z, seed=4), {"x": (2, 4), "w": (2, 4)}


def _reduction_case():
    """prod (its gradient the product of the others), argmax/argmin and sort (argsort's TopK;
    the values' gradient a scatter-add)."""
    x = gd.input("x", (3, 5))
    indices = gd.cast(gd.argmax(x, 0) - gd.argmin(x, 1, keepdims=True), "float32")
    y = gd.prod(x, 1, keepdims=True) * gd.sort(x, 0, descending=True).values + indices
    return _with_gradients(x, y, seed=5), {"x": (3, 5)}


def _gather_scatter_case():
    """gather and scatter_add along an axis (GatherElements; ScatterElements, reduction add),
    indices smaller than the input off the axis, and their gradients."""
    x = gd.input("x", (3, 4))
    index = gd.constant(np.array([[0, 2, 2], [1, 0, 1]]))
    y = gd.scatter_add(x, 0, index, gd.gather(x, 1, index) * 2.0)
    return _with_gradients(x, y, seed=7), {"x": (3, 4)}


def _unknown_batch_case():
    """A loss whose batch is unknown at declaration: its targets' shape is checked against the
    logits' once the shapes are known (`check_shape`, exported as Identity). Only the forward
    graph: a gradient's `sum_to` needs static shapes to export."""
    x, t = gd.input("x", (None, 3)), gd.input("t", (None, 3))
    y = gd.binary_cross_entropy_with_logits(x, t, reduction="none")
    return {"y": y}, {"x": (4, 3), "t": (4, 3)}


CASES = {**{f"pool_{name}": (lambda p=p: _pool_case(*p)) for name, p in POOLS.items()},
         "conv": _conv_case, "movement": _movement_case, "elementwise": _elementwise_case,
         "scan_and_erf": _scan_and_erf_case, "cumulative": _cumulative_case,
         "dropout": _dropout_case, "allreduce": _allreduce_case,
         "logic_and_fmod": _logic_and_fmod_case, "reductions": _reduction_case,
         "gather_scatter": _gather_scatter_case, "unknown_batch": _unknown_batch_case}


def _feeds(shapes, seed):
    rng = np.random.default_rng(seed)
    return {name: (np.array([-1, 0, 3, -1]) if name == "idx"
                   else rng.standard_normal(shape).astype(np.float32))
            for name, shape in shapes.items()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_exported_gradient_graph_runs_in_onnxruntime(case):
    outputs, shapes = CASES[case]()
    model = gd.onnx.save(outputs)
    feeds = _feeds(shapes, seed=len(case))
    got = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    for name, a, b in zip(outputs, got, gd.evaluate(list(outputs.values()), **feeds)):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * max(np.abs(b).max(), 1),
                                   err_msg=f"{case}: {name}")


def test_cases_export_every_op_with_an_emitter():
    exported = set()
    for make in CASES.values():
        outputs, shapes = make()
        stable, _ = prepare(list(outputs.values()), shapes, optimize=False)  # as save() does
        exported.update(n.op for n in topological_order(stable))
    emitters = [op for op in gd.REGISTRY.values() if "onnx" in op.impls]
    assert sorted(op.name for op in emitters if op not in exported) == []


def test_export_finds_each_unique_name_in_constant_probes(monkeypatch):
    """Export is linear in the graph (issue 19 item 10: a search from `hint_1` up for every
    name made it quadratic; MobileNetV2's gradient did not finish in 15 minutes). A depthwise
    convolution's weight gradient is one Conv per group, each with its Slice, Transpose and
    constants all named from a few hints: every name must cost at most two lookups among the
    names taken. (`benchmarks/onnx_export.py` times it.)"""
    from graphdl.onnx import exporter

    probes, writers = [0], []

    class Counted(set):
        def __contains__(self, name):
            probes[0] += 1
            return super().__contains__(name)

    class CountingWriter(exporter.Writer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.taken = Counted(self.taken)
            writers.append(self)

    monkeypatch.setattr(exporter, "Writer", CountingWriter)
    x, w = gd.input("x", (1, 256, 4, 4)), gd.input("w", (256, 1, 3, 3))
    y = gd.conv2d(x, w, padding=1, groups=256)
    gd.onnx.save(gd.grad(gd.sum(y * y), [w]))
    (writer,) = writers
    assert len(writer.taken) > 256 * 8  # the names written
    assert probes[0] <= 2 * len(writer.taken)
