"""The reductions of issue 21 (prod, var, std, norm, any, all, argmax, argmin, amax, amin,
logsumexp over several axes, sort, argsort, topk) against PyTorch: values, gradients and, where
smooth, second derivatives, in float64 and float32, on the interpreter, compiled NumPy and the
CUDA backend's kernels on the CPU; then ONNX export (onnxruntime) and import."""

from __future__ import annotations

import math
import re
import shutil
from dataclasses import dataclass

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import graphdl as gd

# rows of four: one zero, two zeros, ties and no zero, three zeros
X = np.array([[1.5, 0.0, -2.0, 0.5], [0.0, 0.0, 3.0, -1.0], [2.0, 2.0, -0.5, 2.0],
              [0.0, 0.0, 0.0, 1.5]])
SMOOTH = np.array([[1.5, -0.75, -2.0, 0.5], [0.25, 1.25, 3.0, -1.0], [2.0, 1.75, -0.5, 0.4]])
CUBE = np.random.default_rng(21).choice([-1.0, -0.5, 0.0, 0.5, 1.0, 2.0], (2, 3, 4))
EQUAL_ROWS = np.array([[0.5, 0.5, 0.5], [1.0, -2.0, 0.25]])  # a variance of 0, then not
EMPTY = np.zeros((2, 0))
ZERO_ROWS = np.array([[0.0, 0.0, 0.0], [1.0, -2.0, 0.0], [3.0, 3.0, -3.0], [1.0, 2.0, 0.5]])


def torch_prod(t, dim=None, keepdim=False):
    """torch.prod over several dims (it takes one): over them moved last and flattened."""
    dims = tuple(range(t.ndim)) if dim is None else (dim,) if isinstance(dim, int) else dim
    dims = tuple(d % t.ndim for d in dims)
    kept = [d for d in range(t.ndim) if d not in dims]
    flat = t.permute(kept + list(dims)).reshape([t.shape[d] for d in kept] + [-1])
    out = flat.prod(-1)
    return out.reshape([1 if d in dims else t.shape[d] for d in range(t.ndim)]) if keepdim else out


def torch_topk(t, k, dim=-1, largest=True):
    """topk's values and indices, tied elements first to last: graphdl's (a stable sort's)."""
    values, indices = torch.sort(t, dim=dim, descending=largest, stable=True)
    return values.narrow(dim, 0, k), indices.narrow(dim, 0, k)


@dataclass(frozen=True)
class Case:
    id: str
    graphdl: object  # x node -> node (or a tuple of nodes)
    torch: object  # tensor -> tensor (or a tuple)
    value: np.ndarray
    second: bool = True  # compare second derivatives (the function is smooth there)


def norm_case(p, axis, value, second=True, **kwargs):
    def reference(t):
        return torch.linalg.vector_norm(t, 2 if p == "fro" else p, axis, **kwargs)
    return Case(f"norm[{p}, {axis}]", lambda x: gd.norm(x, p, axis, **kwargs), reference,
                value, second)


