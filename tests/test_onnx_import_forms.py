"""Forms of ONNX operators that ONNX's node tests do not reach (LRN of an even size, opset 18's
per-group GroupNormalization scale, Hardmax before opset 13, Lp pooling of p = 3, PRelu's slope
broadcast along a non-channel axis, ...): imported, their values against onnxruntime, and the
gradients of the imported graph (declared in float64) against finite differences."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import helper

import graphdl as gd
from tests.helpers import graph_numeric_grads, onnxruntime_run

RNG = np.random.default_rng(0)


def _floats(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


# name -> (operator, attributes, opset, inputs (name -> array), number of outputs)
CASES = {
    "lrn_odd": ("LRN", {"size": 3, "alpha": 0.02, "beta": 0.6, "bias": 1.5}, 17,
                {"x": _floats(2, 5, 3, 4)}, 1),
    "group_norm_per_group_scale": ("GroupNormalization", {"num_groups": 2, "epsilon": 1e-3}, 18,
                                   {"x": _floats(2, 6, 3, 2), "scale": _floats(2),
                                    "bias": _floats(2)}, 1),
    "hardmax_flattened": ("Hardmax", {"axis": 1}, 11, {"x": _floats(2, 3, 4)}, 1),
    "lp_pool_p3": ("LpPool", {"kernel_shape": [2, 3], "p": 3, "strides": [1, 2],
                              "pads": [1, 0, 1, 1]}, 17, {"x": _floats(1, 2, 5, 6)}, 1),
    "lp_pool_1d_p1": ("LpPool", {"kernel_shape": [3], "p": 1, "strides": [2]}, 17,
                      {"x": _floats(2, 3, 7)}, 1),
    "split_attribute": ("Split", {"axis": 1, "split": [1, 3, 2]}, 11, {"x": _floats(2, 6, 3)}, 3),
    "shrink": ("Shrink", {"bias": 0.1, "lambd": 0.4}, 17, {"x": _floats(3, 5)}, 1),
    "prelu_slope_per_channel": ("PRelu", {}, 17, {"x": _floats(2, 3, 4, 2),
                                                  "slope": _floats(3, 1, 1)}, 1),
    "prelu_slope_along_width": ("PRelu", {}, 17, {"x": _floats(2, 3, 4, 2),
                                                  "slope": _floats(2)}, 1),
    "mean_variance_norm_axis_1": ("MeanVarianceNormalization", {"axes": [1]}, 17,
                                  {"x": _floats(3, 4, 2)}, 1),
    "hardsigmoid_pytorchs": ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}, 17,
                             {"x": _floats(4, 5) * 4}, 1),
    "selu_default": ("Selu", {}, 17, {"x": _floats(4, 5)}, 1),
    "selu_other_gamma": ("Selu", {"gamma": 2.0}, 17, {"x": _floats(4, 5)}, 1),
    "space_to_depth_dcr": ("SpaceToDepth", {"blocksize": 2}, 17, {"x": _floats(2, 3, 4, 6)}, 1),
    "thresholded_relu": ("ThresholdedRelu", {"alpha": 0.3}, 17, {"x": _floats(3, 4)}, 1),
    "gather_nd_batched_negative": ("GatherND", {"batch_dims": 1}, 17, {
        "x": _floats(2, 3, 4, 2), "i": np.array([[[0, -1], [2, 1]], [[-3, 0], [1, 3]]])}, 1),
    "scatter_nd_add_repeated": ("ScatterND", {"reduction": "add"}, 17, {
        "x": _floats(4, 3), "i": np.array([[1], [-1], [1]]), "u": _floats(3, 3)}, 1),
    "scatter_nd_elements": ("ScatterND", {}, 17, {
        "x": _floats(3, 4), "i": np.array([[[0, 1], [2, -1]]]), "u": _floats(1, 2)}, 1),
    # recurrent: sequences of their own lengths (a run-time input), both directions
    "lstm_lengths_peepholes_clip": ("LSTM", {"hidden_size": 3, "direction": "bidirectional",
                                             "clip": 1.5}, 17, {
        "x": _floats(4, 3, 2), "w": _floats(2, 12, 2), "r": _floats(2, 12, 3),
        "b": _floats(2, 24), "lengths": np.array([4, 2, 3], np.int32),
        "h0": _floats(2, 3, 3), "c0": _floats(2, 3, 3), "p": _floats(2, 9)}, 3),
    "lstm_input_forget": ("LSTM", {"hidden_size": 2, "input_forget": 1}, 17, {
        "x": _floats(3, 2, 2), "w": _floats(1, 8, 2), "r": _floats(1, 8, 2)}, 3),
    "gru_reverse_lengths_linear_before_reset": ("GRU", {
        "hidden_size": 3, "direction": "reverse", "linear_before_reset": 1}, 17, {
        "x": _floats(5, 2, 3), "w": _floats(1, 9, 3), "r": _floats(1, 9, 3), "b": _floats(1, 18),
        "lengths": np.array([3, 5], np.int32)}, 2),
    "gru_bidirectional_activations": ("GRU", {
        "hidden_size": 2, "direction": "bidirectional",
        "activations": ["HardSigmoid", "LeakyRelu", "Sigmoid", "ScaledTanh"],
        "activation_alpha": [0.3, 0.2, 0.9], "activation_beta": [0.4, 1.1]}, 17, {
        "x": _floats(3, 2, 2), "w": _floats(2, 6, 2), "r": _floats(2, 6, 2),
        "b": _floats(2, 12)}, 2),
    # attention: grouped queries with a past and a bool mask, causal (bottom-right aligned)
    "attention_gqa_past_causal": ("Attention", {"is_causal": 1, "q_num_heads": 4,
                                                "kv_num_heads": 2}, 23, {
        "q": _floats(2, 3, 8), "k": _floats(2, 3, 4), "v": _floats(2, 3, 6),
        "mask": np.array([[True, False, True, True, True], [True, True, True, False, True],
                          [False, True, True, True, True]]),
        "past_k": _floats(2, 2, 2, 2), "past_v": _floats(2, 2, 2, 3)}, 3),
    "attention_softcap_scores": ("Attention", {"softcap": 2.0, "scale": 0.7,
                                               "qk_matmul_output_mode": 3}, 23, {
        "q": _floats(1, 2, 3, 4), "k": _floats(1, 2, 5, 4), "v": _floats(1, 2, 5, 3)}, 4),
    # movement: crops and pads about the center, sequences reversed within their lengths
    "center_crop_pad_odd": ("CenterCropPad", {"axes": [0, -1]}, 18, {
        "x": _floats(6, 2, 3), "shape": np.array([3, 6])}, 1),
    "reverse_sequence_batch_first": ("ReverseSequence", {"batch_axis": 0, "time_axis": 1}, 17, {
        "x": _floats(3, 4, 2), "lengths": np.array([4, 1, 3])}, 1),
    # output_shape the unpooled size: beyond it, onnxruntime reads the indices in the larger
    # layout, where ONNX's reference (and node test) pads the unpooled result at the end
    "max_unpool_output_shape": ("MaxUnpool", {"kernel_shape": [2, 2], "strides": [2, 2]}, 17, {
        "x": _floats(1, 2, 2, 2), "i": np.array([[[[5, 3], [8, 15]], [[16, 22], [25, 31]]]]),
        "out": np.array([1, 2, 4, 4])}, 1),
    # sampling: a volume read trilinearly with reflection; an affine grid
    "grid_sample_3d_reflection": ("GridSample", {"mode": "linear", "padding_mode": "reflection",
                                                 "align_corners": 1}, 22, {
        "x": _floats(1, 2, 3, 4, 2), "grid": _floats(1, 2, 2, 3, 3) * 0.9}, 1),
    "affine_grid_2d": ("AffineGrid", {}, 20, {"theta": _floats(2, 2, 3),
                                              "size": np.array([2, 1, 3, 4])}, 1),
    "col2im_asymmetric_pads": ("Col2Im", {"dilations": [1, 2], "pads": [1, 0, 0, 1],
                                          "strides": [2, 1]}, 18, {
        "x": _floats(2, 6, 4), "image_shape": np.array([4, 5]),
        "block_shape": np.array([2, 3])}, 1),
    "rnn_relu_bidirectional": ("RNN", {"hidden_size": 4, "direction": "bidirectional",
                                       "activations": ["Relu", "Tanh"]}, 17, {
        "x": _floats(3, 2, 5), "w": _floats(2, 4, 5), "r": _floats(2, 4, 4) * 0.5,
        "b": _floats(2, 8)}, 2),
}


def _integers(inputs):
    """The integer inputs, given at import: those an operator needs then (sizes, shapes) are
    read from them, the others stay inputs."""
    return {k: v for k, v in inputs.items() if v.dtype.kind in "iu"}


def _model(op, attrs, opset, inputs, outputs):
    """One node of `op`; its outputs of its first input's type."""
    names = [f"y{i}" for i in range(outputs)]
    node = helper.make_node(op, list(inputs), names, name=op.lower(), **attrs)
    types = {k: helper.np_dtype_to_tensor_dtype(v.dtype) for k, v in inputs.items()}
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info(k, types[k], v.shape)
                      for k, v in inputs.items()],
        [helper.make_tensor_value_info(n, types[next(iter(inputs))], None) for n in names])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("name", sorted(CASES))
