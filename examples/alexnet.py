"""AlexNet as Krizhevsky, Sutskever and Hinton trained it on two GPUs, declared in graphdl.

The two-GPU split survives as `groups=2` in conv2, conv4 and conv5 (each half of the kernels sees
only the half of the channels on its own GPU); conv3 and the fully connected layers read both
halves. Input 3x227x227 (the paper's "224" needs 227 for its 55x55 first layer). Local response
normalization and dropout are left out (they change no shape and hold no parameters).

Prints a per-layer summary (output shape, parameters, FLOPs counted as 2 x multiply-accumulates)
and runs one forward and backward pass through the compiled code on a small random batch.

Run from the repository root:  python examples/alexnet.py [--batch N]
Smoke mode (batch 1):  GRAPHDL_SMOKE=1 python examples/alexnet.py
CUDA kernels instead of NumPy code:  --backend cuda (on an NVIDIA GPU through CuPy), with
--device cpu the same kernels on the CPU through graphdl's emulator (no GPU needed; slow).
"""

from __future__ import annotations

import argparse
import time

import data
import numpy as np
import smoke
import training

import graphdl as gd

# name, (out channels, in channels per group, kernel), stride, padding, groups, pool after
CONVS = [
    ("conv1", (96, 3, 11), 4, 0, 1, True),
    ("conv2", (256, 48, 5), 1, 2, 2, True),
    ("conv3", (384, 256, 3), 1, 1, 1, False),
    ("conv4", (384, 192, 3), 1, 1, 2, False),
    ("conv5", (256, 192, 3), 1, 1, 2, True),
]
FCS = [("fc6", 256 * 6 * 6, 4096), ("fc7", 4096, 4096), ("fc8", 4096, 1000)]


def declare():
    """The network: (logits, [(layer name, output node, weight, bias)], parameter inputs)."""
    x = gd.input("image", (None, 3, 227, 227))
    h, layers, params = x, [], []
    for name, (out, cin, k), stride, pad, groups, pool in CONVS:
        w, b = gd.input(name + "_w", (out, cin, k, k)), gd.input(name + "_b", (out,))
        h = gd.relu(gd.conv2d(h, w, b, stride=stride, padding=pad, groups=groups))
        layers.append((name, h, w, b))
        if pool:
            h = gd.max_pool2d(h, 3, stride=2)  # overlapping pooling: 3x3 windows, stride 2
            layers.append((f"  pool ({name})", h, None, None))
        params += [w, b]
    h = gd.reshape(h, (-1, 256 * 6 * 6))
    for name, n_in, n_out in FCS:
        w, b = gd.input(name + "_w", (n_in, n_out)), gd.input(name + "_b", (n_out,))
        h = h @ w + b
        if name != "fc8":
            h = gd.relu(h)
        layers.append((name, h, w, b))
        params += [w, b]
    return x, h, layers, params


def summary(layers):
    """Per-layer table; returns the totals (parameters, neurons, FLOPs per image)."""
    print(f"{'layer':<16}{'output (per image)':>22}{'parameters':>14}{'FLOPs':>16}")
    total_params = total_flops = neurons = 0
    for name, node, w, b in layers:
        shape = node.shape[1:]
        n_params = 0 if w is None else int(np.prod(w.shape) + np.prod(b.shape))
        if w is None:
            flops = 0
        elif len(w.shape) == 4:  # each output element: C/groups x kh x kw multiply-adds
            flops = 2 * int(np.prod(shape)) * int(np.prod(w.shape[1:]))
        else:
            flops = 2 * w.shape[0] * w.shape[1]
        if w is not None:
            neurons += int(np.prod(shape))
        total_params += n_params
        total_flops += flops
        counts = f"{n_params:>14,}{flops:>16,}" if w is not None else f"{'-':>14}{'-':>16}"
        print(f"{name:<16}{' x '.join(map(str, shape)):>22}{counts}")
    print(f"{'total':<16}{'':>22}{total_params:>14,}{total_flops:>16,}")
    return total_params, neurons, total_flops


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=None, help="default 4; 1 in smoke mode")
    training.add_backend_flags(parser)
    args = parser.parse_args()
    options = training.compile_options(parser, args)
    batch = args.batch or (1 if data.is_smoke() else 4)
    smoke.note("the same shapes, parameter and FLOP counts (they do not depend on the mode), and "
               "the loss, gradient norms and time of a second call, compiling excluded, on a "
               "batch of 4 (python examples/alexnet.py)")

    _, logits, layers, params = declare()
    n_params, neurons, flops = summary(layers)
    print(f"\n{n_params:,} parameters (the paper: '60 million'), {neurons:,} neurons, i.e. "
          f"outputs of the convolutional and fully connected layers (the paper: '650,000'); "
          f"{flops / 1e9:.2f} GFLOPs per image forward (2 x {flops // 2:,} multiply-adds).")

    labels = gd.input("label", (None,), "int64")
    loss = gd.softmax_cross_entropy(logits, labels)
    grads = gd.grad(loss, params)
    fn = gd.compile([loss, *grads], **options)

    rng = np.random.default_rng(0)
    feeds = {"image": rng.standard_normal((batch, 3, 227, 227)).astype(np.float32),
             "label": rng.integers(0, 1000, batch)}
    ones = {"conv2_b", "conv4_b", "conv5_b", "fc6_b", "fc7_b"}
    for p in params:  # the paper's initialization: N(0, 0.01) weights, some biases 1
        feeds[p.name] = (np.full(p.shape, float(p.name in ones), np.float32) if p.ndim == 1
                         else rng.standard_normal(p.shape, np.float32) * np.float32(0.01))
    start = time.perf_counter()
    loss_value, *grad_values = fn(feeds)
    compiled = elapsed = time.perf_counter() - start
    if not data.is_smoke():  # time a second call, without compiling
        start = time.perf_counter()
        loss_value, *grad_values = fn(feeds)
        elapsed = time.perf_counter() - start
    norms = {p.name: float(np.linalg.norm(g)) for p, g in zip(params, grad_values)}
    print(f"\nforward + backward on a batch of {batch} ({training.describe(options)}): "
          f"loss {float(loss_value):.3f} (chance level: ln 1000 = {np.log(1000):.3f}), "
          f"{elapsed:.2f} s "
          f"({3 * flops * batch / elapsed / 1e9:.1f} GFLOP/s counting backward as 2x forward); "
          f"first call, compiling included: {compiled:.2f} s{smoke.tag()}")
    print("gradient norms: " + ", ".join(f"{k} {v:.3g}" for k, v in norms.items()
                                          if k.endswith("_w")) + smoke.tag())
    assert all(np.isfinite(v) for v in norms.values())


if __name__ == "__main__":
    main()
