"""Real models through ONNX: PyTorch's nn.TransformerDecoderLayer and nn.MultiheadAttention (with
key-padding and attention masks given as inputs), and torchvision's ResNet-18, MobileNetV2,
SqueezeNet 1.0 and EfficientNet-B0 (random weights, small images), and a small segmentation
encoder-decoder upsampling by interpolation (ONNX Resize) import, run like PyTorch and
onnxruntime, differentiate like autograd, and export back to ONNX for onnxruntime."""

from __future__ import annotations

import functools
import importlib
import io
import shutil
import sys
import warnings

import numpy as np
import pytest

import graphdl as gd

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from tests.helpers import run_on


def _export(model, args, names, dynamic_axes=None, opset=17):
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the tracer's warnings about shapes read in forward
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, buf, opset_version=opset, dynamo=False, input_names=names,
                          dynamic_axes=dynamic_axes)
    return buf.getvalue()


def _perturbed(model):
    """`model` in eval mode with every parameter moved off its initial value: no two equal
    tensors (zero biases, unit norms), which the exporter would share under one name."""
    torch.manual_seed(0)
    model.eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def _onnxruntime(data, feeds):
    session = ort.InferenceSession(data)
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in feeds.items() if k in names})


def _check_values(imported, data, feeds, expected, rtol=1e-5, runners=("evaluate", "numpy")):
    """The imported outputs on each runner, the original file in onnxruntime, and graphdl's
    re-export in onnxruntime, all against PyTorch's `expected` (to rtol of its largest value:
    float32 sums of other orders)."""
    tolerance = {"rtol": rtol, "atol": rtol * max(np.abs(e).max() for e in expected)}
    for runner in runners:
        for got, want in zip(run_on(runner, list(imported.outputs), feeds), expected):
            np.testing.assert_allclose(got, want, err_msg=runner, **tolerance)
    saved = gd.onnx.save(dict(zip(imported.names, imported.outputs)), params=imported.params)
    for source, model in (("onnxruntime", data), ("re-export", saved.SerializeToString())):
        for got, want in zip(_onnxruntime(model, feeds), expected):
            np.testing.assert_allclose(got, want, err_msg=source, **tolerance)


def _check_gradients(imported, feeds, inputs, outputs, model, min_params):
    """Gradients of Σ probe·output wrt the model's inputs and the parameters that keep their
    PyTorch names, against autograd."""
    rng = np.random.default_rng(1)
    probes = [rng.standard_normal(o.shape).astype(np.float32) for o in outputs]
    sum(((o * torch.from_numpy(p)).sum() for o, p in zip(outputs, probes))).backward()
    torch_grads = {name: p.grad.numpy() for name, p in model.named_parameters()
                   if p.grad is not None}
    params = [imported.nodes[k] for k in sorted(imported.params) if k in torch_grads]
    assert len(params) >= min_params
    loss = sum(gd.sum(o * p) for o, p in zip(imported.outputs, probes))
    wrt = [*imported.inputs[:len(inputs)], *params]
    grads = gd.evaluate(gd.grad(loss, wrt), feeds)
    expected = [x.grad.numpy() for x in inputs] + [torch_grads[p.name] for p in params]
    for node, got, want in zip(wrt, grads, expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=node.name)


def _check_like_pytorch(model, x, data, min_params):
    """The file imported: its outputs at x against PyTorch, onnxruntime and graphdl's
    re-export; the gradients to x (and to the parameters keeping their names) against
    autograd."""
    imported = gd.onnx.load(data)

    def outputs(y):
        return list(y) if isinstance(y, tuple) else [y]

    with torch.no_grad():
        expected = [o.numpy() for o in outputs(model(x))]
    _check_values(imported, data, imported.feeds(x=x.numpy()), expected, rtol=1e-4)
    x = x.clone().requires_grad_()
    _check_gradients(imported, imported.feeds(x=x.detach().numpy()), [x], outputs(model(x)),
                     model, min_params)


