"""Inside an ONNX model: a small PyTorch CNN exported to ONNX, imported into graphdl, drawn
with the forward value and the gradient on every edge, one backward step through its
convolution narrated, and forward + backward compiled to a readable NumPy module.

    python examples/onnx_inside.py [--out build]

Writes build/onnx_inside.onnx (PyTorch's export), build/onnx_inside.png (the drawing),
build/onnx_inside_step.py (forward + backward as NumPy source, with its .npz of weights when
needed) and build/onnx_inside_grad.onnx (the gradient graph exported back to ONNX).
Needs torch and onnx (pip install graphdl[onnx]); Graphviz's `dot` for the PNG.
"""

from __future__ import annotations

import argparse
import os
import warnings

import numpy as np
import torch
from torch import nn

import graphdl as gd


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(2 * 3 * 3, 3)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.conv(x)), 2)
        return self.fc(torch.flatten(x, 1))


def export(path):
    torch.manual_seed(0)
    with warnings.catch_warnings():  # the legacy (TorchScript) exporter says it is legacy
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(SmallCNN().eval(), (torch.zeros(1, 1, 8, 8),), path, dynamo=False,
                          do_constant_folding=False, input_names=["image"],
                          output_names=["logits"])


def main(out):
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "onnx_inside.onnx")
    export(path)
    model = gd.onnx.load(path)
    (logits,) = model.outputs
    label = gd.input("label", (1,), "int64")
    loss = gd.softmax_cross_entropy(logits, label).named("loss")
    image = np.random.default_rng(0).standard_normal((1, 1, 8, 8)).astype(np.float32)
    values = {**model.feeds(image=image), "label": np.array([2])}  # the loss's own input
    print(f"imported {len(gd.topological_order(model.outputs))} graph nodes; parameters: "
          + ", ".join(f"{k} {v.shape}" for k, v in model.params.items()))

    drawing = gd.draw(loss, values)
    try:
        drawing.render(outfile=os.path.join(out, "onnx_inside.png"), cleanup=True)
        print(f"drawing: {os.path.join(out, 'onnx_inside.png')}")
    except gd.DotNotFound as e:
        print(f"no drawing ({e})")

    narration = str(gd.explain(loss, values, closed_form=False)).split("\n\n")
    conv_step = next(block for block in narration if "gate conv2d" in block)
    print(f"\nOne backward step through the convolution:\n{conv_step}")

    params = [model.nodes[name] for name in model.params]
    grads = gd.grad(loss, params)
    fn = gd.compile([loss, *grads])
    fn.save(os.path.join(out, "onnx_inside_step.py"))
    results = fn(**values)
    print(f"\nloss {results[0]:.4f}; compiled forward + backward saved to "
          f"{os.path.join(out, 'onnx_inside_step.py')}")
    gd.onnx.save({"loss": loss, **{f"d_{n}": g for n, g in zip(model.params, grads)}},
                 os.path.join(out, "onnx_inside_grad.onnx"), params=model.params)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build")
    main(parser.parse_args().out)
