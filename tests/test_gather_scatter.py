"""Gather and scatter along an axis (graphdl/ops/indexing.py: gather, take_along_axis,
scatter, scatter_add, scatter_reduce, index_select, index_add) against PyTorch: the value and
the first and second derivatives of f(x, s)·f(x, s) with respect to both inputs, on the
interpreter, compiled NumPy and the CUDA backend's kernels on the CPU, with no fallback to a
reference implementation. Repeated indices, indices smaller than the input off the axis, int32
indices; then the refusals (out-of-range indices name the input), and ONNX export and import."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
from tests.helpers import onnxruntime_run, run_on, runner_params
from tests.torch_compare import assert_exported_agrees, data, problems

torch = pytest.importorskip("torch")

IDX = np.array([[0, 2, 2], [1, 0, 1], [2, 2, 0]])  # repeats in every column and row
IDX_SMALL = np.array([[2, 0], [1, 1]], dtype=np.int32)  # smaller than (3, 4) off the axis
ROWS = np.array([2, 0, 2, 1])

# name -> (graphdl f(x, s), PyTorch f(x, s), x's shape, s's shape)
CASES = {
    "gather[dim1]": (lambda x, s: gd.gather(x, 1, gd.constant(IDX)) * s,
                     lambda x, s: torch.gather(x, 1, torch.as_tensor(IDX)) * s, (3, 4), (3, 3)),
    "gather[dim0-small-int32]": (
        lambda x, s: gd.gather(x, dim=0, index=gd.constant(IDX_SMALL)) * s,
        lambda x, s: torch.gather(x, 0, torch.as_tensor(IDX_SMALL).long()) * s, (3, 4), (2, 2)),
    "take_along_axis[negative]": (
        lambda x, s: gd.take_along_axis(x, gd.constant(IDX - 3), axis=0) * s,
        lambda x, s: torch.gather(x, 0, torch.as_tensor(IDX)) * s, (3, 3), (3, 3)),
    "scatter_add[dim0]": (lambda x, s: gd.scatter_add(x, 0, gd.constant(IDX), s * s),
                          lambda x, s: torch.scatter_add(x, 0, torch.as_tensor(IDX), s * s),
                          (3, 3), (3, 3)),
    "scatter_add[dim1-small]": (
        lambda x, s: gd.scatter_add(x * x, 1, gd.constant(IDX_SMALL), s),
        lambda x, s: torch.scatter_add(x * x, 1, torch.as_tensor(IDX_SMALL).long(), s),
        (3, 4), (2, 2)),  # a larger s: PyTorch's backward fails
    "scatter[distinct]": (
        lambda x, s: gd.scatter(x, 1, gd.constant(np.array([[2, 0], [1, 3]])), s * s),
        lambda x, s: torch.scatter(x, 1, torch.as_tensor([[2, 0], [1, 3]]), s * s),
        (3, 4), (2, 2)),
    **{f"scatter_reduce[{r}-{'self' if inc else 'alone'}]": (
        lambda x, s, r=r, inc=inc: gd.scatter_reduce(x, 0, gd.constant(IDX_SMALL), s, r,
                                                     include_self=inc),
        lambda x, s, r=r, inc=inc: torch.scatter_reduce(
            x, 0, torch.as_tensor(IDX_SMALL).long(), s, r, include_self=inc), (3, 4), (2, 2))
       for r, inc in [("sum", False), ("mean", True), ("mean", False), ("prod", True),
                      ("prod", False), ("amax", True), ("amin", False)]},
    "index_select[dim1]": (lambda x, s: gd.index_select(x, 1, gd.constant(ROWS)) * s,
                           lambda x, s: torch.index_select(x, 1, torch.as_tensor(ROWS)) * s,
                           (3, 3), (3, 4)),
    "index_add[dim0-alpha]": (
        lambda x, s: gd.index_add(x, 0, gd.constant(ROWS), s * s, alpha=0.5),
        lambda x, s: torch.index_add(x, 0, torch.as_tensor(ROWS), s * s, alpha=0.5),
        (3, 2), (4, 2)),
}

# the cases as tests/torch_compare.py takes them
COMPARED = {name: (f, torch_f, [xs, ss], {}) for name, (f, torch_f, xs, ss) in CASES.items()}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("runner", runner_params())
def test_values_and_two_derivatives_equal_pytorchs(runner, dtype):
    found = problems(COMPARED, runner, dtype)
    assert not found, "\n".join(found)


def test_scatter_with_repeated_indices_writes_their_mean():
    """PyTorch leaves the result undefined; graphdl writes the mean of the values sent."""
    x = gd.input("x", (4,), "float64")
    y = gd.scatter(x, 0, gd.constant(np.array([1, 1, 3])), gd.constant(np.array([1., 3., 5.])))
    (got,) = gd.evaluate([y], {"x": np.zeros(4)})
    np.testing.assert_array_equal(got, [0., 2., 0., 5.])


@pytest.mark.parametrize("runner", runner_params())
@pytest.mark.parametrize("build, bad", [
    (lambda x: gd.gather(x, 1, gd.constant(np.array([[0, 4]] * 3))), 4),
    (lambda x: gd.gather(x, 1, gd.constant(np.array([[0, -1]] * 3))), -1),
    (lambda x: gd.take_along_axis(x, gd.constant(np.array([[0, -5]] * 3)), 1), -5),
    (lambda x: gd.scatter_add(x, 0, gd.constant(np.array([[3, 0, 0, 0]])),
                              gd.constant(np.ones((1, 4)))), 3),
    (lambda x: gd.index_select(x, 0, gd.constant(np.array([0, -1]))), -1),
    (lambda x: gd.index_add(x, 1, gd.constant(np.array([7])), gd.constant(np.ones((3, 1)))), 7),
])
def test_out_of_range_indices_raise_naming_the_input(runner, build, bad):
    x = gd.input("table", (3, 4), "float64")
    with pytest.raises(IndexError, match=rf"table.*index {bad} is out of range"):
        run_on(runner, [build(x)], {"table": np.zeros((3, 4))})


def test_refusals():
    x = gd.input("x", (3, 4), "float64")
    with pytest.raises(gd.GraphError, match="integers"):
        gd.gather(x, 0, gd.constant(np.zeros((3, 4))))
    with pytest.raises(gd.GraphError, match="rank"):
        gd.gather(x, 0, gd.constant(np.zeros(3, dtype=np.int64)))
    with pytest.raises(gd.GraphError, match="1-D"):
        gd.index_select(x, 0, gd.constant(np.zeros((1, 1), dtype=np.int64)))


@pytest.mark.parametrize("name", ["gather[dim1]", "scatter_add[dim0]", "scatter_add[dim1-small]",
                                  "take_along_axis[negative]", "index_add[dim0-alpha]"])
def test_onnx_export_runs_in_onnxruntime(name):
    pytest.importorskip("onnx")
    assert_exported_agrees(COMPARED[name])


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_onnx_import_of_gather_and_scatter_elements(reduction):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    idx = np.array([[0, 2, 2], [1, 0, 1]], dtype=np.int64)
    nodes = [helper.make_node("GatherElements", ["x", "i"], ["g"], axis=1),
             helper.make_node("ScatterElements", ["x", "i", "u"], ["s"], axis=1,
                              reduction=reduction)]
    if reduction == "none":
        idx = np.array([[0, 2, 1], [1, 0, 2]], dtype=np.int64)  # no repeats: defined
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (2, 3)),
                     helper.make_tensor_value_info("u", TensorProto.FLOAT, (2, 3))],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, (2, 3)) for n in "gs"],
        [onnx.numpy_helper.from_array(idx, "i")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    feeds = {"x": data(1, (2, 3), "float32"), "u": data(2, (2, 3), "float32")}
    want = onnxruntime_run(model.SerializeToString(), feeds)
    model = gd.onnx.load(model.SerializeToString())
    got = gd.evaluate(model.outputs, model.feeds(**feeds))
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-6)
