"""PyTorch's nn.TransformerEncoderLayer exported to ONNX (Trilu for the causal mask, Mod, Erf,
LayerNormalization, Softmax) imports, runs like PyTorch on every path, and differentiates like
autograd."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

import graphdl as gd

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from tests.helpers import run_on, runner_params


class CausalEncoder(torch.nn.Module):
    """One encoder layer whose causal mask is built inside forward with torch.triu."""

    def __init__(self, activation, batch_first):
        super().__init__()
        self.batch_first = batch_first
        self.layer = torch.nn.TransformerEncoderLayer(
            d_model=16, nhead=4, dim_feedforward=32, dropout=0.0, activation=activation,
            batch_first=batch_first)

    def forward(self, x):
        steps = x.shape[1] if self.batch_first else x.shape[0]
        mask = torch.triu(torch.full((steps, steps), float("-inf")), diagonal=1)
        return self.layer(x, src_mask=mask)


def _imported(activation, batch_first):
    torch.manual_seed(0)
    model = CausalEncoder(activation, batch_first).eval()
    with torch.no_grad():  # no two equal tensors (zero biases), which the exporter would share
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    x = torch.randn((2, 5, 16) if batch_first else (5, 2, 16))
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the tracer's warnings about shapes read in forward
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buf, opset_version=17, dynamo=False, input_names=["x"])
    return model, x, gd.onnx.load(buf.getvalue())


@pytest.mark.parametrize("runner", runner_params())
@pytest.mark.parametrize("activation,batch_first", [("gelu", True), ("relu", False)])
def test_encoder_layer_runs_like_pytorch(runner, activation, batch_first):
    model, x, imported = _imported(activation, batch_first)
    (got,) = run_on(runner, list(imported.outputs), imported.feeds(x=x.numpy()))
    np.testing.assert_allclose(got, model(x).detach().numpy(), rtol=1e-5, atol=2e-6)


def test_encoder_layer_gradients_match_autograd():
    model, x, imported = _imported("gelu", True)
    probe = torch.randn(2, 5, 16)
    (model(x.requires_grad_()) * probe).sum().backward()
    torch_grads = {name: p.grad.numpy() for name, p in model.named_parameters()}
    feeds = imported.feeds(x=x.detach().numpy())
    params = [n for n in gd.topological_order(list(imported.outputs))
              if n.op is gd.REGISTRY["input"] and n.name in torch_grads]
    assert len(params) >= 6  # biases and norms keep their PyTorch names
    loss = gd.sum(imported.outputs[0] * probe.numpy())
    (dx, *grads) = gd.evaluate(gd.grad(loss, [imported.inputs[0], *params]), feeds)
    np.testing.assert_allclose(dx, x.grad.numpy(), rtol=1e-4, atol=1e-5)
    for p, g in zip(params, grads):
        np.testing.assert_allclose(g, torch_grads[p.name], rtol=1e-4, atol=1e-5,
                                   err_msg=p.name)


def test_encoder_layer_reexports_to_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    model, x, imported = _imported("gelu", True)
    feeds = imported.feeds(x=x.numpy())
    saved = gd.onnx.save({"y": imported.outputs[0]})
    session = ort.InferenceSession(saved.SerializeToString())
    names = {i.name for i in session.get_inputs()}
    (got,) = session.run(None, {k: v for k, v in feeds.items() if k in names})
    np.testing.assert_allclose(got, model(x).detach().numpy(), rtol=1e-5, atol=2e-6)
