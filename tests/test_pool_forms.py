"""The poolings made of the 2-D ones (max_pool1d, avg_pool1d, adaptive_avg_pool1d,
adaptive_max_pool1d, max_pool3d, avg_pool3d) against PyTorch: values and input gradients (max
pooling on a grid of few values: ties go to the first maximum, as PyTorch's), second
derivatives, on every way graphdl runs a graph; two- and six-sided padding with an unknown
batch; errors at declaration; ONNX import (3-D) and export."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
from graphdl.errors import GraphError
from tests.helpers import mismatches, run_cases, run_on, runner_params

torch = pytest.importorskip("torch")
F = torch.nn.functional

CASES3D = [  # (input shape, keyword arguments both take)
    ((2, 3, 5, 6, 7), {"kernel_size": 2}),
    ((1, 2, 7, 5, 6), {"kernel_size": (3, 2, 3), "stride": (2, 1, 2), "padding": (1, 1, 1),
                       "ceil_mode": True}),
    ((2, 2, 6, 6, 5), {"kernel_size": 3, "stride": 2, "padding": 1}),
    ((1, 1, 4, 4, 4), {"kernel_size": (2, 3, 1), "stride": 1}),
]
MAX_ONLY = [((2, 2, 6, 6, 5), {"kernel_size": 3, "stride": 2, "padding": 1,
                               "dilation": (2, 1, 1)})]
AVG_ONLY = [((1, 2, 7, 5, 6), {"kernel_size": (3, 2, 3), "stride": (2, 1, 2),
                               "padding": (1, 1, 1), "ceil_mode": True,
                               "count_include_pad": False}),
            ((2, 2, 6, 6, 5), {"kernel_size": 3, "stride": 2, "padding": 1,
                               "count_include_pad": False})]
CASES1D = [
    ((2, 3, 9), {"kernel_size": 2}),
    ((1, 2, 10), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    ((2, 2, 7), {"kernel_size": (4,), "stride": (3,), "padding": 2}),
]
POOLS = [("max_pool3d", shape, kwargs) for shape, kwargs in CASES3D + MAX_ONLY] + [
    ("avg_pool3d", shape, kwargs) for shape, kwargs in CASES3D + AVG_ONLY] + [
    ("max_pool1d", shape, kwargs) for shape, kwargs in CASES1D] + [
    ("max_pool1d", (2, 2, 11), {"kernel_size": 3, "stride": 2, "padding": 1, "dilation": 3}),
    ("max_pool1d", (1, 1, 5), {"kernel_size": 3, "stride": 3, "ceil_mode": True}),
] + [("avg_pool1d", shape, kwargs) for shape, kwargs in CASES1D] + [
    ("avg_pool1d", (1, 2, 10), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True,
                                "count_include_pad": False}),
    ("adaptive_avg_pool1d", (2, 3, 10), {"output_size": 4}),
    ("adaptive_avg_pool1d", (3, 7), {"output_size": 3}),  # unbatched (C, L)
    ("adaptive_max_pool1d", (2, 3, 10), {"output_size": 4}),
    ("adaptive_max_pool1d", (3, 8), {"output_size": (2,)}),
]
# one case of each pooling, for float32, second derivatives and the ONNX export
EACH = [("max_pool1d", *CASES1D[1]), ("avg_pool1d", *CASES1D[1]),
        ("max_pool3d", *CASES3D[1]), ("avg_pool3d", *CASES3D[1])]

def _case(name, shape, kwargs, dtype="float64", seed=0, prefix=""):
    """y and dL/dx for L = Σ y·probe, the feeds, and PyTorch's values (the input named x after
    `prefix`); max pooling reads a grid of four values, so its windows hold ties."""
    rng = np.random.default_rng(seed)
    x0 = (rng.choice([-1.0, 0.0, 0.5, 1.0], size=shape) if "max" in name
          else rng.standard_normal(shape)).astype(dtype)
    xt = torch.tensor(x0, requires_grad=True)
    yt = getattr(F, name)(xt, **kwargs)
    probe = rng.standard_normal(tuple(yt.shape)).astype(dtype)
    (gt,) = torch.autograd.grad(yt, [xt], torch.tensor(probe))
    x = gd.input(prefix + "x", shape, dtype)
    y = getattr(gd, name)(x, **kwargs)
    return ([y, gd.grad(gd.sum(y * probe), x)], {prefix + "x": x0},
            [yt.detach().numpy(), gt.numpy()])


@pytest.mark.parametrize("runner", runner_params())
def test_values_and_gradients_match_pytorch(runner):
    """Every case in one graph (one kernel build, not one per case)."""
    cases = {f"{name} {shape} {kwargs}": _case(name, shape, kwargs, prefix=f"c{k}_")
             for k, (name, shape, kwargs) in enumerate(POOLS)}
    problems = []
    for label, (got, want) in run_cases(runner, cases).items():
        problems += mismatches(label, ["y", "dL/dx"], got, want, "float64", 1e-12, 1e-12)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name,shape,kwargs", EACH)
def test_float32(name, shape, kwargs):
    outputs, feeds, want = _case(name, shape, kwargs, dtype="float32")
    for got, expected in zip(run_on("numpy", outputs, feeds), want):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name,shape,kwargs", [
    *EACH, ("avg_pool3d", *AVG_ONLY[1]), ("adaptive_max_pool1d", (2, 3, 10), {"output_size": 4})])
def test_double_backward_matches_pytorch(name, shape, kwargs):
    """d/dx of Σ (dL/dx)² with L = Σ y²: second derivatives through the 2-D poolings' gradient
    ops (random values: no ties, so the maxima are where PyTorch puts them)."""
    rng = np.random.default_rng(3)
    x0 = rng.standard_normal(shape)
    xt = torch.tensor(x0, requires_grad=True)
    yt = getattr(F, name)(xt, **kwargs)
    (gx,) = torch.autograd.grad((yt * yt).sum(), [xt], create_graph=True)
    (want,) = torch.autograd.grad((gx * gx).sum(), [xt])
    x = gd.input("x", shape, "float64")
    y = getattr(gd, name)(x, **kwargs)
    (dx,) = gd.grad(gd.sum(y * y), [x])
    got = gd.evaluate(gd.grad(gd.sum(dx * dx), x), {"x": x0})
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["max_pool3d", "avg_pool3d"])
def test_six_sides_of_padding_and_an_unknown_batch(name):
    """Six sides (front, back, top, bottom, left, right), as ONNX's asymmetric pads import;
    for average pooling without the padding counted, that is PyTorch's on the same window
    grid: the padded input's sums over the counts of real cells."""
    rng = np.random.default_rng(1)
    x0 = rng.standard_normal((3, 2, 5, 4, 6))
    x = gd.input("x", (None, 2, 5, 4, 6), "float64")
    sides = (1, 0, 0, 1, 1, 1)
    extra = {} if name == "max_pool3d" else {"count_include_pad": False}
    y = getattr(gd, name)(x, 2, padding=sides, **extra)
    pad = (1, 1, 0, 1, 1, 0)  # F.pad's order: last axis first
    if name == "max_pool3d":
        want = F.max_pool3d(F.pad(torch.tensor(x0), pad, value=-np.inf), 2).numpy()
    else:
        sums = F.avg_pool3d(F.pad(torch.tensor(x0), pad), 2, divisor_override=1)
        counts = F.avg_pool3d(F.pad(torch.ones_like(torch.tensor(x0)), pad), 2,
                              divisor_override=1)
        want = (sums / counts).numpy()
    assert y.shape == (None, *want.shape[1:])
    for runner in ("evaluate", "numpy"):
        (got,) = run_on(runner, [y], {"x": x0})
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["max_pool1d", "avg_pool1d"])
def test_two_sides_of_padding_and_an_unknown_batch(name):
    """Two sides (start, end), as ONNX's asymmetric pads: PyTorch's pooling of the input padded
    so (with -inf for max pooling, whose padded cells never win; for average pooling with the
    padding counted, zeros)."""
    x0 = np.random.default_rng(1).standard_normal((3, 2, 8))
    x = gd.input("x", (None, 2, 8), "float64")
    y = getattr(gd, name)(x, 3, stride=2, padding=(2, 0))
    fill = -np.inf if name == "max_pool1d" else 0.0
    want = getattr(F, name)(F.pad(torch.tensor(x0), (2, 0), value=fill), 3, stride=2).numpy()
    assert y.shape == (None, *want.shape[1:])
    for runner in ("evaluate", "numpy"):
        (got,) = run_on(runner, [y], {"x": x0})
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_each_is_one_gate_over_the_2d_pooling():
    x = gd.input("x", (1, 2, 8))
    assert gd.max_pool1d(x, 2).name == "max_pool1d"
    assert gd.avg_pool1d(x, 2).name == "avg_pool1d"