# ---------------------------------------------------------------- transformer decoder
class Decoder(torch.nn.Module):
    """One decoder layer under a causal tgt_mask: built in forward with torch.triu, or a
    registered buffer (a constant of the file)."""

    def __init__(self, activation, batch_first, mask):
        super().__init__()
        self.batch_first = batch_first
        self.layer = torch.nn.TransformerDecoderLayer(
            d_model=16, nhead=4, dim_feedforward=32, dropout=0.0, activation=activation,
            batch_first=batch_first)
        self.register_buffer("mask", _causal(5) if mask == "buffer" else None)

    def forward(self, x, mem):
        steps = x.shape[1] if self.batch_first else x.shape[0]
        mask = _causal(steps) if self.mask is None else self.mask
        return self.layer(x, mem, tgt_mask=mask)


def _causal(steps):
    return torch.triu(torch.full((steps, steps), float("-inf")), diagonal=1)


def _decoder(activation, batch_first, mask):
    model = _perturbed(Decoder(activation, batch_first, mask))
    x = torch.randn((2, 5, 16) if batch_first else (5, 2, 16))
    mem = torch.randn((2, 6, 16) if batch_first else (6, 2, 16))
    data = _export(model, (x, mem), ["x", "mem"])
    return model, x, mem, data, gd.onnx.load(data)


DECODERS = [("relu", True, "triu"), ("gelu", False, "triu"), ("relu", False, "buffer"),
            ("gelu", True, "buffer")]


@pytest.mark.parametrize("activation,batch_first,mask", DECODERS)
def test_decoder_layer_runs_like_pytorch_and_onnxruntime(activation, batch_first, mask):
    model, x, mem, data, imported = _decoder(activation, batch_first, mask)
    feeds = imported.feeds(x=x.numpy(), mem=mem.numpy())
    _check_values(imported, data, feeds, [model(x, mem).detach().numpy()])


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++")
def test_decoder_and_attention_run_on_cuda_kernels_on_the_cpu():
    model, x, mem, _, imported = _decoder("gelu", True, "triu")
    (got,) = run_on("cuda-cpu", list(imported.outputs),
                    imported.feeds(x=x.numpy(), mem=mem.numpy()))
    np.testing.assert_allclose(got, model(x, mem).detach().numpy(), rtol=1e-5, atol=2e-6)
    model, args, _, imported, feeds = _attention("boolean")
    for got, want in zip(run_on("cuda-cpu", list(imported.outputs), imported.feeds(**feeds)),
                         model(*args)):
        np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("activation,batch_first,mask", DECODERS[:2])
def test_decoder_layer_gradients_match_autograd(activation, batch_first, mask):
    model, x, mem, _, imported = _decoder(activation, batch_first, mask)
    feeds = imported.feeds(x=x.numpy(), mem=mem.numpy())
    inputs = [x.requires_grad_(), mem.requires_grad_()]
    _check_gradients(imported, feeds, inputs, [model(*inputs)], model, min_params=8)


# ---------------------------------------------------------------- multi-head attention
class Attention(torch.nn.Module):
    """nn.MultiheadAttention with the masks as inputs: key_padding_mask (True: ignore that key)
    and attn_mask, both boolean or both additive; keys and values of their own widths."""

    def __init__(self):
        super().__init__()
        self.attention = torch.nn.MultiheadAttention(16, 4, batch_first=True, kdim=12, vdim=10)

    def forward(self, q, k, v, padding, mask):
        return self.attention(q, k, v, key_padding_mask=padding, attn_mask=mask)


def _attention(mask_kind):
    model = _perturbed(Attention())
    q, k, v = torch.randn(2, 4, 16), torch.randn(2, 7, 12), torch.randn(2, 7, 10)
    padding = torch.tensor([[False] * 5 + [True] * 2, [False] * 7])
    mask = torch.triu(torch.ones(4, 7, dtype=torch.bool), 5)
    if mask_kind == "additive":  # both masks of one kind, as PyTorch asks
        mask = torch.randn(4, 7).masked_fill(mask, float("-inf"))
        padding = torch.zeros(2, 7).masked_fill(padding, float("-inf"))
    args = (q, k, v, padding, mask)
    names = ["q", "k", "v", "padding", "mask"]
    data = _export(model, args, names)
    return model, args, data, gd.onnx.load(data), dict(zip(names, (a.numpy() for a in args)))


