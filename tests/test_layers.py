"""Layers from PyTorch's functional API: values and gradients against PyTorch on every way
graphdl runs a graph, drawn as one gate, imported from ONNX."""

from __future__ import annotations

import io

import numpy as np
import pytest

import graphdl as gd

torch = pytest.importorskip("torch")

from tests.helpers import run_on, runner_params


def _layer_norm_case(dtype, shape, normalized, affine, seed=0):
    rng = np.random.default_rng(seed)
    x0 = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    w0 = rng.uniform(0.5, 1.5, normalized).astype(dtype)
    b0 = rng.standard_normal(normalized).astype(dtype)
    probe = rng.standard_normal(shape).astype(dtype)
    x = gd.input("x", shape, dtype)
    w, b = gd.input("w", normalized, dtype), gd.input("b", normalized, dtype)
    y = gd.layer_norm(x, normalized, w if affine else None, b if affine else None, eps=1e-5)
    loss = gd.sum(y * y * probe)
    wrt = [x, w, b] if affine else [x]
    outputs = [y, *gd.grad(loss, wrt)]
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x0, w0, b0))
    yt = torch.nn.functional.layer_norm(xt, normalized, wt if affine else None,
                                        bt if affine else None, eps=1e-5)
    grads = torch.autograd.grad((yt * yt * torch.tensor(probe)).sum(),
                                [xt, wt, bt] if affine else [xt])
    want = [yt.detach().numpy(), *(g.numpy() for g in grads)]
    feeds = {"x": x0, "w": w0, "b": b0} if affine else {"x": x0}
    return outputs, feeds, want


@pytest.mark.parametrize("runner", runner_params())
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("normalized,affine", [((8,), True), ((3, 8), True), ((8,), False)])
def test_layer_norm_matches_pytorch(runner, dtype, normalized, affine):
    outputs, feeds, want = _layer_norm_case(dtype, (4, 3, 8), normalized, affine)
    got = run_on(runner, outputs, feeds)
    tol = 1e-11 if dtype == "float64" else 2e-4
    for a, b in zip(got, want):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * np.abs(b).max())


def test_layer_norm_second_derivatives_match_finite_differences():
    x = gd.input("x", (2, 5), "float64")
    y = gd.sum(gd.layer_norm(x, 5) ** 3)
    (dx,) = gd.grad(y, [x])
    report = gd.check_grad(gd.sum(dx * dx), {"x": np.random.default_rng(1).normal(size=(2, 5))})
    assert report.ok, report


def test_layer_norm_is_one_gate_when_collapsed():
    x = gd.input("x", (2, 4), "float64")
    y = gd.sum(gd.layer_norm(x, 4))
    source = gd.draw(y, {"x": np.arange(8.0).reshape(2, 4)}, collapse="layer_norm").source
    assert "LayerNorm" in source and "reciprocal" not in source


def test_layer_norm_refuses_a_shape_that_does_not_end_the_input():
    x = gd.input("acts", (2, 4), "float32")
    with pytest.raises(gd.GraphError, match=r"acts.*not normalized_shape \(3,\)"):
        gd.layer_norm(x, 3)
    with pytest.raises(gd.GraphError, match=r"weight.*not normalized_shape \(4,\)"):
        gd.layer_norm(x, 4, np.ones(3, "float32"))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the legacy exporter
def test_pytorch_layer_norm_imports_from_onnx():
    pytest.importorskip("onnx")
    module = torch.nn.LayerNorm((3, 6)).eval()
    with torch.no_grad():
        module.weight.uniform_(0.5, 1.5)
        module.bias.normal_()
    x0 = np.random.default_rng(2).standard_normal((2, 3, 6)).astype(np.float32)
    buf = io.BytesIO()
    torch.onnx.export(module, (torch.from_numpy(x0),), buf, opset_version=17, dynamo=False,
                      input_names=["x"])
    imported = gd.onnx.load(buf.getvalue())
    (got,) = gd.evaluate(imported.outputs, **imported.feeds(x=x0))
    np.testing.assert_allclose(got, module(torch.from_numpy(x0)).detach().numpy(), rtol=1e-5,
                               atol=1e-5)