CASES = [
    Case("prod[-1]", lambda x: gd.prod(x, -1), lambda t: torch.prod(t, -1), X),
    Case("prod[0, keep]", lambda x: gd.prod(x, 0, keepdims=True),
         lambda t: torch.prod(t, 0, keepdim=True), X),
    Case("prod[all]", gd.prod, torch.prod, X[:2, :3]),
    Case("prod[(0, 2)]", lambda x: gd.prod(x, (0, 2)), lambda t: torch_prod(t, (0, 2)), CUBE),
    Case("prod[(-1, 0), keep]", lambda x: gd.prod(x, dim=(-1, 0), keepdim=True),
         lambda t: torch_prod(t, (-1, 0), True), CUBE),
    Case("prod[empty]", lambda x: gd.prod(x, 1), lambda t: torch.prod(t, 1), EMPTY),
    Case("amax[ties]", lambda x: gd.amax(x, 1), lambda t: torch.amax(t, 1), X),
    Case("amax[(0, -1), keep]", lambda x: gd.amax(x, (0, -1), keepdims=True),
         lambda t: torch.amax(t, (0, -1), keepdim=True), CUBE, second=False),
    Case("amin[all]", gd.amin, torch.amin, X, second=False),
    Case("var[-1]", lambda x: gd.var(x, -1), lambda t: torch.var(t, -1), X),
    Case("var[(0, 1), correction=0]", lambda x: gd.var(x, (0, 1), correction=0),
         lambda t: torch.var(t, (0, 1), correction=0), CUBE),
    Case("var[all, correction=2]", lambda x: gd.var(x, correction=2),
         lambda t: torch.var(t, correction=2), X),
    Case("std[1, keep]", lambda x: gd.std(x, dim=1, keepdim=True),
         lambda t: torch.std(t, 1, keepdim=True), EQUAL_ROWS),
    Case("std[-2]", lambda x: gd.std(x, -2), lambda t: torch.std(t, -2), CUBE),
    *(norm_case(p, 1, ZERO_ROWS, second=p in (1, 3, math.inf, -math.inf))
      for p in (2, "fro", 1, math.inf, -math.inf, 0, 3, 0.5, 1.5, -1, -0.5)),
    *(norm_case(p, (0, 2), CUBE + 2.5, keepdim=True) for p in (2, 0.5, 1.5, -1)),
    norm_case(2, None, SMOOTH),
    Case("logsumexp[(0, 2)]", lambda x: gd.logsumexp(x, (0, 2)),
         lambda t: torch.logsumexp(t, (0, 2)), CUBE),
    Case("logsumexp[(-1, 0), keep]", lambda x: gd.logsumexp(x, (-1, 0), keepdims=True),
         lambda t: torch.logsumexp(t, (-1, 0), keepdim=True), CUBE),
    Case("sort[-1]", lambda x: gd.sort(x, -1), lambda t: torch.sort(t, dim=-1, stable=True), X),
    Case("sort[0, descending]", lambda x: gd.sort(x, 0, descending=True),
         lambda t: torch.sort(t, dim=0, descending=True, stable=True), CUBE),
    Case("argsort[1]", lambda x: gd.argsort(x, 1),
         lambda t: torch.argsort(t, dim=1, stable=True), CUBE),
    Case("topk[2]", lambda x: gd.topk(x, 2), lambda t: torch_topk(t, 2), X),
    Case("topk[2, 0, smallest]", lambda x: gd.topk(x, 2, dim=0, largest=False),
         lambda t: torch_topk(t, 2, 0, largest=False), CUBE),
    Case("topk[0]", lambda x: gd.topk(x, 0, 1), lambda t: torch_topk(t, 0, 1), X),
    Case("argmax[1]", lambda x: gd.argmax(x, 1), lambda t: torch.argmax(t, 1), X),
    Case("argmax[all, keep]", lambda x: gd.argmax(x, keepdims=True),
         lambda t: torch.argmax(t, keepdim=True), CUBE),
    Case("argmin[-3, keep]", lambda x: gd.argmin(x, -3, keepdims=True),
         lambda t: torch.argmin(t, -3, keepdim=True), CUBE),
    Case("argmin[all]", gd.argmin, torch.argmin, X),
    Case("any[1]", lambda x: gd.any(x, 1), lambda t: torch.any(t, 1), X),
    Case("any[(0, 2), keep]", lambda x: gd.any(x, (0, 2), keepdims=True),
         lambda t: torch.any(t, (0, 2), keepdim=True), CUBE),
    Case("any[empty]", lambda x: gd.any(x, -1), lambda t: torch.any(t, -1), EMPTY),
    Case("all[0]", lambda x: gd.all(x, 0), lambda t: torch.all(t, 0), X),
    Case("all[all]", gd.all, torch.all, CUBE),
    Case("all[empty, keep]", lambda x: gd.all(x, 1, keepdim=True),
         lambda t: torch.all(t, 1, keepdim=True), EMPTY),
]


def _parts(result):
    return list(result) if isinstance(result, tuple) else [result]


def _probe(shape, seed):
    return np.random.default_rng(seed).uniform(0.5, 1.5, shape).round(2)


def torch_expected(case, dtype):
    """PyTorch's values, then (float results) the gradient of Σ values · probe and, where
    `case.second`, the gradient of Σ gradient · probe, in `dtype`."""
    x = torch.tensor(case.value, dtype=getattr(torch, dtype), requires_grad=True)
    values = _parts(case.torch(x))
    out = [v.detach().numpy() for v in values]
    floats = [v for v in values if v.is_floating_point()]
    if not floats:
        return out
    total = sum((v * torch.tensor(_probe(v.shape, k), dtype=v.dtype)).sum()
                for k, v in enumerate(floats))
    (g,) = _torch_grad(total, x)
    out.append(g.detach().numpy())
    if case.second:
        (h,) = _torch_grad((g * torch.tensor(_probe(g.shape, 9), dtype=g.dtype)).sum(), x)
        out.append(h.detach().numpy(force=True))
    return out