@pytest.mark.parametrize("mask_kind", ["boolean", "additive"])
def test_multihead_attention_with_masks_runs_like_pytorch(mask_kind):
    model, args, data, imported, feeds = _attention(mask_kind)
    expected = [y.detach().numpy() for y in model(*args)]  # the output and the mean weights
    _check_values(imported, data, imported.feeds(**feeds), expected)


def test_multihead_attention_gradients_match_autograd():
    model, args, _, imported, feeds = _attention("additive")
    inputs = [a.requires_grad_() for a in args[:3]]
    _check_gradients(imported, imported.feeds(**feeds), inputs, list(model(*inputs, *args[3:])),
                     model, min_params=2)


# ---------------------------------------------------------------- segmentation
class UNet(torch.nn.Module):
    """A small encoder-decoder: conv-BatchNorm-ReLU blocks, max-pooled down twice, up by
    bilinear (align_corners=False) then nearest interpolation, each skip connection
    concatenated, a 1 x 1 conv head giving 2 classes per pixel."""

    def __init__(self):
        super().__init__()
        self.down1, self.down2, self.bottom = _block(3, 8), _block(8, 16), _block(16, 16)
        self.up2, self.up1 = _block(32, 8), _block(16, 8)
        self.head = torch.nn.Conv2d(8, 2, 1)

    def forward(self, x):
        F = torch.nn.functional
        a = self.down1(x)
        b = self.down2(F.max_pool2d(a, 2))
        c = self.bottom(F.max_pool2d(b, 2))
        c = F.interpolate(c, scale_factor=2, mode="bilinear", align_corners=False)
        d = F.interpolate(self.up2(torch.cat([c, b], 1)), scale_factor=2, mode="nearest")
        return self.head(self.up1(torch.cat([d, a], 1)))


def _block(channels_in, channels_out):
    return torch.nn.Sequential(torch.nn.Conv2d(channels_in, channels_out, 3, padding=1),
                               torch.nn.BatchNorm2d(channels_out), torch.nn.ReLU())


@functools.cache
def _unet():
    """The UNet with perturbed weights, its BatchNorm statistics a random batch's (distinct
    per layer), exported once for the tests that share it."""
    model = UNet()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 1.0
    _perturbed(model)
    with torch.no_grad():
        model.train()(torch.randn(4, 3, 16, 20))
    model.eval()
    x = torch.randn(2, 3, 16, 20)
    data = _export(model, (x,), ["x"])
    return model, x, data, gd.onnx.load(data)


def test_segmentation_net_with_upsampling_runs_like_pytorch_and_onnxruntime():
    model, x, data, imported = _unet()
    with torch.no_grad():
        expected = model(x).numpy()
    assert expected.shape == (2, 2, 16, 20) and np.abs(expected).max() > 0.1
    _check_values(imported, data, imported.feeds(x=x.numpy()), [expected])


def test_segmentation_net_gradients_match_autograd():
    model, x, _, imported = _unet()
    x = x.clone().requires_grad_()
    _check_gradients(imported, imported.feeds(x=x.detach().numpy()), [x], [model(x)], model,
                     min_params=2)  # the head's: BatchNorm folds into the other convs


