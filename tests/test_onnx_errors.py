"""`gd.onnx.load` on models and arguments that are wrong: each error names what is wrong and what
was expected (issue 19 item 12), and serialized bytes are a model like a path is."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper

import graphdl as gd


def _conv_model(batch="N", **conv_attrs):
    """x (batch, 1, 5, 5) -> Conv by a 3 x 3 weight initializer -> y."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 1, 5, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w = helper.make_tensor("w", TensorProto.FLOAT, [1, 1, 3, 3], np.ones(9, np.float32))
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="conv1", **conv_attrs)
    graph = helper.make_graph([conv], "g", [x], [y], initializer=[w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_serialized_bytes_load_as_the_model():
    model = gd.onnx.load(_conv_model(batch=2).SerializeToString())
    x = np.ones((2, 1, 5, 5), np.float32)
    (y,) = gd.evaluate(model.outputs, **model.feeds(x=x))
    np.testing.assert_array_equal(y, np.full((2, 1, 3, 3), 9, np.float32))


def test_a_shapes_name_that_is_no_input_is_refused_naming_the_inputs(tmp_path):
    with pytest.raises(gd.GraphError, match=r"shapes=.*'X'.*no input.*inputs are \['x'\]"):
        gd.onnx.load(_conv_model(), shapes={"X": (2, 1, 5, 5)})


def test_shapes_of_another_rank_or_size_are_refused_naming_the_declared_shape():
    with pytest.raises(gd.GraphError, match=r"shapes=.*'x'.*\(2, 5, 5\).*\('N', 1, 5, 5\)"):
        gd.onnx.load(_conv_model(), shapes={"x": (2, 5, 5)})
    with pytest.raises(gd.GraphError, match=r"shapes=.*'x'.*\(2, 1, 6, 5\).*\('N', 1, 5, 5\)"):
        gd.onnx.load(_conv_model(), shapes={"x": (2, 1, 6, 5)})


def test_an_input_of_no_declared_rank_needs_its_shape_given():
    """No shape at all is not a 0-d input: refused at load, naming it, unless shapes= gives it."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(gd.GraphError, match=r"input 'x' declares no shape.*shapes=\{'x'"):
        gd.onnx.load(model)
    imported = gd.onnx.load(model, shapes={"x": (2, 3)})
    x = np.array([[-1.0, 2.0, 0.5], [3.0, -4.0, 0.0]], np.float32)
    np.testing.assert_array_equal(gd.evaluate(imported.outputs[0], x=x), np.maximum(x, 0))


@pytest.mark.parametrize("content", [b"", b"\xff\xff not a protobuf"])
def test_a_file_that_is_no_onnx_model_is_refused_naming_it(tmp_path, content):
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(gd.GraphError, match=r"model\.onnx.*not an ONNX model"):
        gd.onnx.load(path)
    with pytest.raises(gd.GraphError, match=r"bytes given.*not an ONNX model"):
        gd.onnx.load(content)


@pytest.mark.parametrize("attrs, expected", [
    ({"pads": [1, 1]}, r"pads \[1, 1\].*4 numbers"),
    ({"strides": [1]}, r"strides \[1\].*2 numbers"),
    ({"dilations": [1, 1, 1]}, r"dilations \[1, 1, 1\].*2 numbers"),
])
def test_malformed_window_attributes_are_refused_naming_the_node(attrs, expected):
    with pytest.raises(gd.GraphError, match=r"Conv node 'conv1'.*" + expected):
        gd.onnx.load(_conv_model(batch=2, **attrs))


def test_a_pool_without_kernel_shape_is_refused_naming_the_node():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    pool = helper.make_node("MaxPool", ["x"], ["y"], name="pool")
    model = helper.make_model(helper.make_graph([pool], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(gd.GraphError, match=r"MaxPool node 'pool'.*kernel_shape"):
        gd.onnx.load(model)


def test_a_value_no_node_defines_is_refused_naming_it():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    add = helper.make_node("Add", ["x", "z"], ["y"], name="add")
    model = helper.make_model(helper.make_graph([add], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(gd.GraphError, match=r"Add node 'add'.*'z'.*no graph input"):
        gd.onnx.load(model)