def _torch_grad(y, x):
    """d y / d x, zeros where y does not depend on x (p = 0's norm, the sum of nothing)."""
    if not y.requires_grad:
        return (torch.zeros_like(x),)
    return torch.autograd.grad(y, x, create_graph=True, allow_unused=True,
                               materialize_grads=True)


def graphdl_outputs(case, dtype, k):
    """The nodes `torch_expected` has an answer for, from the input `x{k}`."""
    x = gd.input(f"x{k}", case.value.shape, dtype)
    values = _parts(case.graphdl(x))
    floats = [v for v in values if v.dtype.kind == "f"]
    if not floats:
        return values
    total = sum(gd.sum(v * gd.constant(_probe(v.shape, j).astype(dtype)))
                for j, v in enumerate(floats))
    (g,) = gd.grad(total, [x])
    out = [*values, g]
    if case.second:
        out += gd.grad(gd.sum(g * gd.constant(_probe(g.shape, 9).astype(dtype))), [x])
    return out


HAVE_GXX = shutil.which("g++") is not None
RUNNERS = {
    "evaluate": lambda outputs, feeds: gd.evaluate(outputs, feeds),
    "numpy": lambda outputs, feeds: gd.compile(outputs)(feeds),
    "cuda-cpu": lambda outputs, feeds: gd.compile(outputs, backend="cuda", device="cpu")(feeds),
}
TOLERANCE = {"float64": 1e-10, "float32": 2e-5}


@pytest.mark.parametrize("runner", list(RUNNERS))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_values_and_derivatives_match_pytorch(dtype, runner):
    if runner == "cuda-cpu" and not HAVE_GXX:
        pytest.skip("g++ not found: the CUDA backend's kernels run on the CPU through g++")
    outputs, expected, labels = [], [], []
    for k, case in enumerate(CASES):
        nodes = graphdl_outputs(case, dtype, k)
        want = torch_expected(case, dtype)
        assert len(nodes) == len(want), case.id
        outputs += nodes
        expected += want
        labels += [f"{case.id} output {j}" for j in range(len(nodes))]
    feeds = {f"x{k}": case.value.astype(dtype) for k, case in enumerate(CASES)}
    with np.errstate(divide="ignore", invalid="ignore"):
        got = RUNNERS[runner](outputs, feeds)
    rtol = TOLERANCE[dtype]
    for label, a, b in zip(labels, got, expected, strict=True):
        a = np.asarray(a)
        assert (a.dtype, a.shape) == (b.dtype, b.shape), label
        finite = np.abs(b[np.isfinite(b)].astype(np.float64))
        scale = max(1.0, float(np.max(finite, initial=0.0)))
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale, err_msg=label)


# ---------------------------------------------------------------- conventions, one by one
def _grad(y, x, value):
    return gd.evaluate(gd.grad(y, [x]), {x.name: value})[0]


def test_prod_gradient_is_the_product_of_the_others_with_zeros():
    x = gd.input("x", (4, 4), "float64")
    grad = _grad(gd.sum(gd.prod(x, 1)), x, X)
    others = [[np.prod(np.delete(row, j)) for j in range(4)] for row in X]
    np.testing.assert_array_equal(grad, others)
    assert grad[0, 1] == -1.5 and grad[1].tolist() == [0, 0, 0, 0] and grad[3, 3] == 0
    # the second derivative d²(x0·x1·x2)/dx0 dx1 = x2, at x0 = x1 = 0 (two zeros) too
    v = gd.input("v", (3,), "float64")
    (g,) = gd.grad(gd.prod(v), [v])
    hessian = [_grad(g[j], v, np.array([0.0, 0.0, 2.5])) for j in range(3)]
    np.testing.assert_array_equal(hessian, [[0, 2.5, 0], [2.5, 0, 0], [0, 0, 0]])


def test_std_and_norm_have_gradient_0_where_they_are_0():
    x = gd.input("x", (2, 3), "float64")
    np.testing.assert_array_equal(_grad(gd.sum(gd.std(x, 1)), x, EQUAL_ROWS)[0], [0, 0, 0])
    for p in (2, "fro", 1, 0.5, 1.5, 3, math.inf):
        grad = _grad(gd.sum(gd.norm(x, p, 1)), x, np.array([[0.0, 0.0, 0.0], [0.0, 1.0, -2.0]]))
        assert np.all(grad[0] == 0) and grad[1, 0] == 0, p