@pytest.mark.parametrize("call,message", [
    (lambda: gd.max_pool1d(gd.input("seq", (1, 2, 4, 4)), 2),
     r"max_pool1d of 'seq': 'seq' must be 3-D \(N, C, L\)"),
    (lambda: gd.avg_pool1d(gd.input("seq", (1, 2, 4)), 5),
     (r"avg_pool1d of 'seq': the window \(5 wide with its dilation\) is longer than 'seq''s "
      r"axis 2 of size 4 with padding 0\+0")),
    (lambda: gd.max_pool1d(gd.input("seq", (1, 2, 4)), 2, dilation=4),
     r"max_pool1d of 'seq': the window \(5 wide"),
    (lambda: gd.max_pool1d(gd.input("seq", (1, 2, 4)), (2, 2)),
     r"max_pool1d of 'seq': kernel_size must be a positive int or a 1-tuple of one"),
    (lambda: gd.avg_pool1d(gd.input("seq", (1, 2, 4)), 2, stride=0),
     r"avg_pool1d of 'seq': stride must be a positive int"),
    (lambda: gd.avg_pool1d(gd.input("seq", (1, 2, 4), "int32"), 2),
     r"avg_pool1d expects floating-point input, got 'seq' of dtype int32"),
    (lambda: gd.max_pool1d(gd.input("seq", (1, 2, 4)), 2, padding=(1, 1, 1)),
     r"max_pool1d of 'seq': padding must be a non-negative int or two sides"),
    (lambda: gd.adaptive_avg_pool1d(gd.input("seq", (1, 2, 4, 4)), 2),
     r"adaptive_avg_pool1d of 'seq': needs \(N, C, L\) or \(C, L\) input"),
    (lambda: gd.adaptive_max_pool1d(gd.input("seq", (1, 2, 4)), 0),
     r"adaptive_max_pool1d of 'seq': output_size must be a positive int"),
    (lambda: gd.max_pool3d(gd.input("vol", (1, 2, 4, 4)), 2),
     r"max_pool3d of 'vol': 'vol' must be 5-D \(N, C, D, H, W\)"),
    (lambda: gd.avg_pool3d(gd.input("vol", (1, 2, None, 4, 4)), 2),
     r"avg_pool3d of 'vol': needs known channels, depth, height and width"),
    (lambda: gd.max_pool3d(gd.input("vol", (1, 2, 4, 4, 4)), (2, 2)),
     r"max_pool3d of 'vol': kernel_size must be a positive int or a triple of them"),
    (lambda: gd.avg_pool3d(gd.input("vol", (1, 2, 4, 4, 4)), 2, stride=0),
     r"avg_pool3d of 'vol': stride must be a positive int or a triple of them, got 0"),
    (lambda: gd.avg_pool3d(gd.input("vol", (1, 2, 4, 4, 4), "int32"), 2),
     r"avg_pool3d expects floating-point input, got 'vol' of dtype int32"),
    (lambda: gd.max_pool3d(gd.input("vol", (1, 2, 4, 4, 4)), 2, padding=(1, 1)),
     r"max_pool3d of 'vol': padding must be a non-negative int or a triple of them"),
])
def test_bad_declarations_name_the_variable(call, message):
    with pytest.raises(GraphError, match=message):
        call()


