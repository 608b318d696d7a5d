"""conv1d, conv3d and the transposed convolutions (1-D, 2-D, 3-D) against PyTorch: values,
gradients of input, weight and bias, second derivatives, on every way graphdl runs a graph;
errors at declaration; ONNX import and export."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
from graphdl.errors import GraphError
from tests.helpers import mismatches, run_cases, run_on, runner_params

torch = pytest.importorskip("torch")
F = torch.nn.functional

# (input shape, weight shape, keyword arguments): PyTorch's layouts, (C_in, C_out/groups, k...)
# for the transposed convolutions
TRANSPOSE2D = [
    ((2, 4, 5, 6), (4, 3, 3, 2), {}),
    ((2, 4, 5, 6), (4, 3, 3, 2), {"stride": 2, "padding": 1, "output_padding": 1}),
    ((2, 4, 5, 4), (4, 1, 2, 3), {"stride": (2, 3), "padding": (0, 2), "output_padding": (1, 2),
                                  "groups": 2}),
    ((1, 2, 4, 5), (2, 2, 3, 2), {"output_padding": (2, 1), "dilation": (3, 2)}),  # op >= stride
    ((2, 4, 5, 6), (4, 2, 3, 3), {"stride": 2, "padding": 3, "output_padding": 1, "dilation": 2,
                                  "groups": 4}),
    ((3, 2, 1, 1), (2, 5, 4, 4), {"stride": 3}),
]
TRANSPOSE1D = [
    ((2, 4, 7), (4, 3, 3), {}),
    ((2, 4, 7), (4, 2, 4), {"stride": 3, "padding": 2, "output_padding": 2, "groups": 2}),
    ((1, 3, 5), (3, 2, 3), {"stride": 1, "padding": 1, "output_padding": 2, "dilation": 3}),
]
CONV1D = [
    ((2, 4, 9), (6, 4, 3), {}),
    ((2, 4, 9), (6, 2, 3), {"stride": 2, "padding": 2, "dilation": 2, "groups": 2}),
    ((2, 4, 9), (3, 4, 4), {"padding": "same", "dilation": 2}),
    ((2, 4, 9), (3, 4, 4), {"padding": "valid"}),
    ((1, 3, 8), (2, 3, 3), {"padding": (1,), "stride": (3,)}),
]
CONV3D = [
    ((2, 4, 5, 6, 7), (6, 4, 3, 2, 3), {}),
    ((2, 4, 6, 7, 5), (6, 2, 2, 3, 3), {"stride": (2, 1, 2), "padding": (1, 2, 0),
                                        "dilation": (2, 1, 1), "groups": 2}),
    ((1, 3, 5, 4, 6), (2, 3, 3, 3, 2), {"padding": "same", "dilation": 2}),
    ((1, 2, 4, 5, 3), (3, 2, 4, 1, 2), {"stride": 3, "padding": 1}),  # out depth 1
]
TRANSPOSE3D = [
    ((2, 4, 3, 4, 5), (4, 3, 2, 3, 2), {}),
    ((2, 4, 3, 4, 3), (4, 2, 3, 2, 3), {"stride": (2, 1, 2), "padding": (1, 0, 1),
                                        "output_padding": (1, 0, 1), "groups": 2}),
    ((1, 2, 2, 3, 3), (2, 2, 3, 2, 2), {"stride": 3, "padding": 2, "dilation": (2, 1, 1),
                                        "output_padding": (2, 0, 1)}),  # taps off the output
    ((1, 3, 4, 2, 3), (3, 2, 2, 2, 2), {"stride": (1, 2, 1), "padding": (1, 1, 0),
                                        "output_padding": (0, 1, 0), "dilation": (3, 1, 2)}),
]
# strides that divide the kernel, dilation 1: the NumPy backend's kernel by the stride's phases
PHASED = [
    ("conv_transpose2d", (2, 4, 5, 6), (4, 3, 4, 4), {"stride": 2, "padding": 1}),  # DCGAN's
    ("conv_transpose2d", (3, 4, 5, 6), (4, 3, 2, 2), {"stride": 2}),  # U-Net's
    ("conv_transpose2d", (2, 6, 3, 4), (6, 2, 6, 3), {"stride": (3, 1), "padding": (4, 1),
                                                      "output_padding": (2, 0), "groups": 3}),
    ("conv_transpose1d", (2, 4, 7), (4, 2, 4), {"stride": 2, "padding": 3, "output_padding": 1,
                                                "groups": 2}),
]
FUNCTIONS = {"conv_transpose2d": (gd.conv_transpose2d, F.conv_transpose2d, TRANSPOSE2D),
             "conv_transpose1d": (gd.conv_transpose1d, F.conv_transpose1d, TRANSPOSE1D),
             "conv1d": (gd.conv1d, F.conv1d, CONV1D),
             "conv3d": (gd.conv3d, F.conv3d, CONV3D),
             "conv_transpose3d": (gd.conv_transpose3d, F.conv_transpose3d, TRANSPOSE3D)}
CASES = [(name, *case) for name, (_, _, cases) in FUNCTIONS.items() for case in cases]


def _bias_size(name, w_shape, kwargs):
    return w_shape[1] * kwargs.get("groups", 1) if "transpose" in name else w_shape[0]


def _case(name, x_shape, w_shape, kwargs, dtype, seed=0, prefix=""):
    """Outputs y, dL/dx, dL/dw, dL/db for L = Σ y·probe, their feeds and PyTorch's values; the
    inputs are named x, w, b after `prefix`."""
    ours, theirs, _ = FUNCTIONS[name]
    rng = np.random.default_rng(seed)
    b_shape = (_bias_size(name, w_shape, kwargs),)
    x0, w0, b0 = (rng.standard_normal(s).astype(dtype) for s in (x_shape, w_shape, b_shape))
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x0, w0, b0))
    yt = theirs(xt, wt, bt, **kwargs)
    probe = rng.standard_normal(tuple(yt.shape)).astype(dtype)
    grads = torch.autograd.grad((yt * torch.tensor(probe)).sum(), [xt, wt, bt])
    x, w, b = (gd.input(prefix + n, s, dtype) for n, s in zip("xwb", (x_shape, w_shape, b_shape)))
    y = ours(x, w, b, **kwargs)
    outputs = [y, *gd.grad(gd.sum(y * probe), [x, w, b])]
    want = [yt.detach().numpy(), *(g.numpy() for g in grads)]
    return outputs, {prefix + "x": x0, prefix + "w": w0, prefix + "b": b0}, want


@pytest.mark.parametrize("runner", runner_params())
def test_values_and_gradients_match_pytorch(runner):
    """Every case in one graph (one kernel build, not one per case)."""
    cases = {f"{name} x{x_shape} w{w_shape} {kwargs}":
             _case(name, x_shape, w_shape, kwargs, "float64", prefix=f"c{k}_")
             for k, (name, x_shape, w_shape, kwargs) in enumerate(CASES + PHASED)}
    problems = []
    for label, (got, want) in run_cases(runner, cases).items():
        for what, a, b in zip(("y", "dL/dx", "dL/dw", "dL/db"), got, want):
            problems += mismatches(label, [what], [a], [b], "float64", 1e-10,
                                   1e-10 * np.abs(b).max())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("runner", runner_params())
@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_float32(runner, name):
    outputs, feeds, want = _case(name, *FUNCTIONS[name][2][1], "float32")
    for a, b in zip(run_on(runner, outputs, feeds), want):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())


@pytest.mark.parametrize("name,x_shape,w_shape,kwargs",
                         [CASES[1], CASES[3], CASES[4], CASES[7], CASES[10], CASES[15],
                          CASES[19]])
def test_double_backward_matches_pytorch(name, x_shape, w_shape, kwargs):
    """d/dx and d/dw of Σ (dL/dx)² + Σ (dL/dw)², L = Σ y²: second derivatives through the
    gradient ops that the gradients are."""
    ours, theirs, _ = FUNCTIONS[name]
    rng = np.random.default_rng(3)
    x0, w0 = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    xt, wt = (torch.tensor(a, requires_grad=True) for a in (x0, w0))
    yt = theirs(xt, wt, **kwargs)
    gx, gw = torch.autograd.grad((yt * yt).sum(), [xt, wt], create_graph=True)
    want = torch.autograd.grad((gx * gx).sum() + (gw * gw).sum(), [xt, wt])
    x, w = gd.input("x", x_shape, "float64"), gd.input("w", w_shape, "float64")
    y = ours(x, w, **kwargs)
    dx, dw = gd.grad(gd.sum(y * y), [x, w])
    got = gd.evaluate(gd.grad(gd.sum(dx * dx) + gd.sum(dw * dw), [x, w]), {"x": x0, "w": w0})
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("kwargs,shape", [
    ({"stride": 2, "output_padding": 1}, (None, 3, 12, 13)),
    ({"output_padding": (2, 1), "dilation": (3, 2)}, (None, 3, 13, 9)),  # a zero border
])
def test_unknown_batch_is_bound_at_the_call(kwargs, shape):
    x, w = gd.input("x", (None, 4, 5, 6), "float64"), gd.input("w", (4, 3, 3, 2), "float64")
    y = gd.conv_transpose2d(x, w, **kwargs)
    assert y.shape == shape
    rng = np.random.default_rng(0)
    x0, w0 = rng.standard_normal((3, 4, 5, 6)), rng.standard_normal((4, 3, 3, 2))
    want = F.conv_transpose2d(torch.tensor(x0), torch.tensor(w0), **kwargs).numpy()
    for runner in ("evaluate", "numpy"):
        (got,) = run_on(runner, [y], {"x": x0, "w": w0})
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_conv3d_takes_six_sides_of_padding_and_an_unknown_batch():
    """Six sides (front, back, top, bottom, left, right), as ONNX's asymmetric pads import:
    the convolution of the input zero-padded so (PyTorch's F.pad takes the last axis first)."""
    rng = np.random.default_rng(1)
    x0, w0 = rng.standard_normal((3, 2, 4, 5, 3)), rng.standard_normal((3, 2, 2, 3, 2))
    x, w = gd.input("x", (None, 2, 4, 5, 3), "float64"), gd.input("w", w0.shape, "float64")
    y = gd.conv3d(x, w, padding=(2, 0, 1, 2, 0, 1), stride=(2, 1, 1))
    padded = F.pad(torch.tensor(x0), (0, 1, 1, 2, 2, 0))
    want = F.conv3d(padded, torch.tensor(w0), stride=(2, 1, 1)).numpy()
    assert y.shape == (None, *want.shape[1:])
    for runner in ("evaluate", "numpy"):
        (got,) = run_on(runner, [y], {"x": x0, "w": w0})
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("padding,output_padding,stride", [
    ((2, 0, 1, 2, 0, 1), (1, 0, 0), (2, 1, 1)),
    ((0, 2, 0, 0, 1, 0), (0, 1, 0), (1, 2, 1)),
    ((4, 0, 0, 0, 0, 0), (1, 0, 0), (2, 1, 1)),  # only output padding left: no tap reaches it
])
def test_conv_transpose3d_takes_six_sides_of_padding_and_an_unknown_batch(
        padding, output_padding, stride):
    """Six sides (front, back, top, bottom, left, right), as ONNX's asymmetric pads import: the
    full scatter (PyTorch's, unpadded), zeros added at the back, bottom and right for the output
    padding, then cropped by the sides."""
    rng = np.random.default_rng(2)
    x0, w0 = rng.standard_normal((3, 2, 2, 3, 2)), rng.standard_normal((2, 3, 2, 3, 2))
    x, w = gd.input("x", (None, 2, 2, 3, 2), "float64"), gd.input("w", w0.shape, "float64")
    y = gd.conv_transpose3d(x, w, stride=stride, padding=padding, output_padding=output_padding)
    full = F.conv_transpose3d(torch.tensor(x0), torch.tensor(w0), stride=stride)
    full = F.pad(full, (0, output_padding[2], 0, output_padding[1], 0, output_padding[0]))
    front, back, top, bottom, left, right = padding
    want = full[:, :, front:full.shape[2] - back, top:full.shape[3] - bottom,
                left:full.shape[4] - right].numpy()
    assert y.shape == (None, *want.shape[1:])
    feeds = {"x": x0, "w": w0} if want.any() else {"x": x0}  # zeros: y reads only x's batch
    for runner in ("evaluate", "numpy"):
        (got,) = run_on(runner, [y], feeds)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_conv_transpose2d_is_conv2d_input_gradient():
    """No op of its own: the transposed convolution is the node conv2d's gradient makes."""
    x, w = gd.input("x", (1, 2, 4, 4)), gd.input("w", (2, 3, 3, 3))
    assert gd.conv_transpose2d(x, w, stride=2).op.name == "conv2d_input_grad"


@pytest.mark.parametrize("call,message", [
    (lambda: gd.conv_transpose2d(gd.input("img", (1, 3, 4, 4)), gd.input("k", (4, 2, 3, 3))),
     r"'img' .*has 3 channels but weight 'k' .* expects 4"),
    (lambda: gd.conv_transpose2d(gd.input("img", (1, 4, 4, 4)), gd.input("k", (4, 2, 3, 3)),
                                 groups=3),
     r"groups=3 does not divide the 4 input channels of weight 'k'"),
    (lambda: gd.conv_transpose2d(gd.input("img", (1, 4, 4, 4)), gd.input("k", (4, 2, 3, 3)),
                                 stride=2, output_padding=2),
     r"output_padding 2 must be smaller than the stride 2 or the dilation 1"),
    (lambda: gd.conv_transpose2d(gd.input("img", (1, 4, 1, 4)), gd.input("k", (4, 2, 1, 1)),
                                 padding=(1, 0)),
     r"output would have -1 rows along axis 2"),
    (lambda: gd.conv_transpose2d(gd.input("img", (1, 4, 4)), gd.input("k", (4, 2, 3, 3))),
     r"'img' must be 4-D"),
    (lambda: gd.conv_transpose2d(gd.input("img", (1, 4, 4, 4)), gd.input("k", (4, 2, 3, 3)),
                                 padding="same"),
     r"padding must be an int, a pair or four sides"),
    (lambda: gd.conv_transpose2d(gd.input("img", (1, 4, 4, 4)), gd.input("k", (4, 2, 3, 3)),
                                 gd.input("b", (4,))),
     r"bias 'b' has shape \(4,\), expected \(2,\)"),
    (lambda: gd.conv_transpose2d(gd.input("img", (1, 4, None, 4)), gd.input("k", (4, 2, 3, 3))),
     r"'img' needs known spatial sizes"),
    (lambda: gd.conv_transpose1d(gd.input("seq", (1, 4, 5)), gd.input("k", (3, 2, 3))),
     r"conv_transpose1d of 'seq': 'seq' .*has 4 channels but weight 'k'"),
    (lambda: gd.conv_transpose1d(gd.input("seq", (1, 4, 5)), gd.input("k", (4, 2, 3)),
                                 output_padding=1),
     r"output_padding 1 must be smaller than the stride 1 or the dilation 1"),
    (lambda: gd.conv_transpose1d(gd.input("seq", (1, 4, 5, 1)), gd.input("k", (4, 2, 3))),
     r"'seq' must be 3-D"),
    (lambda: gd.conv1d(gd.input("seq", (1, 4, 5)), gd.input("k", (2, 3, 3))),
     r"conv1d of 'seq': 'seq' .*has 4 channels but weight 'k'"),
    (lambda: gd.conv1d(gd.input("seq", (1, 4, 2)), gd.input("k", (2, 4, 3))),
     r"conv1d of 'seq': the kernel \(3 wide.*larger than 'seq''s axis 2 of size 2"),
    (lambda: gd.conv1d(gd.input("seq", (1, 4, 5)), gd.input("k", (2, 4, 3)), stride=2,
                       padding="same"),
     r"padding='same' needs stride 1"),
    (lambda: gd.conv1d(gd.input("seq", (1, 4, 5)), gd.input("k", (2, 4, 3)), stride=(1, 2)),
     r"stride must be a positive int or a 1-tuple"),
    (lambda: gd.conv1d(gd.input("seq", (1, 4, 5), "int32"),
                       gd.input("k", (2, 4, 3), "int32")),
     r"expects floating-point input"),
    (lambda: gd.conv3d(gd.input("vol", (1, 4, 5, 5)), gd.input("k", (2, 4, 3, 3, 3))),
     r"conv3d of 'vol': 'vol' must be 5-D \(N, C, D, H, W\)"),
    (lambda: gd.conv3d(gd.input("vol", (1, 4, 5, 5, 5)), gd.input("k", (2, 3, 3, 3, 3))),
     r"conv3d of 'vol': 'vol' .*has 4 channels but weight 'k'"),
    (lambda: gd.conv3d(gd.input("vol", (1, 4, 2, 5, 5)), gd.input("k", (2, 4, 3, 3, 3))),
     r"conv3d of 'vol': the kernel \(3 wide.*larger than 'vol''s axis 2 of size 2"),
    (lambda: gd.conv3d(gd.input("vol", (1, 4, 5, 5, 5)), gd.input("k", (2, 4, 3, 3, 3)),
                       stride=(1, 2)),
     r"stride must be a positive int or a triple of them, got \(1, 2\)"),
    (lambda: gd.conv3d(gd.input("vol", (1, 4, 5, 5, 5)), gd.input("k", (2, 4, 3, 3, 3)),
                       padding=(1, 1, 1, 1)),
     r"padding must be a non-negative int or a triple of them"),
    (lambda: gd.conv3d(gd.input("vol", (1, 4, None, 5, 5)), gd.input("k", (2, 4, 1, 3, 3))),
     r"conv3d of 'vol': needs known channels, depth, height and width"),
    (lambda: gd.conv3d(gd.input("vol", (1, 4, 5, 5, 5), "int32"),
                       gd.input("k", (2, 4, 3, 3, 3), "int32")),
     r"conv3d of 'vol' expects floating-point input, got 'vol'"),
    (lambda: gd.conv3d(gd.input("vol", (1, 4, 5, 5, 5)), gd.input("k", (2, 4, 3, 3, 3)),
                       gd.input("b", (4,))),
     r"bias 'b' has shape \(4,\), expected \(2,\)"),
    (lambda: gd.conv_transpose3d(gd.input("vol", (1, 4, 3, 3)), gd.input("k", (4, 2, 2, 2, 2))),
     r"conv_transpose3d of 'vol': 'vol' must be 5-D \(N, C_in, D, H, W\)"),
    (lambda: gd.conv_transpose3d(gd.input("vol", (1, 3, 3, 3, 3)),
                                 gd.input("k", (4, 2, 2, 2, 2))),
     r"conv_transpose3d of 'vol': 'vol' .*has 3 channels but weight 'k' .* expects 4"),
    (lambda: gd.conv_transpose3d(gd.input("vol", (1, 4, 3, 3, 3)),
                                 gd.input("k", (4, 2, 2, 2, 2)), stride=(2, 1, 1),
                                 output_padding=(2, 0, 0)),
     r"output_padding 2 must be smaller than the stride 2 or the dilation 1"),
    (lambda: gd.conv_transpose3d(gd.input("vol", (1, 4, 1, 3, 3)),
                                 gd.input("k", (4, 2, 1, 2, 2)), padding=(1, 0, 0)),
     r"output would have -1 planes along axis 2"),
    (lambda: gd.conv_transpose3d(gd.input("vol", (1, 4, 3, 3, 3)),
                                 gd.input("k", (4, 2, 2, 2, 2)), padding="same"),
     r"padding must be an int, a triple or six sides"),
    (lambda: gd.conv_transpose3d(gd.input("vol", (1, 4, 3, None, 3)),
                                 gd.input("k", (4, 2, 2, 2, 2))),
     r"'vol' needs known spatial sizes"),
    (lambda: gd.conv_transpose3d(gd.input("vol", (1, 4, 3, 3, 3), "int32"),
                                 gd.input("k", (4, 2, 2, 2, 2), "int32")),
     r"conv_transpose3d of 'vol' expects floating-point input"),
])
def test_bad_declarations_name_the_variable(call, message):
    with pytest.raises(GraphError, match=message):
        call()


# ---------------------------------------------------------------- ONNX
def _conv_model(op, x_shape, w_shape, bias, **attrs):
    from onnx import TensorProto, helper

    inputs = ["x", "w"] + (["b"] if bias else [])
    node = helper.make_node(op, inputs, ["y"], **attrs)
    shapes = [x_shape, w_shape] + ([(_onnx_bias_size(op, w_shape, attrs),)] if bias else [])
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
                      for n, s in zip(inputs, shapes)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _onnx_bias_size(op, w_shape, attrs):
    return w_shape[1] * attrs.get("group", 1) if op == "ConvTranspose" else w_shape[0]


@pytest.mark.parametrize("op,x_shape,w_shape,attrs", [
    ("ConvTranspose", (1, 2, 3, 4), (2, 3, 3, 3), {"strides": [2, 1], "pads": [1, 0, 0, 2],
                                                   "output_padding": [1, 0]}),
    ("ConvTranspose", (1, 4, 3, 3), (4, 1, 2, 3), {"group": 2, "dilations": [2, 1],
                                                   "strides": [3, 2]}),
    ("ConvTranspose", (1, 2, 3, 3), (2, 2, 3, 3), {"strides": [3, 2], "output_shape": [10, 8]}),
    ("ConvTranspose", (1, 2, 3, 3), (2, 2, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    ("ConvTranspose", (1, 2, 5), (2, 3, 3), {"strides": [2], "pads": [1, 2],
                                             "output_padding": [1]}),
    ("ConvTranspose", (1, 2, 3, 2, 3), (2, 3, 2, 3, 2), {"strides": [2, 1, 2],
                                                         "pads": [1, 0, 0, 0, 2, 1],
                                                         "output_padding": [1, 0, 0]}),
    ("ConvTranspose", (1, 4, 2, 3, 2), (4, 1, 2, 2, 2), {"group": 2, "dilations": [2, 1, 1],
                                                         "strides": [3, 2, 1],
                                                         "output_shape": [7, 5, 3]}),
    ("Conv", (2, 4, 5, 6, 4), (6, 2, 3, 2, 3), {"group": 2, "strides": [2, 1, 1],
                                                "dilations": [1, 2, 1],
                                                "pads": [2, 0, 1, 1, 1, 0]}),
    ("Conv", (1, 2, 4, 5, 5), (3, 2, 2, 3, 3), {"strides": [1, 2, 2], "auto_pad": "SAME_UPPER"}),
])
@pytest.mark.parametrize("bias", [False, True])
def test_onnx_import_matches_onnxruntime(op, x_shape, w_shape, attrs, bias):
    ort = pytest.importorskip("onnxruntime")
    model = _conv_model(op, x_shape, w_shape, bias, **attrs)
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal(x_shape).astype("float32"),
             "w": rng.standard_normal(w_shape).astype("float32")}
    if bias:
        feeds["b"] = rng.standard_normal(_onnx_bias_size(op, w_shape, attrs)).astype("float32")
    (want,) = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    imported = gd.onnx.load(model)
    got = gd.compile(imported.outputs)(imported.feeds(**feeds))[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,x_shape,w_shape,kwargs",
                         [CASES[2], CASES[3], CASES[6], CASES[15], CASES[19]])
def test_onnx_export_runs_in_onnxruntime(name, x_shape, w_shape, kwargs, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    outputs, feeds, want = _case(name, x_shape, w_shape, kwargs, "float32")
    path = tmp_path / "conv_transpose.onnx"
    gd.onnx.save(outputs, str(path))
    session = ort.InferenceSession(str(path))
    names = [i.name for i in session.get_inputs()]
    got = session.run(None, {n: feeds[n] for n in names})
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())