def test_arg_extrema_take_the_first_occurrence_and_nan():
    x = gd.input("x", (2, 4), "float64")
    value = np.array([[1.0, 3.0, 3.0, -1.0], [2.0, np.nan, 5.0, np.nan]])
    got = gd.evaluate([gd.argmax(x, 1), gd.argmin(x, -1), gd.argmax(x), gd.argmin(x, None, True)],
                      x=value)
    assert [g.tolist() for g in got] == [[1, 1], [3, 1], 5, [[5]]]
    assert all(g.dtype == np.int64 for g in got)


def test_sort_is_stable_nan_largest_and_routes_gradients_back():
    x = gd.input("x", (6,), "float64")
    value = np.array([1.0, np.nan, -0.0, 0.0, 1.0, np.nan])
    got = gd.evaluate([gd.sort(x).indices, gd.sort(x, descending=True).indices,
                       gd.argsort(x, descending=True)], x=value)
    assert [g.tolist() for g in got] == [[2, 3, 0, 4, 1, 5], [1, 5, 0, 4, 2, 3],
                                         [1, 5, 0, 4, 2, 3]]
    weights = gd.constant(np.arange(1.0, 7.0))
    value = np.array([3.0, 1.0, 2.0, 1.0, 5.0, 4.0])
    np.testing.assert_array_equal(_grad(gd.sum(gd.sort(x)[0] * weights), x, value),
                                  [4, 1, 3, 2, 6, 5])
    top = gd.topk(x, 2, largest=False)
    np.testing.assert_array_equal(_grad(gd.sum(top.values * weights[:2]), x, value),
                                  [0, 1, 0, 2, 0, 0])


def test_amax_amin_are_max_min_with_pytorch_names():
    x = gd.input("x", (3, 4), "float64")
    assert gd.amax(x, dim=1, keepdim=True) is gd.max(x, 1, keepdims=True)
    assert gd.amin(x, -1) is gd.min(x, 1)


REFUSED = [
    (lambda x: gd.argmax(x, (0, 1)), "argmax of 'x': axis must be one axis or None"),
    (lambda x: gd.prod(x, 2), "prod of 'x': axis 2 is out of range"),
    (lambda x: gd.var(x, (0, 0)), "var of 'x': repeated axis"),
    (lambda x: gd.std(x, correction="1"), "std of 'x': correction must be a number"),
    (lambda x: gd.norm(x, "nuc"), "norm of 'x': p must be a number, inf, -inf or 'fro'"),
    (lambda x: gd.norm(x, float("nan")), "norm of 'x': p must be a number, got nan"),
    (lambda x: gd.norm(x, True), "norm of 'x': p must be a number, got True"),
    (lambda x: gd.norm(gd.cast(x, "int32"), 2), "norm expects floating-point input"),
    (lambda x: gd.sum(x, axis=0, dim=1), "sum of 'x': give axis or dim"),
    (lambda x: gd.any(x, keepdims=True, keepdim=True), "any of 'x': give keepdims or keepdim"),
    (lambda x: gd.topk(x, 4), "topk of 'x': k must be an int from 0 to the size of axis 1, 3"),
    (lambda x: gd.sort(x, (0, 1)), "sort of 'x': axis must be one int or None"),
    (lambda x: gd.argsort(x, descending=1), "argsort of 'x': descending must be True or False"),
]


@pytest.mark.parametrize("build,message", REFUSED, ids=[m.split(":")[0] for _, m in REFUSED])
def test_bad_axes_and_parameters_are_refused_naming_the_node(build, message):
    with pytest.raises(gd.GraphError, match=re.escape(message)):
        build(gd.input("x", (2, 3), "float32"))


@pytest.mark.parametrize("build", [lambda e: gd.argmax(e, 1), lambda e: gd.argmin(e, 1),
                                   lambda e: gd.norm(e, math.inf, 1), lambda e: gd.norm(e, -1)])
def test_reductions_without_a_value_over_an_empty_axis_are_refused(build):
    with pytest.raises(gd.GraphError, match="'e' over axis 1, which has size 0"):
        build(gd.input("e", (2, 0), "float32"))