def test_form_runs_like_onnxruntime(name):
    op, attrs, opset, inputs, outputs = CASES[name]
    model = _model(op, attrs, opset, inputs, outputs)
    want = onnxruntime_run(model.SerializeToString(), inputs)
    imported = gd.onnx.load(model, values=_integers(inputs))
    feeds = imported.feeds(**inputs)
    for runner in ("interpreted", "compiled"):
        got = (gd.evaluate(list(imported.outputs), feeds) if runner == "interpreted"
               else gd.compile(list(imported.outputs))(**feeds))
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.dtype == w.dtype and g.shape == w.shape, runner
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=runner)


@pytest.mark.parametrize("name", sorted(set(CASES) - {"hardmax_flattened"}))  # constant
def test_form_gradients_match_finite_differences(name):
    op, attrs, opset, inputs, outputs = CASES[name]
    inputs = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in inputs.items()}
    imported = gd.onnx.load(_model(op, attrs, opset, inputs, outputs), values=_integers(inputs))
    probes = [RNG.standard_normal(y.shape) for y in imported.outputs]
    loss = sum(gd.sum(y * p) for y, p in zip(imported.outputs, probes))
    wrt = [x for x in imported.inputs if x.dtype == np.float64]
    feeds = imported.feeds(**inputs)
    got = gd.evaluate(gd.grad(loss, wrt), feeds)
    want = graph_numeric_grads(loss, feeds, [x.name for x in wrt])
    for x, g, w in zip(wrt, got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7, err_msg=x.name)


