"""Time `gd.onnx.save` on large graphs: it must be linear in the number of nodes.

    PYTHONPATH=. python benchmarks/onnx_export.py                 # MobileNetV2 + depthwise convs
    PYTHONPATH=. python benchmarks/onnx_export.py --groups 1024,2048,4096 --no-mobilenet

Two graphs, each exported as its forward pass and as its loss with every parameter's gradient:
MobileNetV2 (torchvision's layer list: 17 inverted-residual blocks, 3.5 M parameters, batch
norm folded into a per-channel scale and shift, as an exported inference model has it) at
224 × 224, built in graphdl; and one depthwise 3 × 3 convolution with G groups (its weight
gradient is G ONNX Convs, one per group). Prints ONNX nodes written and seconds; a linear
exporter's seconds per thousand nodes stay flat as G doubles.
"""

from __future__ import annotations

import argparse
import time

import graphdl as gd

# torchvision's MobileNetV2: (expansion t, output channels c, repeats n, first stride s)
INVERTED_RESIDUAL = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                     (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class Params:
    def __init__(self):
        self.nodes = []

    def __call__(self, name, shape):
        node = gd.input(f"p{len(self.nodes)}_{name}", shape, "float32")
        self.nodes.append(node)
        return node


def conv_bn(p, x, out, kernel=1, stride=1, groups=1, relu6=True):
    """Conv (no bias), batch norm folded into scale and shift, optional ReLU6."""
    c = x.shape[1]
    w = p("w", (out, c // groups, kernel, kernel))
    y = gd.conv2d(x, w, stride=stride, padding=kernel // 2, groups=groups)
    y = y * gd.reshape(p("scale", (out,)), (1, out, 1, 1)) + gd.reshape(p("shift", (out,)),
                                                                          (1, out, 1, 1))
    return gd.clip(y, 0.0, 6.0) if relu6 else y


def mobilenet_v2(batch=1, size=224, classes=1000):
    p = Params()
    x = gd.input("image", (batch, 3, size, size), "float32")
    y = conv_bn(p, x, 32, kernel=3, stride=2)
    for t, c, n, s in INVERTED_RESIDUAL:
        for k in range(n):
            stride, inp = (s if k == 0 else 1), y.shape[1]
            h = conv_bn(p, y, inp * t) if t != 1 else y
            h = conv_bn(p, h, inp * t, kernel=3, stride=stride, groups=inp * t)
            h = conv_bn(p, h, c, relu6=False)
            y = y + h if stride == 1 and inp == c else h
    y = conv_bn(p, y, 1280)
    features = gd.mean(y, axis=(2, 3))
    logits = features @ p("fc", (1280, classes)) + p("fc_bias", (classes,))
    loss = gd.softmax_cross_entropy(logits, gd.input("label", (batch,), "int64"))
    return logits, loss, p.nodes


def depthwise(groups, size=8):
    x = gd.input("x", (1, groups, size, size), "float32")
    w = gd.input("w", (groups, 1, 3, 3), "float32")
    y = gd.conv2d(x, w, padding=1, groups=groups)
    return y, gd.sum(y * y), [w]


def timed_save(outputs):
    start = time.perf_counter()
    model = gd.onnx.save(outputs)
    return len(model.graph.node), time.perf_counter() - start


def report(name, forward, loss, params):
    for kind, outputs in [("forward", [forward]), ("gradient", [loss, *gd.grad(loss, params)])]:
        nodes, seconds = timed_save(outputs)
        print(f"{name:<28} {kind:<9} {nodes:>8} ONNX nodes {seconds:8.2f} s "
              f"{1e3 * seconds / nodes:7.3f} ms per node", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", default="512,1024,2048",
                        help="depthwise group counts, comma-separated")
    parser.add_argument("--no-mobilenet", action="store_true")
    args = parser.parse_args()
    gd.onnx.save(gd.input("warm_up", (1,), "float32") * 2.0)  # imports onnx: not timed
    if not args.no_mobilenet:
        logits, loss, params = mobilenet_v2()
        report(f"MobileNetV2 ({len(params)} params)", logits, loss, params)
    for groups in map(int, args.groups.split(",")):
        report(f"depthwise conv, {groups} groups", *depthwise(groups))


if __name__ == "__main__":
    main()