# ---------------------------------------------------------------- ONNX
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def test_export_runs_in_onnxruntime():
    x = gd.input("x", (3, 4), "float32")
    b = gd.input("b", (2, 5), "bool")
    ys = {"prod": gd.prod(x, 1), "prod_all": gd.prod(x), "argmax": gd.argmax(x, 0),
          "argmin": gd.argmin(x, keepdims=True), "argsort": gd.argsort(x, 0, descending=True),
          "sort": gd.sort(x)[0], "topk": gd.topk(x, 2, largest=False)[1],
          "norm1": gd.norm(x, 1, 1), "norm2": gd.norm(x), "norm_inf": gd.norm(x, math.inf, 0),
          "norm3": gd.norm(x, 3, 1, keepdims=True), "var": gd.var(x, 0), "std": gd.std(x, 1),
          "any": gd.any(x, 1), "all": gd.all(b, 0), "any_bool": gd.any(b),
          "argmax_bool": gd.argmax(b, 1), "logsumexp": gd.logsumexp(x, (0, 1))}
    loss = sum(gd.sum(y * gd.constant(_probe(y.shape, k).astype("float32")))
               for k, y in enumerate(ys.values()) if y.dtype.kind == "f")
    ys["dx"] = gd.grad(loss, [x])[0]
    value = np.array([[1.5, 0.0, -2.0, 0.5], [0.0, 0.0, 3.0, 2.0], [2.0, 2.0, -0.5, 2.0]],
                     np.float32)
    feeds = {"x": value, "b": np.array([[0, 1, 1, 0, 0], [0, 0, 1, 0, 1]], bool)}
    model = gd.onnx.save(ys)
    used = {n.op_type for n in model.graph.node}
    assert {"ReduceProd", "ArgMax", "ArgMin", "TopK"} <= used
    got = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    for name, a, b in zip(ys, got, gd.evaluate(list(ys.values()), feeds), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=name)


def _model(node, inputs, outputs, opset=17, initializers=()):
    from onnx import helper

    graph = helper.make_graph([node], "g", inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


IMPORTED = {  # (op_type, attributes, opset, axes given as an input)
    "ReduceProd": ("ReduceProd", {"axes": [0, 2], "keepdims": 0}, 17, False),
    "ReduceProd-18": ("ReduceProd", {"keepdims": 1}, 18, True),
    "ReduceL1": ("ReduceL1", {"axes": [-1]}, 17, False),
    "ReduceL2": ("ReduceL2", {"axes": [1, 2], "keepdims": 0}, 17, False),
    "ReduceL2-all": ("ReduceL2", {}, 17, False),
    "ReduceLogSumExp": ("ReduceLogSumExp", {"axes": [0, -1], "keepdims": 0}, 17, False),
    "ArgMax": ("ArgMax", {"axis": 1}, 17, False),
    "ArgMax-last": ("ArgMax", {"axis": -1, "keepdims": 0, "select_last_index": 1}, 17, False),
    "ArgMin": ("ArgMin", {"axis": 0, "keepdims": 0}, 17, False),
    "ArgMin-last": ("ArgMin", {"axis": 2, "select_last_index": 1}, 17, False),
}


@pytest.mark.parametrize("case", sorted(IMPORTED))
def test_reductions_import_as_onnxruntime_runs_them(case):
    from onnx import TensorProto, helper

    op_type, attrs, opset, axes_input = IMPORTED[case]
    inputs = ["x"] + (["axes"] if axes_input else [])
    initializers = [helper.make_tensor("axes", TensorProto.INT64, [2], [1, -1])] * axes_input
    out = TensorProto.INT64 if op_type.startswith("Arg") else TensorProto.FLOAT
    model = _model(helper.make_node(op_type, inputs, ["y"], **attrs),
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
                   [helper.make_tensor_value_info("y", out, None)], opset, initializers)
    value = CUBE.astype(np.float32)  # ties for the arg-extrema
    (want,) = ort.InferenceSession(model.SerializeToString()).run(None, {"x": value})
    (got,) = gd.evaluate(gd.onnx.load(model).outputs, x=value)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("largest", [1, 0])
def test_topk_imports_values_and_indices(largest):
    from onnx import TensorProto, helper

    model = _model(helper.make_node("TopK", ["x", "k"], ["values", "indices"], axis=1,
                                    largest=largest),
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
                   [helper.make_tensor_value_info("values", TensorProto.FLOAT, None),
                    helper.make_tensor_value_info("indices", TensorProto.INT64, None)],
                   initializers=[helper.make_tensor("k", TensorProto.INT64, [1], [2])])
    value = CUBE.astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"x": value})
    got = gd.evaluate(gd.onnx.load(model).outputs, x=value)
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