# ---------------------------------------------------------------- PyTorch's default exporter
class Encoder(torch.nn.Module):
    """An encoder layer over a causal mask: at opset 23 PyTorch's default (dynamo) exporter
    writes its attention as one ONNX Attention node."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)

    def forward(self, x):
        return self.layer(x, src_mask=_causal(x.shape[1]), is_causal=True)


def test_dynamo_export_with_attention_runs_and_differentiates_like_pytorch():
    pytest.importorskip("onnxscript")
    model, x = _perturbed(Encoder()), torch.randn(2, 5, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = torch.onnx.export(model, (x,), dynamo=True, opset_version=23,
                                 verbose=False).model_proto.SerializeToString()
    assert "Attention" in {n.op_type for n in onnx.load_from_string(data).graph.node}
    _check_like_pytorch(model, x, data, min_params=0)


# ---------------------------------------------------------------- activations, norms, losses
class Zoo(torch.nn.Module):
    """The activations and normalizations PyTorch's exporter writes as ONNX operators of their
    own at opset 20 (PRelu, Split, Elu, Selu, InstanceNormalization (GroupNorm's too), HardSwish,
    HardSigmoid, Celu, Gelu, DepthToSpace), between convolutions."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.prelu = torch.nn.PReLU(8)
        self.instance = torch.nn.InstanceNorm2d(8, affine=True)
        self.group = torch.nn.GroupNorm(2, 8)
        self.shuffle = torch.nn.PixelShuffle(2)

    def forward(self, x):
        F = torch.nn.functional
        a, b = torch.split(self.prelu(self.conv(x)), [3, 5], dim=1)
        y = self.instance(torch.cat([F.elu(a, 0.5), F.selu(b)], 1))
        y = F.hardswish(y) + F.hardsigmoid(y) + F.celu(y, 1.5) + F.gelu(y, approximate="tanh")
        return self.shuffle(self.group(y))


def test_activation_and_normalization_zoo_runs_and_differentiates_like_pytorch():
    model, x = _perturbed(Zoo()), torch.randn(2, 3, 8, 8)
    data = _export(model, (x,), ["x"], opset=20)
    ops = {node.op_type for node in onnx.load_from_string(data).graph.node}
    assert {"PRelu", "Split", "Elu", "Selu", "InstanceNormalization", "HardSwish", "HardSigmoid",
            "Celu", "Gelu", "DepthToSpace"} <= ops
    _check_like_pytorch(model, x, data, min_params=4)  # PReLU's, GroupNorm's weights: renamed


class Losses(torch.nn.Module):
    """cross_entropy with class weights and an ignored class (SoftmaxCrossEntropyLoss) and
    nll_loss summed (SoftmaxCrossEntropyLoss of log-probabilities), over (N, C, d) scores."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(1.5))
        self.register_buffer("weight", torch.tensor([1.0, 2.0, 0.5, 1.5]))

    def forward(self, logits, target):
        F, logits = torch.nn.functional, logits * self.scale
        return (F.cross_entropy(logits, target, self.weight, ignore_index=2)
                + F.nll_loss(F.log_softmax(logits, 1), target, reduction="sum"))


def test_losses_import_and_differentiate_like_pytorch():
    model = Losses()
    logits = torch.randn(5, 4, 3)
    target = torch.tensor([[0, 1, 2], [3, 2, 1], [1, 1, 0], [2, 3, 3], [0, 0, 1]])
    data = _export(model, (logits, target), ["logits", "target"], opset=20)
    assert "SoftmaxCrossEntropyLoss" in {n.op_type for n in onnx.load_from_string(data).graph.node}
    imported = gd.onnx.load(data)
    feeds = imported.feeds(logits=logits.numpy(), target=target.numpy())
    with torch.no_grad():
        expected = model(logits, target).numpy()
    _check_values(imported, data, feeds, [expected])
    logits = logits.clone().requires_grad_()
    _check_gradients(imported, feeds, [logits], [model(logits, target)], model, min_params=1)


# ---------------------------------------------------------------- recurrent
RECURRENT = {
    "lstm": lambda: torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True),
    "gru": lambda: torch.nn.GRU(3, 5, num_layers=2),
    "rnn_relu": lambda: torch.nn.RNN(3, 4, nonlinearity="relu", bidirectional=True),
}


class Recurrent(torch.nn.Module):
    """A recurrent layer's outputs and final hidden state (PyTorch's exporter writes ONNX's
    LSTM, GRU and RNN, one node per layer, its gates reordered)."""

    def __init__(self, kind):
        super().__init__()
        self.layer = RECURRENT[kind]()

    def forward(self, x):
        y, state = self.layer(x)
        return y, state[0] if isinstance(state, tuple) else state


@pytest.mark.parametrize("kind", sorted(RECURRENT))
def test_recurrent_layer_runs_and_differentiates_like_pytorch(kind):
    model, x = _perturbed(Recurrent(kind)), torch.randn(2, 5, 3)
    data = _export(model, (x,), ["x"])
    operator = {"lstm": "LSTM", "gru": "GRU", "rnn_relu": "RNN"}[kind]
    assert operator in {n.op_type for n in onnx.load_from_string(data).graph.node}
    # only the input's gradient: the exporter reorders the gates into new, unnamed weights
    _check_like_pytorch(model, x, data, min_params=0)


# ---------------------------------------------------------------- torchvision
def _torchvision_models():
    """torchvision.models. A torchvision whose C extension cannot load beside this torch (the
    CUDA wheel beside a CPU torch) fails at import, registering fake kernels for its detection
    ops; declaring those two ops first lets it import: the models need none of its C code."""
    if importlib.util.find_spec("torchvision") is None:
        pytest.skip("torchvision is not installed")
    try:
        return importlib.import_module("torchvision.models")
    except RuntimeError as e:
        if "torchvision::nms" not in str(e):
            raise
    for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
        del sys.modules[name]
    global _TORCHVISION_OPS
    _TORCHVISION_OPS = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        _TORCHVISION_OPS.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    return importlib.import_module("torchvision.models")


_TORCHVISION_OPS = None  # the declared ops live as long as this library object


@functools.cache
def _vision(name, shape):
    """torchvision's `name` with random weights in eval mode, its BatchNorm statistics those of
    a random batch (at initialization they would shrink the activations to nothing); exported
    once for the tests that share it."""
    torch.manual_seed(0)
    model = getattr(_torchvision_models(), name)(weights=None)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.momentum = 1.0  # the running statistics become the batch's
    with torch.no_grad():
        model.train()(torch.randn(8, *shape[1:]))
    model.eval()
    x = torch.randn(shape)
    data = _export(model, (x,), ["x"])
    return model, x, data, gd.onnx.load(data)


VISION = {"resnet18": (1, 3, 64, 64), "mobilenet_v2": (1, 3, 64, 64),
          "squeezenet1_0": (2, 3, 64, 64), "efficientnet_b0": (1, 3, 64, 64)}


@pytest.mark.parametrize("name", sorted(VISION))
def test_torchvision_model_runs_like_pytorch_and_onnxruntime(name):
    model, x, data, imported = _vision(name, VISION[name])
    with torch.no_grad():
        expected = model(x).numpy()
    assert np.abs(expected).max() > 0.1  # activations of a size to compare
    _check_values(imported, data, imported.feeds(x=x.numpy()), [expected], rtol=1e-4)


def test_resnet18_input_gradient_matches_autograd():
    model, x, _, imported = _vision("resnet18", VISION["resnet18"])
    x, probe = x.clone().requires_grad_(), torch.randn(1, 1000)
    (model(x) * probe).sum().backward()
    loss = gd.sum(imported.outputs[0] * probe.numpy())
    (dx,) = gd.evaluate(gd.grad(loss, imported.inputs), imported.feeds(x=x.detach().numpy()))
    np.testing.assert_allclose(dx, x.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_resnet18_with_a_dynamic_batch_runs_at_two_sizes():
    model, x, _, _ = _vision("resnet18", VISION["resnet18"])
    data = _export(model, (x,), ["x"], {"x": {0: "batch"}})
    imported = gd.onnx.load(data)
    assert imported.inputs[0].shape == (None, 3, 64, 64)
    fn = gd.compile(list(imported.outputs))
    saved = gd.onnx.save({"y": imported.outputs[0]}, params=imported.params)
    for batch in (1, 2):
        x = torch.randn(batch, 3, 64, 64)
        with torch.no_grad():
            expected = model(x).numpy()
        tolerance = {"rtol": 1e-4, "atol": 1e-4 * np.abs(expected).max()}
        (got,) = fn(imported.feeds(x=x.numpy()))
        np.testing.assert_allclose(got, expected, **tolerance)
        (got,) = _onnxruntime(saved.SerializeToString(), {"x": x.numpy()})
        np.testing.assert_allclose(got, expected, **tolerance)
