"""ONNX import and export on real PyTorch models (LeNet, an AlexNet-shaped net, a ResNet-style
block with batch norm): forward values against PyTorch and onnxruntime, gradients of a scalar
of the output against PyTorch's autograd, and the imported graph (gradients included) exported
again and run by onnxruntime."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

import graphdl as gd
from graphdl.errors import InputError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the legacy exporter


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(x.size(0), -1)  # Shape -> Gather -> Unsqueeze -> Concat -> Reshape
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class AlexNetShaped(nn.Module):
    """AlexNet's layer pattern (11x11/4 conv, overlapping 3/2 max-pools, 5x5 and 3x3 convs,
    dropout, three linear layers) at a small width and a 3x67x67 input."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(8, 12, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(12, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1, groups=2), nn.ReLU(), nn.MaxPool2d(3, 2))
        self.classifier = nn.Sequential(
            nn.Dropout(), nn.Linear(16, 32), nn.ReLU(), nn.Dropout(), nn.Linear(32, 32),
            nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class ResidualBlock(nn.Module):
    """conv-bn-relu-conv-bn + identity shortcut, relu, global average pool, linear head."""

    def __init__(self, c=8):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1, bias=False)
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.head = nn.Linear(c, 5)

    def forward(self, x):
        x = self.stem(x)
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        y = F.adaptive_avg_pool2d(F.relu(x + y), 1)
        return F.log_softmax(self.head(torch.flatten(y, 1)), dim=1)


def _randomized(model):
    torch.manual_seed(0)
    for m in model.modules():  # batch norm's running statistics away from 0 and 1
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return model.eval()


MODELS = {"lenet": (LeNet, (2, 1, 28, 28)), "alexnet": (AlexNetShaped, (2, 3, 67, 67)),
          "resnet_block": (ResidualBlock, (2, 3, 12, 12))}


@pytest.fixture(scope="module", params=sorted(MODELS))
def exported(request, tmp_path_factory):
    """(torch model, ONNX file, input array) for one model, exported once per test module."""
    cls, shape = MODELS[request.param]
    torch.manual_seed(1)
    model = _randomized(cls())
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    path = tmp_path_factory.mktemp("onnx") / f"{request.param}.onnx"
    # no constant folding: initializers keep PyTorch's names and batch norm stays a node
    torch.onnx.export(model, (torch.from_numpy(x),), str(path), dynamo=False,
                      do_constant_folding=False, input_names=["x"], output_names=["logits"])
    return model, path, x


def _probe(shape):
    """Fixed weights for the scalar whose gradients are compared: sum(out * probe)."""
    return np.random.default_rng(3).standard_normal(shape).astype(np.float32)


def test_imported_models_match_pytorch_and_onnxruntime(exported):
    model, path, x = exported
    imported = gd.onnx.load(path)
    (y,) = gd.evaluate(imported.outputs, **imported.feeds(x=x))
    expected = model(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)
    runtime = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, runtime, rtol=1e-4, atol=1e-5)
    compiled = gd.compile(imported.outputs)(**imported.feeds(x=x))
    np.testing.assert_allclose(compiled[0], expected, rtol=1e-4, atol=1e-5)


def test_imported_gradients_match_pytorch_autograd(exported):
    model, path, x = exported
    imported = gd.onnx.load(path)
    (out,) = imported.outputs
    probe = _probe(out.shape)
    loss = gd.sum(out * gd.constant(probe))
    trained = [name for name, _ in model.named_parameters()]
    wrt = [imported.nodes[n] for n in trained] + imported.inputs
    grads = gd.compile(gd.grad(loss, wrt))(**imported.feeds(x=x))

    xt = torch.from_numpy(x).requires_grad_()
    (model(xt) * torch.from_numpy(probe)).sum().backward()
    expected = [p.grad.numpy() for _, p in model.named_parameters()] + [xt.grad.numpy()]
    for name, got, want in zip(trained + ["x"], grads, expected):
        scale = np.abs(want).max()
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * scale, err_msg=name)


def test_imported_graph_with_gradients_exports_to_onnxruntime(exported, tmp_path):
    _, path, x = exported
    imported = gd.onnx.load(path)
    (out,) = imported.outputs
    loss = gd.sum(out * gd.constant(_probe(out.shape)))
    names = list(imported.params)
    grads = gd.grad(loss, [imported.nodes[n] for n in names] + imported.inputs)
    outputs = {"loss": loss, **{f"d_{n}": g for n, g in zip(names + ["x"], grads)}}
    saved = gd.onnx.save(outputs, tmp_path / "grad.onnx", params=imported.params)
    assert [o.name for o in saved.graph.output] == list(outputs)
    got = ort.InferenceSession(str(tmp_path / "grad.onnx")).run(None, {"x": x})
    want = gd.evaluate(list(outputs.values()), **imported.feeds(x=x))
    for name, a, b in zip(outputs, got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(b).max(), err_msg=name)