def test_lrn_of_an_even_size_reads_one_more_channel_after_than_before():
    """size 4: the squares of channels c − 1 … c + 2 (PyTorch's local_response_norm reads
    c − 2 … c + 1: an ONNX file and a PyTorch layer of an even size differ; onnxruntime refuses
    even sizes)."""
    x = np.ones((1, 6, 1, 1), np.float32)
    x[0, 3] = 3.0
    # beta −1, bias 0: y = x · Σ x² over the window (α/size = 1)
    model = _model("LRN", {"size": 4, "alpha": 4.0, "beta": -1.0, "bias": 0.0}, 17, {"x": x}, 1)
    (y,) = gd.evaluate(list(gd.onnx.load(model).outputs), {"x": x})
    window_sums = [1 + 1 + 1, 1 + 1 + 1 + 9, 1 + 1 + 9 + 1, 1 + 9 + 1 + 1, 9 + 1 + 1, 1 + 1]
    np.testing.assert_allclose(y.reshape(-1), x.reshape(-1) * window_sums, rtol=1e-6)


def _qdq(axis, zero_dtype, block_size=0):
    """x → QuantizeLinear → DequantizeLinear: the fake quantization of a QDQ model."""
    attrs = {"axis": axis, **({"block_size": block_size} if block_size else {})}
    nodes = [helper.make_node("QuantizeLinear", ["x", "scale", "zero"], ["q"], **attrs),
             helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["y"], **attrs)]
    zero_type = helper.np_dtype_to_tensor_dtype(np.dtype(zero_dtype))
    graph = helper.make_graph(
        nodes, "qdq", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, None),
                       helper.make_tensor_value_info("scale", onnx.TensorProto.FLOAT, None),
                       helper.make_tensor_value_info("zero", zero_type, None)],
        [helper.make_tensor_value_info("q", zero_type, None),
         helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


@pytest.mark.parametrize("form", ["per_tensor_uint8", "per_axis_int8", "blocked_int16"])
def test_quantize_dequantize_runs_like_onnxruntime(form):
    """Saturation at both ends of the type, ties rounded to even, zero points per channel and
    per block."""
    x = np.array([[0.5, 1.5, 2.5, -0.5, 300.0, -300.0], [3.5, -2.5, 0.25, 7.0, -7.5, 1.0]],
                 np.float32)
    axis, zero_dtype, block, scale, zero = {
        "per_tensor_uint8": (1, np.uint8, 0, np.float32(1.0), np.uint8(3)),
        "per_axis_int8": (0, np.int8, 0, np.array([1.0, 0.5], np.float32),
                          np.array([-2, 5], np.int8)),
        "blocked_int16": (1, np.int16, 4, np.array([[0.01, 2.0], [0.5, 0.25]], np.float32),
                          np.array([[0, -3], [7, 1]], np.int16)),
    }[form]
    model = _qdq(axis, zero_dtype, block)
    feeds = {"x": x, "scale": np.asarray(scale), "zero": np.asarray(zero)}
    want = onnxruntime_run(model.SerializeToString(), feeds)
    shapes = {name: value.shape for name, value in feeds.items()}
    got = gd.evaluate(list(gd.onnx.load(model, shapes=shapes).outputs), feeds)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)
