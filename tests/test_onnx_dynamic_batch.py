"""Models exported by PyTorch with a dynamic batch (`dynamic_axes={'x': {0: 'batch'}}`) import
with a batch of None, run at any batch size (one compiled function, one specialization per
size), and export back to ONNX with the batch still unknown: onnxruntime runs the saved model,
a mean loss and its gradients included, at two batch sizes."""

from __future__ import annotations

import functools
import io
import warnings

import numpy as np
import pytest

import graphdl as gd

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

BATCHES = (1, 3)


class Decoder(torch.nn.Module):
    """A decoder layer whose causal mask is built in forward; its attention reshapes to
    (steps, batch * heads, 4), a size computed from the unknown batch."""

    def __init__(self, batch_first):
        super().__init__()
        self.steps_axis = int(batch_first)
        self.layer = torch.nn.TransformerDecoderLayer(
            d_model=16, nhead=4, dim_feedforward=32, dropout=0.0, batch_first=batch_first)

    def forward(self, x, mem):
        steps = x.shape[self.steps_axis]
        mask = torch.triu(torch.full((steps, steps), float("-inf")), diagonal=1)
        return self.layer(x, mem, tgt_mask=mask)


def _cnn():
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(4 * 3 * 3, 5))


class ViewNet(torch.nn.Module):
    """`x.view(x.size(0), -1)`: a Reshape to (batch, -1), both read at run time."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 3)
        self.fc = torch.nn.Linear(2 * 6 * 6, 4)

    def forward(self, x):
        return self.fc(torch.tanh(self.conv(x)).view(x.size(0), -1))


# name: (model, {input: shape with the batch first}, the batch axis)
MODELS = {
    "cnn": (_cnn, {"x": (3, 8, 8)}, 0),
    "view": (ViewNet, {"x": (3, 8, 8)}, 0),
    "decoder": (functools.partial(Decoder, False), {"x": (5, 16), "mem": (6, 16)}, 1),
    "decoder_batch_first": (functools.partial(Decoder, True), {"x": (5, 16), "mem": (6, 16)}, 0),
}


def _shape(rest, axis, batch):
    return rest[:axis] + (batch,) + rest[axis:]


def _exported(name):
    build, inputs, axis = MODELS[name]
    torch.manual_seed(0)
    model = build().eval()
    with torch.no_grad():  # no two equal tensors (zero biases), which the exporter would share
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    args = tuple(torch.randn(_shape(s, axis, 2)) for s in inputs.values())
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the tracer's warnings about shapes read in forward
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, buf, opset_version=17, dynamo=False,
                          input_names=list(inputs),
                          dynamic_axes={k: {axis: "batch"} for k in inputs})
    return model, buf.getvalue()


def _batch(name, batch):
    _, inputs, axis = MODELS[name]
    return {k: torch.randn(_shape(s, axis, batch)) for k, s in inputs.items()}


def _torch(model, xs):
    with torch.no_grad():
        return model(*xs.values()).numpy()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_dynamic_batch_imports_as_none_and_runs_at_every_size(name):
    model, data = _exported(name)
    imported = gd.onnx.load(data)
    axis = MODELS[name][2]
    assert all(x.shape[axis] is None for x in imported.inputs)
    assert imported.outputs[0].shape[axis] is None
    fn = gd.compile(list(imported.outputs))
    for batch in BATCHES:
        xs = _batch(name, batch)
        feeds = imported.feeds(**{k: v.numpy() for k, v in xs.items()})
        expected = _torch(model, xs)
        (got,) = gd.evaluate(list(imported.outputs), feeds)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-6)
        (got,) = fn(feeds)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-6)
    assert len(fn.specializations) == len(BATCHES)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_saved_with_an_unknown_batch_runs_in_onnxruntime_at_two_sizes(name):
    ort = pytest.importorskip("onnxruntime")
    model, data = _exported(name)
    imported = gd.onnx.load(data)
    saved = gd.onnx.save({"y": imported.outputs[0]}, params=imported.params)
    assert saved.graph.output[0].type.tensor_type.shape.dim[MODELS[name][2]].dim_value == 0
    session = ort.InferenceSession(saved.SerializeToString())
    for batch in BATCHES:
        xs = _batch(name, batch)
        (got,) = session.run(None, {k: v.numpy() for k, v in xs.items()})
        np.testing.assert_allclose(got, _torch(model, xs), rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_mean_loss_and_gradients_over_an_unknown_batch_export(name):
    """A mean over the batch divides by its size, read from the Shape at run time; sum_to,
    the pooling and gather gradients read theirs likewise. The saved loss and its gradients
    wrt the inputs and the parameters match autograd at two batch sizes."""
    ort = pytest.importorskip("onnxruntime")
    model, data = _exported(name)
    imported = gd.onnx.load(data)
    target = gd.input("target", imported.outputs[0].shape)
    loss = gd.mean((imported.outputs[0] - target) ** 2)
    torch_params = dict(model.named_parameters())
    params = [imported.nodes[k] for k in sorted(imported.params) if k in torch_params]
    assert len(params) >= 2  # those that keep their PyTorch names (not BatchNorm-fused convs)
    wrt = [*imported.inputs, *params]
    saved = gd.onnx.save({"loss": loss, **{f"d_{n.name}": g for n, g in
                                           zip(wrt, gd.grad(loss, wrt))}},
                         params=imported.params)
    session = ort.InferenceSession(saved.SerializeToString())
    for batch in BATCHES:
        xs = {k: v.requires_grad_() for k, v in _batch(name, batch).items()}
        y = model(*xs.values())
        t = torch.randn(y.shape)
        model.zero_grad()
        torch_loss = torch.nn.functional.mse_loss(y, t)
        torch_loss.backward()
        got = session.run(None, {**{k: v.detach().numpy() for k, v in xs.items()},
                                 "target": t.numpy()})
        np.testing.assert_allclose(got[0], torch_loss.item(), rtol=1e-5)
        expected = [xs[n.name].grad for n in imported.inputs]
        expected += [torch_params[p.name].grad for p in params]
        for node, g, want in zip(wrt, got[1:], expected):
            np.testing.assert_allclose(g, want.numpy(), rtol=1e-4, atol=1e-6, err_msg=node.name)


class ZerosOfBatch(torch.nn.Module):
    def forward(self, x):
        return torch.cat([x, torch.zeros(x.shape[0], 1)], 1)


def test_a_value_that_needs_the_unknown_size_is_refused_asking_for_shapes():
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(ZerosOfBatch(), (torch.randn(2, 3),), buf, opset_version=17,
                          dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    with pytest.raises(gd.onnx.UnsupportedOperator,
                       match=r"ConstantOfShape node.*known only at run time.*shapes="):
        gd.onnx.load(buf.getvalue())
    fixed = gd.onnx.load(buf.getvalue(), shapes={"x": (2, 3)})
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    (got,) = gd.evaluate(list(fixed.outputs), fixed.feeds(x=x))
    np.testing.assert_array_equal(got, ZerosOfBatch()(torch.from_numpy(x)).numpy())


def test_an_opset_9_slice_of_the_unknown_shape_folds():
    """Before opset 10, Slice's bounds are attributes: reshape(x, [shape(x)[0:1], -1])."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Slice", ["shape"], ["batch"], starts=[0], ends=[1]),
             helper.make_node("Concat", ["batch", "minus_one"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["y"])]
    graph = helper.make_graph(
        nodes, "flatten", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6])],
        [helper.make_tensor("minus_one", TensorProto.INT64, [1], [-1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
    imported = gd.onnx.load(model.SerializeToString())
    x = np.arange(24, dtype=np.float32).reshape(4, 2, 3)
    (got,) = gd.evaluate(list(imported.outputs), imported.feeds(x=x))
    np.testing.assert_array_equal(got, x.reshape(4, 6))
