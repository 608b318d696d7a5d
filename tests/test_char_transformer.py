"""examples/char_transformer.py against the same GPT in PyTorch (benchmarks/char_transformer.py):
from the same initial weights on the same batches, the gradient of every parameter and a few Adam
steps' losses and weights agree, tightly in float64 and within rounding in float32."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import graphdl as gd

torch = pytest.importorskip("torch")

from benchmarks import char_transformer as bench  # after the torch check: it imports torch

ct = bench.ct  # examples/char_transformer.py, as the benchmark imports it

CONFIG = ct.Config(layers=2, heads=4, dim=16, context=8, batch=3, lr=1e-2, seed=3)
TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"
# relative to each gradient's largest entry and to each loss. Measured: float64 1e-15; float32
# 6e-7 (gradients), 1.5e-7 (losses), and the weights after 4 Adam steps 6e-5·lr apart
TOLERANCE = {"float64": 1e-10, "float32": 2e-5}


def _data(dtype):
    vocab = ct.Vocab(TEXT)
    return len(vocab), vocab.encode(TEXT), ct.init_params(CONFIG, len(vocab), dtype)


@pytest.mark.parametrize("gelu", ["tanh", "none"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_parameter_gradient_equals_pytorchs(dtype, gelu):
    config = dataclasses.replace(CONFIG, gelu=gelu)
    vocab, ids, params = _data(dtype)
    x, y = next(ct.batches(ids, config))
    loss, _, _, inputs, _, _ = ct.declare(config, vocab, config.batch, dtype)
    names = list(inputs)
    fn = gd.compile([loss, *gd.grad(loss, [inputs[n] for n in names])])
    got = fn(x=x, y=y, **params)
    tp = bench.torch_params(params)
    want = bench.torch_loss(tp, x, y, config)
    want.backward()
    tol = TOLERANCE[dtype]
    np.testing.assert_allclose(got[0], want.item(), rtol=tol)
    largest = max(float(np.max(np.abs(tp[n].grad.numpy()))) for n in names)
    for name, g in zip(names, got[1:], strict=True):
        w = tp[name].grad.numpy()
        # a key bias shifts all of a query's scores alike, which softmax ignores: its gradient
        # is 0 but for rounding in both, compared with the largest gradient's scale instead
        scale = largest if name.endswith("attn.k.bias") else np.max(np.abs(w))
        assert np.max(np.abs(g - w)) <= tol * scale, name


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_adam_steps_follow_pytorchs(dtype):
    vocab, ids, params = _data(dtype)
    step, state = ct.compile_step(CONFIG, vocab, {"backend": "numpy"}, dtype)
    tp = bench.torch_params(params)
    opt = torch.optim.Adam(tp.values(), lr=CONFIG.lr)
    tol = TOLERANCE[dtype]
    for _, (x, y) in zip(range(4), ct.batches(ids, CONFIG)):
        got = float(step(x=x, y=y, **params, **state))
        opt.zero_grad()
        want = bench.torch_loss(tp, x, y, CONFIG)
        want.backward()
        opt.step()
        np.testing.assert_allclose(got, want.item(), rtol=tol)
    for name, value in params.items():  # Adam's steps are about lr each: compare to lr
        want = tp[name].detach().numpy()
        if name.endswith("attn.k.bias"):  # its gradients are rounding noise (see above), which
            # Adam divides by their own size: both stay near 0, each its own way
            assert max(np.max(np.abs(value)), np.max(np.abs(want))) < CONFIG.lr / 10
            continue
        np.testing.assert_allclose(value, want, rtol=0,
                                   atol=CONFIG.lr * (1e-8 if dtype == "float64" else 1e-3),
                                   err_msg=name)


def test_batches_and_weights_are_the_seeds():
    _, ids, params = _data("float32")
    again = ct.init_params(CONFIG, len(ct.Vocab(TEXT)))
    assert all(np.array_equal(params[n], again[n]) for n in params)
    (x1, y1), (x2, y2) = (next(ct.batches(ids, CONFIG)) for _ in range(2))
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    np.testing.assert_array_equal(x1[:, 1:], y1[:, :-1])  # y: the next characters