def _dynamic_lenet(path):
    """LeNet exported with a symbolic batch: x.view(x.size(0), -1) becomes the subgraph
    Shape -> Gather -> Unsqueeze -> Concat -> Reshape."""
    torch.manual_seed(0)
    torch.onnx.export(LeNet().eval(), (torch.zeros(2, 1, 28, 28),), str(path), dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    return path


def test_shape_subgraph_is_folded_at_import(tmp_path):
    """Imported with a static batch, the shape subgraph is one reshape to a fixed shape, and no
    graph node computes a shape."""
    path = _dynamic_lenet(tmp_path / "lenet.onnx")
    assert {"Shape", "Gather", "Concat"} <= {n.op_type for n in onnx.load(path).graph.node}
    imported = gd.onnx.load(path, shapes={"x": (3, 1, 28, 28)})
    order = gd.topological_order(imported.outputs)
    flatten = [n for n in order if n.op.name == "reshape" and n.ndim == 2]
    assert [(n.attrs["shape"], n.shape) for n in flatten] == [((3, -1), (3, 400))]
    assert not {n.op.name for n in order} & {"take", "concatenate"}
    assert imported.outputs[0].shape == (3, 10)


def test_symbolic_batch_imports_as_an_unknown_size(tmp_path):
    """Imported as declared, the batch is None and `x.view(x.size(0), -1)` a reshape whose -1 is
    the batch: the rest of the target is what x has besides its batch."""
    path = _dynamic_lenet(tmp_path / "lenet.onnx")
    imported = gd.onnx.load(path)
    order = gd.topological_order(imported.outputs)
    flatten = [n for n in order if n.op.name == "reshape" and n.ndim == 2]
    assert [(n.attrs["shape"], n.shape) for n in flatten] == [((-1, 400), (None, 400))]
    assert imported.inputs[0].shape == (None, 1, 28, 28)
    assert imported.outputs[0].shape == (None, 10)


def test_onnx_node_names_name_the_graph_nodes(exported):
    _, path, _ = exported
    imported = gd.onnx.load(path)
    proto = onnx.load(path)
    named = {n.name for n in gd.topological_order(imported.outputs) if n.named_by_user}
    convs = [n.name.lstrip("/") for n in proto.graph.node if n.op_type == "Conv"]
    assert convs and set(convs) <= named
    assert imported.outputs[0].name in {n.name.lstrip("/") for n in proto.graph.node}


def test_unsupported_operator_is_refused_naming_operator_node_and_opset():
    from onnx import TensorProto, helper

    # an op type no ONNX opset defines, so no importer will ever support it
    node = helper.make_node("NoSuchOp", ["x"], ["y"], name="my_op")
    graph = helper.make_graph([node], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(gd.onnx.UnsupportedOperator,
                       match=r"'NoSuchOp'.*'my_op', opset 17.*supported: .*Conv.*MaxPool"):
        gd.onnx.load(model)


def test_training_step_updates_export_as_outputs(tmp_path):
    """One SGD step's new weights as extra outputs, run by onnxruntime."""
    rng = np.random.default_rng(0)
    x, labels = gd.input("x", (4, 3)), gd.input("labels", (4,), "int64")
    w, b = gd.input("w", (3, 5)), gd.input("b", (5,))
    loss = gd.softmax_cross_entropy(x @ w + b, labels)
    dw, db = gd.grad(loss, [w, b])
    params = {"w": rng.standard_normal((3, 5)).astype(np.float32),
              "b": rng.standard_normal(5).astype(np.float32)}
    outputs = {"loss": loss, "w_new": w - 0.1 * dw, "b_new": b - 0.1 * db}
    gd.onnx.save(outputs, tmp_path / "step.onnx", params=params)
    feeds = {"x": rng.standard_normal((4, 3)).astype(np.float32), "labels": np.array([0, 4, 2, 1])}
    got = ort.InferenceSession(str(tmp_path / "step.onnx")).run(None, feeds)
    want = gd.evaluate(list(outputs.values()), **params, **feeds)
    for a, b_ in zip(got, want):
        np.testing.assert_allclose(a, b_, rtol=1e-5, atol=1e-6)


def test_import_graphdl_does_not_import_onnx():
    script = ("import sys, graphdl as gd\n"
              "gd.onnx\n"
              "assert 'onnx' not in sys.modules, 'onnx was imported'\n")
    subprocess.run([sys.executable, "-c", script], check=True)


def _roundtrip(outputs, feeds, tmp_path, rtol=1e-5):
    """`outputs` saved as ONNX and run by onnxruntime agree with gd.evaluate."""
    gd.onnx.save(outputs, tmp_path / "g.onnx")
    got = ort.InferenceSession(str(tmp_path / "g.onnx")).run(None, feeds)
    want = gd.evaluate(list(outputs.values()), **feeds)
    for name, a, b in zip(outputs, got, want):
        assert a.dtype == b.dtype, name
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(np.abs(b).max(), 1),
                                   err_msg=name)


@pytest.mark.parametrize("pool", ["avg", "avg_exclude_pad_ceil", "max_padded_ceil"])
def test_pooling_gradients_export(pool, tmp_path):
    x = gd.input("x", (2, 3, 7, 6))
    if pool == "avg":
        y = gd.avg_pool2d(x, 3, 2, padding=1)
    elif pool == "avg_exclude_pad_ceil":
        y = gd.avg_pool2d(x, 3, 2, padding=1, ceil_mode=True, count_include_pad=False)
    else:
        y = gd.max_pool2d(x, 3, 2, padding=1, ceil_mode=True)
    probe = gd.constant(_probe(y.shape))
    loss = gd.sum(y * y * probe)
    (dx,) = gd.grad(loss, [x])
    (ddx,) = gd.grad(gd.sum(dx * dx), [x])  # second order: max-pool's select op, avg-pool's pool
    x0 = np.random.default_rng(0).standard_normal((2, 3, 7, 6)).astype(np.float32)
    _roundtrip({"y": y, "dx": dx, "ddx": ddx}, {"x": x0}, tmp_path)


def test_strided_dilated_grouped_conv_gradients_export(tmp_path):
    x, w = gd.input("x", (2, 4, 9, 8)), gd.input("w", (6, 2, 3, 2))
    y = gd.conv2d(x, w, stride=(2, 3), padding=(1, 2, 0, 1), dilation=(1, 2), groups=2)
    loss = gd.sum(y * gd.constant(_probe(y.shape)))
    dx, dw = gd.grad(loss, [x, w])
    rng = np.random.default_rng(1)
    feeds = {"x": rng.standard_normal((2, 4, 9, 8)).astype(np.float32),
             "w": rng.standard_normal((6, 2, 3, 2)).astype(np.float32)}
    _roundtrip({"y": y, "dx": dx, "dw": dw}, feeds, tmp_path)


def test_strided_slices_gathers_and_mixed_dtypes_export(tmp_path):
    """unslice (slice's gradient) with steps, scatter_add (take's) with negative indices,
    sum_to (broadcasting's), and NumPy's promotion of int32 with float64."""
    a, b = gd.input("a", (5, 6), "float64"), gd.input("b", (6,), "float64")
    idx, n = gd.input("idx", (4,), "int64"), gd.input("n", (5, 1), "int32")
    y = a[::2, 5:0:-2] * 3.0 + gd.take(a, idx, axis=0)[:3, :3] + n[:3] + b[:3]
    loss = gd.sum(y ** 2)
    da, db = gd.grad(loss, [a, b])
    rng = np.random.default_rng(2)
    feeds = {"a": rng.standard_normal((5, 6)), "b": rng.standard_normal(6),
             "idx": np.array([-1, 0, 3, -1]), "n": np.arange(5, dtype=np.int32).reshape(5, 1)}
    _roundtrip({"y": y, "da": da, "db": db}, feeds, tmp_path, rtol=1e-12)


def test_export_refuses_params_that_are_no_input():
    x = gd.input("x", (2,))
    with pytest.raises(gd.GraphError, match=r"params names 'w'.*inputs are \['x'\]"):
        gd.onnx.save(x * 2.0, params={"w": np.ones(2)})


def test_an_output_named_as_an_input_is_renamed_or_refused_naming_both():
    """An ONNX value has one name: an output that would take an input's name (the input itself,
    named by the node) is saved as output_i; one a dict names so is refused."""
    y = gd.input("y", (3,))
    feeds = {"y": np.array([1.0, -2.0, 3.5], np.float32)}
    model = gd.onnx.save([y, y * 2.0])
    assert [o.name for o in model.graph.output] == ["output_0", "output_1"]
    got = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    np.testing.assert_array_equal(got[0], feeds["y"])
    np.testing.assert_array_equal(got[1], feeds["y"] * 2)
    with pytest.raises(gd.GraphError, match=r"output 'y'.*input 'y'"):
        gd.onnx.save({"y": y * 2.0})


def test_abs_and_clip_import_with_pytorchs_gradients_and_export(tmp_path):
    """Abs's gradient is 0 at 0 and Clip's is 1 at its bounds, as PyTorch's abs and clamp."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Abs", ["x"], ["a"], name="abs"),
             helper.make_node("Constant", [], ["lo"],
                              value=helper.make_tensor("lo", TensorProto.FLOAT, [], [0.5])),
             helper.make_node("Clip", ["a", "lo"], ["y"], name="clip")]
    graph = helper.make_graph(nodes, "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    imported = gd.onnx.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    x0 = np.array([0.0, -0.5, 2.0, -3.0], np.float32)
    xt = torch.from_numpy(x0).requires_grad_()
    torch.clamp(torch.abs(xt), min=0.5).sum().backward()
    (dx,) = gd.evaluate(gd.grad(gd.sum(imported.outputs[0]), imported.inputs), x=x0)
    np.testing.assert_array_equal(dx, xt.grad.numpy())
    _roundtrip({"y": imported.outputs[0]}, {"x": x0}, tmp_path)


def _reshape_model(shape_type=None):
    """Reshape(x, shape) with the shape a graph input, as ONNX's own node tests feed it."""
    from onnx import TensorProto, helper

    node = helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape")
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
              shape_type or helper.make_tensor_value_info("shape", TensorProto.INT64, [2])]
    graph = helper.make_graph([node], "g", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 2])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_shape_fed_as_a_graph_input_is_refused_without_values_and_used_with_them():
    with pytest.raises(gd.onnx.UnsupportedOperator, match=r"Reshape node.*'shape'.*values="):
        gd.onnx.load(_reshape_model())
    x, shape = np.arange(6, dtype=np.float32).reshape(2, 3), np.array([3, 2])
    imported = gd.onnx.load(_reshape_model(), values={"shape": shape})
    assert imported.read == {"x"}
    feeds = imported.feeds(x=x, shape=shape)  # the shape, fixed at import, is not fed again
    assert set(feeds) == {"x"}
    np.testing.assert_array_equal(gd.compile(imported.outputs)(**feeds)[0], x.reshape(3, 2))