def _pool_model(op, shape, **attrs):
    from onnx import TensorProto, helper

    node = helper.make_node(op, ["x"], ["y"], **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, shape)], [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                                         None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("op,attrs", [
    ("MaxPool", {"kernel_shape": [2, 3, 2], "strides": [2, 1, 2], "pads": [1, 0, 1, 0, 1, 0],
                 "ceil_mode": 1}),
    ("MaxPool", {"kernel_shape": [3, 2, 2], "dilations": [2, 1, 1]}),
    ("AveragePool", {"kernel_shape": [2, 2, 3], "pads": [0, 1, 1, 1, 0, 1],
                     "count_include_pad": 0}),
    ("AveragePool", {"kernel_shape": [3, 3, 3], "strides": [2, 2, 2], "auto_pad": "SAME_UPPER",
                     "count_include_pad": 1}),
])
def test_onnx_import_matches_onnxruntime(op, attrs):
    ort = pytest.importorskip("onnxruntime")
    model = _pool_model(op, (2, 3, 6, 5, 7), **attrs)
    x0 = np.random.default_rng(0).standard_normal((2, 3, 6, 5, 7)).astype("float32")
    (want,) = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x0})
    imported = gd.onnx.load(model)
    (got,) = gd.compile(imported.outputs)(imported.feeds(x=x0))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name,shape,kwargs", EACH)
def test_onnx_export_runs_in_onnxruntime(name, shape, kwargs, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    outputs, feeds, want = _case(name, shape, kwargs, dtype="float32")
    gd.onnx.save(outputs, str(tmp_path / "pool.onnx"))
    got = ort.InferenceSession(str(tmp_path / "pool.onnx")).run(None, feeds)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
