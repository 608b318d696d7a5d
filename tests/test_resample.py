"""Resampling (graphdl/ops/resample.py: interpolate, adaptive_avg_pool2d, adaptive_max_pool2d,
unfold) against PyTorch: the value and the first and second derivatives of f(x)·f(x) on the
interpreter, compiled NumPy and the CUDA backend's kernels on the CPU, with no fallback to a
reference implementation; PyTorch's coordinate rules over many sizes and scale factors; the
arg-max indices and the tie rule of adaptive max pooling; finite differences; the refusals;
and ONNX: export to onnxruntime, import of Resize, and a network exported by PyTorch."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

import graphdl as gd
from tests.helpers import graph_numeric_grads, run_on, runner_params
from tests.torch_compare import assert_exported_agrees, data, problems

torch = pytest.importorskip("torch")
F = torch.nn.functional

# name -> (graphdl f(x), PyTorch f(x), x's shape)
CASES = {
    "nearest[x2]": (lambda x: gd.interpolate(x, scale_factor=2),
                    lambda x: F.interpolate(x, scale_factor=2), (2, 3, 3, 4)),
    "nearest[size-mixed]": (lambda x: gd.interpolate(x, size=(7, 3)),
                            lambda x: F.interpolate(x, size=(7, 3)), (1, 2, 5, 6)),
    "nearest[scales-1.7-0.6]": (
        lambda x: gd.interpolate(x, scale_factor=(1.7, 0.6)),
        lambda x: F.interpolate(x, scale_factor=(1.7, 0.6)), (1, 2, 5, 6)),
    "nearest[2.1-shifts]": (lambda x: gd.interpolate(x, scale_factor=2.1),
                            lambda x: F.interpolate(x, scale_factor=2.1), (1, 1, 5, 3)),
    "nearest[half-slices]": (lambda x: gd.interpolate(x, scale_factor=0.5),
                             lambda x: F.interpolate(x, scale_factor=0.5), (1, 2, 6, 5)),
    "nearest[3d]": (lambda x: gd.interpolate(x, scale_factor=2.5),
                    lambda x: F.interpolate(x, scale_factor=2.5), (2, 3, 4)),
    "nearest-exact[scales]": (
        lambda x: gd.interpolate(x, scale_factor=(1.5, 0.7), mode="nearest-exact"),
        lambda x: F.interpolate(x, scale_factor=(1.5, 0.7), mode="nearest-exact"), (1, 2, 5, 6)),
    "area[3d-down]": (lambda x: gd.interpolate(x, size=3, mode="area"),
                      lambda x: F.interpolate(x, size=3, mode="area"), (2, 2, 7)),
    "area[up-down]": (lambda x: gd.interpolate(x, scale_factor=(1.5, 0.5), mode="area"),
                      lambda x: F.interpolate(x, scale_factor=(1.5, 0.5), mode="area"),
                      (1, 2, 5, 7)),
    "bilinear[recompute]": (
        lambda x: gd.interpolate(x, scale_factor=1.7, mode="bilinear",
                                 recompute_scale_factor=True),
        lambda x: F.interpolate(x, scale_factor=1.7, mode="bilinear",
                                recompute_scale_factor=True), (1, 2, 5, 6)),
    "bilinear[x2]": (lambda x: gd.interpolate(x, scale_factor=2, mode="bilinear"),
                     lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"), (2, 2, 3, 4)),
    "bilinear[corners-size]": (
        lambda x: gd.interpolate(x, size=(7, 3), mode="bilinear", align_corners=True),
        lambda x: F.interpolate(x, size=(7, 3), mode="bilinear", align_corners=True),
        (1, 2, 4, 5)),
    "bilinear[down]": (lambda x: gd.interpolate(x, size=(3, 2), mode="bilinear"),
                       lambda x: F.interpolate(x, size=(3, 2), mode="bilinear"), (1, 2, 7, 5)),
    "bilinear[scales-0.7-1.6]": (
        lambda x: gd.interpolate(x, scale_factor=(0.7, 1.6), mode="bilinear"),
        lambda x: F.interpolate(x, scale_factor=(0.7, 1.6), mode="bilinear"), (1, 2, 6, 4)),
    "linear[3d-corners]": (
        lambda x: gd.interpolate(x, size=9, mode="linear", align_corners=True),
        lambda x: F.interpolate(x, size=9, mode="linear", align_corners=True), (2, 2, 4)),
    "adaptive_avg[3x4]": (lambda x: gd.adaptive_avg_pool2d(x, (3, 4)),
                          lambda x: F.adaptive_avg_pool2d(x, (3, 4)), (2, 2, 7, 9)),
    "adaptive_avg[global]": (lambda x: gd.adaptive_avg_pool2d(x, 1),
                             lambda x: F.adaptive_avg_pool2d(x, 1), (2, 3, 5, 4)),
    "adaptive_avg[even-None]": (lambda x: gd.adaptive_avg_pool2d(x, (2, None)),
                                lambda x: F.adaptive_avg_pool2d(x, (2, None)), (1, 2, 6, 5)),
    "adaptive_avg[larger-chw]": (lambda x: gd.adaptive_avg_pool2d(x, (5, 3)),
                                 lambda x: F.adaptive_avg_pool2d(x, (5, 3)), (2, 3, 4)),
    "adaptive_max[3x4]": (lambda x: gd.adaptive_max_pool2d(x, (3, 4)),
                          lambda x: F.adaptive_max_pool2d(x, (3, 4)), (2, 2, 7, 9)),
    "adaptive_max[even]": (lambda x: gd.adaptive_max_pool2d(x, (2, 3)),
                           lambda x: F.adaptive_max_pool2d(x, (2, 3)), (1, 2, 6, 9)),
    "adaptive_max[global-chw]": (lambda x: gd.adaptive_max_pool2d(x, 1),
                                 lambda x: F.adaptive_max_pool2d(x, 1), (3, 4, 5)),
    "unfold[overlap]": (lambda x: gd.unfold(x, 1, 3, 2), lambda x: x.unfold(1, 3, 2), (3, 7, 2)),
    "unfold[last-step1]": (lambda x: gd.unfold(x, -1, 2, 1), lambda x: x.unfold(-1, 2, 1),
                           (2, 5)),
    "unfold[gaps]": (lambda x: gd.unfold(x, 0, 2, 3), lambda x: x.unfold(0, 2, 3), (8, 3)),
}

# the cases as tests/torch_compare.py takes them
COMPARED = {name: (f, torch_f, [shape], {}) for name, (f, torch_f, shape) in CASES.items()}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("runner", runner_params())
def test_values_and_two_derivatives_equal_pytorchs(runner, dtype):
    found = problems(COMPARED, runner, dtype)
    assert not found, "\n".join(found)


@pytest.mark.parametrize("how, gathers", [
    ({"scale_factor": 2}, False), ({"scale_factor": 3}, True), ({"size": (3, 6)}, True),
    ({"scale_factor": 2, "align_corners": True}, True)])
def test_integer_upscales_with_periodic_taps_are_slices_not_gathers(how, gathers):
    """Half-pixel by 2: the taps repeat every 2 outputs (exactly, in float32), so the phases
    are shifted slices; by 3 (1/3 is inexact) and with align_corners they do not."""
    xv = data(0, (1, 2, 1, 4), "float32")
    y = gd.interpolate(gd.input("x", xv.shape), mode="bilinear", **how)
    ops = {n.op.name for n in gd.topological_order([y])}
    assert ("take" in ops) == gathers
    want = F.interpolate(torch.from_numpy(xv), mode="bilinear", **how).numpy()
    np.testing.assert_allclose(gd.evaluate(y, {"x": xv}), want, rtol=1e-6, atol=1e-7)


def _sweep():
    """Sizes and scale factors whose source coordinates land on every kind of case: exact
    integers, halves, below 0, past the last index, outputs of twice the size by 2.1."""
    rng = np.random.default_rng(0)
    for _ in range(240):
        h, w = (int(v) for v in rng.integers(1, 9, 2))
        mode = str(rng.choice(["nearest", "nearest-exact", "bilinear", "area"]))
        corners = bool(rng.integers(2)) if mode == "bilinear" else None
        if rng.integers(2):
            yield (h, w), mode, corners, {"size": tuple(int(v) for v in rng.integers(1, 13, 2))}
        else:
            factors = tuple(float(v) for v in np.round(rng.uniform(0.3, 3.5, 2), 2))
            if h * factors[0] >= 1 and w * factors[1] >= 1:
                yield (h, w), mode, corners, {"scale_factor": factors}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_coordinates_follow_pytorchs_over_many_sizes(dtype):
    problems = []
    for k, (hw, mode, corners, how) in enumerate(_sweep()):
        xv = data(k, (1, 2, *hw), dtype)
        y = gd.interpolate(gd.input("x", xv.shape, dtype), mode=mode, align_corners=corners,
                           **how)
        got = gd.evaluate(y, {"x": xv})
        want = F.interpolate(torch.from_numpy(xv), mode=mode, align_corners=corners,
                             **how).numpy()
        if got.shape != want.shape or not np.allclose(got, want, rtol=1e-6, atol=1e-6):
            problems.append(f"{hw} {mode} align_corners={corners} {how}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("runner", runner_params())
@pytest.mark.parametrize("shape, size", [((2, 3, 7, 9), (3, 4)), ((1, 2, 6, 9), (2, 3)),
                                         ((2, 5, 4), (7, 1)), ((1, 1, 5, 5), 1)])
def test_adaptive_max_indices_equal_pytorchs(runner, shape, size):
    xv = data(3, shape, "float32")
    y, i = gd.adaptive_max_pool2d(gd.input("x", shape), size, return_indices=True)
    got_y, got_i = run_on(runner, [y, i], {"x": xv})
    want_y, want_i = F.adaptive_max_pool2d(torch.from_numpy(xv), size, return_indices=True)
    np.testing.assert_array_equal(got_y, want_y.numpy())
    assert got_i.dtype == np.int64
    np.testing.assert_array_equal(got_i, want_i.numpy())


@pytest.mark.parametrize("size", [(3, 4), (2, 3)])  # uneven bins; avg/max pool windows
def test_adaptive_max_routes_ties_to_the_first_maximum_as_pytorch(size):
    xv = np.random.default_rng(0).integers(0, 2, (1, 2, 6, 9)).astype(np.float64)
    x = gd.input("x", xv.shape, "float64")
    y = gd.adaptive_max_pool2d(x, size)
    w = data(4, y.shape, "float64")
    (gx,) = gd.evaluate(gd.grad(gd.sum(y * w), [x]), {"x": xv})
    t = torch.tensor(xv, requires_grad=True)
    (F.adaptive_max_pool2d(t, size) * torch.from_numpy(w)).sum().backward()
    np.testing.assert_array_equal(gx, t.grad.numpy())
    _, index = gd.adaptive_max_pool2d(x, size, return_indices=True)
    np.testing.assert_array_equal(gd.evaluate(index, {"x": xv}),
                                  F.adaptive_max_pool2d(t, size, return_indices=True)[1])


@pytest.mark.parametrize("name", list(CASES))
def test_gradients_match_finite_differences(name):
    f, _, shape = CASES[name]
    x = gd.input("x", shape, "float64")
    y = f(x)
    loss = gd.sum(y * y * gd.constant(data(1, y.shape, "float64")))
    feeds = {"x": data(5, shape, "float64")}
    (numeric,) = graph_numeric_grads(loss, feeds, ["x"])
    np.testing.assert_allclose(gd.evaluate(gd.grad(loss, x), feeds), numeric, atol=1e-6)


def test_an_unknown_batch_is_fine_unknown_spatial_sizes_are_refused():
    x = gd.input("x", (None, 2, 3, 4))
    xv = data(0, (5, 2, 3, 4), "float32")
    got = gd.compile([gd.interpolate(x, scale_factor=2, mode="bilinear"),
                      gd.adaptive_avg_pool2d(x, (2, 3)), gd.unfold(x, 3, 2, 1)])(x=xv)
    t = torch.from_numpy(xv)
    for a, b in zip(got, [F.interpolate(t, scale_factor=2, mode="bilinear"),
                          F.adaptive_avg_pool2d(t, (2, 3)), t.unfold(3, 2, 1)]):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-6, atol=1e-6)
    z = gd.input("z", (1, 2, None, 4))
    with pytest.raises(gd.GraphError, match=r"axis 2 of 'z'.*known at declaration"):
        gd.interpolate(z, size=(3, 3))
    np.testing.assert_allclose(  # a global pool needs no size
        gd.evaluate(gd.adaptive_max_pool2d(z, 1), {"z": xv[:1]}), xv[:1].max((2, 3), keepdims=True))


@pytest.mark.parametrize("build, message", [
    (lambda x: gd.interpolate(x, scale_factor=2, mode="bicubic"), "mode must be one of"),
    (lambda x: gd.interpolate(x, scale_factor=2, mode="area", align_corners=False),
     "linear modes only"),
    (lambda x: gd.interpolate(x, scale_factor=2, mode="linear"), "needs input of"),
    (lambda x: gd.interpolate(x, scale_factor=2, align_corners=True), "linear modes only"),
    (lambda x: gd.interpolate(x, size=3, scale_factor=2), "exactly one of"),
    (lambda x: gd.interpolate(x), "exactly one of"),
    (lambda x: gd.interpolate(x, size=(2, 2, 2)), "size must be one number or 2"),
    (lambda x: gd.interpolate(x, scale_factor=0.1), "must be positive"),
    (lambda x: gd.interpolate(x, scale_factor=-1.0), "scale_factor must be positive"),
    (lambda x: gd.interpolate(gd.cast(x, "int64"), size=2), "floating-point"),
    (lambda x: gd.adaptive_avg_pool2d(x, (0, 2)), "output_size must be"),
    (lambda x: gd.adaptive_max_pool2d(x, (1, 2, 3)), "output_size must be"),
    (lambda x: gd.adaptive_avg_pool2d(gd.reshape(x, (-1,)), 2), r"\(N, C, H, W\)"),
    (lambda x: gd.unfold(x, 2, 5, 1), "size 5 exceeds the 4 entries of axis 2"),
    (lambda x: gd.unfold(x, 0, 1, 0), "step must be an int of at least 1"),
    (lambda x: gd.unfold(x, 4, 1, 1), "axis"),
])
def test_refusals_name_the_input(build, message):
    x = gd.input("img", (1, 2, 4, 5))
    with pytest.raises(gd.GraphError, match=message) as raised:
        build(x)
    assert "img" in str(raised.value) or "cast" in str(raised.value)


@pytest.mark.parametrize("size", [0, 1])
def test_unfold_of_a_scalar_is_its_one_entry_or_none(size):
    y = gd.unfold(gd.input("s", (), "float64"), 0, size, 1)
    np.testing.assert_array_equal(gd.evaluate(y, {"s": np.float64(3)}),
                                  torch.tensor(3.0).unfold(0, size, 1).numpy())


@pytest.mark.parametrize("name", ["nearest[scales-1.7-0.6]", "bilinear[corners-size]",
                                  "adaptive_avg[3x4]", "adaptive_max[3x4]", "adaptive_max[even]",
                                  "adaptive_avg[global]", "unfold[overlap]"])
def test_onnx_export_with_gradients_runs_in_onnxruntime(name):
    pytest.importorskip("onnx")
    assert_exported_agrees(COMPARED[name])


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        y = F.interpolate(self.conv(x), scale_factor=2, mode="bilinear")
        corners = F.interpolate(x, size=(7, 4), mode="bilinear", align_corners=True)
        return (F.adaptive_avg_pool2d(y, (1, 1)).flatten(1), F.adaptive_max_pool2d(y, (5, 4)),
                F.interpolate(x, size=(7, 9)), corners)


def test_a_network_pytorch_exports_imports_and_matches():
    onnx = pytest.importorskip("onnx")
    net, x = _Net().eval(), torch.randn(2, 3, 5, 6)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter: onnxscript is not needed
        torch.onnx.export(net, (x,), buf, dynamo=False, opset_version=17)
    ops = {n.op_type for n in onnx.load_from_string(buf.getvalue()).graph.node}
    assert {"Resize", "GlobalAveragePool"} <= ops
    model = gd.onnx.load(buf.getvalue())
    got = gd.evaluate(model.outputs, model.feeds(**{model.inputs[0].name: x.numpy()}))
    for a, b in zip(got, net(x)):
        np.testing.assert_allclose(a, b.detach().numpy(), rtol=1e-5, atol=1e-6)