def test_values_of_another_dtype_than_the_input_are_refused_naming_it():
    with pytest.raises(gd.onnx.UnsupportedOperator, match=r"'shape' is declared int64.*int32"):
        gd.onnx.load(_reshape_model(), values={"shape": np.array([3, 2], np.int32)})


def test_feeds_refuses_a_name_that_is_no_input_of_the_model():
    imported = gd.onnx.load(_reshape_model(), values={"shape": np.array([3, 2])})
    with pytest.raises(InputError, match=r"\['z'\] are not inputs.*'shape', 'x'"):
        imported.feeds(z=np.ones(2))


def test_sequence_graph_input_is_refused_naming_it():
    from onnx import TensorProto, helper

    sequence = helper.make_tensor_sequence_value_info("shape", TensorProto.INT64, [2])
    with pytest.raises(gd.onnx.UnsupportedOperator,
                       match=r"'shape' has type sequence_type, not a tensor"):
        gd.onnx.load(_reshape_model(sequence))


def test_elementwise_ops_without_an_emitter_export_from_their_sympy_form(tmp_path):
    """A user's elementwise op (and a new primitive) is written operator by operator from its
    SymPy form: Erf, Pow, Reciprocal, Sqrt, Add and Mul chains, constants in the node's dtype."""
    import sympy

    bump = gd.elementwise_op(
        "bump", lambda x: sympy.erf(x) / (1 + x**2) + sympy.sqrt(x**2 + 3) * 0.25)
    a = gd.input("a", (3, 4), "float32")
    feeds = {"a": np.random.default_rng(0).normal(size=(3, 4)).astype("float32")}
    _roundtrip({"y": bump(a) * 2.0}, feeds, tmp_path)


@pytest.mark.parametrize("exclusive,reverse", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_cumsum_imports_in_all_four_forms(exclusive, reverse, tmp_path):
    """ONNX's CumSum, exclusive (each sum without its own element) and reversed, agrees with
    onnxruntime; int32 stays int32 as ONNX sums in the input's type."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Constant", [], ["axis"],
                              value=helper.make_tensor("axis", TensorProto.INT64, [], [-1])),
             helper.make_node("CumSum", ["x", "axis"], ["y"], name="scan",
                              exclusive=exclusive, reverse=reverse)]
    for dtype, onnx_type in [(np.float32, TensorProto.FLOAT), (np.int32, TensorProto.INT32)]:
        graph = helper.make_graph(nodes, "g",
                                  [helper.make_tensor_value_info("x", onnx_type, [2, 4])],
                                  [helper.make_tensor_value_info("y", onnx_type, [2, 4])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        x0 = np.arange(1, 9, dtype=dtype).reshape(2, 4) * np.array([1, -2, 3, 5], dtype)
        (want,) = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x0})
        (got,) = gd.evaluate(gd.onnx.load(model).outputs, x=x0)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
