"""Convolution input gradients in graphdl's NumPy backend against PyTorch CPU.

conv2d's input gradient (`conv2d_input_grad`: one matrix product Wᵀg into columns, then
col2im) is also `conv_transpose2d`'s forward pass, conv1d is conv2d over a height of 1,
conv3d a sum of conv2d's and conv_transpose3d a sum of conv_transpose2d's.
The cases, float32:

    convT fwd   conv_transpose2d(x, w), DCGAN / U-Net up-sampling layers (stride 2, kernel 4
                or 2, 16-64 channels, 8-32 pixels)
    convT grad  its gradients dx, dw for an output gradient r (graphdl: `gd.grad` of
                sum(y * r); torch: autograd with r, the forward pass included on both sides)
    conv1d      conv1d(x, w) forward, and its gradients as convT grad's
    conv3d      conv3d(x, w) forward (kD conv2d's of N·D_out images), and its gradients
    convT3d     conv_transpose3d(x, w) (kD transposed 2-D convolutions of N·D images), 3-D
                U-Net and video GAN up-sampling layers, forward and gradients
    conv2d dx   conv2d's input gradient alone (graphdl: `gd.grad` of sum(conv2d(x, w) * r)
                with respect to x, which needs no forward pass; torch:
                `torch.nn.grad.conv2d_input`), LeNet-like and larger layers

graphdl's generated `run(*arrays)` is timed. Each case first checks that both give the same
values (largest difference relative to the largest value), then, after a warm-up, runs both
interleaved (one call each per repetition, the order alternating); the medians and the median of
the per-repetition ratios are printed. Both use the same number of threads (--threads, default
1; NumPy's OpenBLAS limited through threadpoolctl): two OpenBLAS threads spinning against other
jobs on a shared 2-core machine make a run tens of times slower and measure nothing.

    PYTHONPATH=. python benchmarks/conv_transpose.py [--reps N] [--threads N] [--only TEXT]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from machine import cpu_model, interleaved, limit_threads, source_version

import graphdl as gd

# (N, C_in, H, W), C_out, kernel, stride, padding
TRANSPOSED = [
    ((16, 64, 16, 16), 32, 4, 2, 1),  # DCGAN generator layer
    ((16, 32, 32, 32), 16, 4, 2, 1),
    ((64, 16, 8, 8), 8, 4, 2, 1),
    ((16, 64, 16, 16), 32, 2, 2, 0),  # U-Net up-sampling
    ((16, 32, 32, 32), 16, 2, 2, 0),
]
# (N, C_in, D, H, W), C_out, kernel, stride, padding: a 3-D U-Net's and a video GAN's up-sampling
TRANSPOSED3D = [((2, 32, 8, 16, 16), 16, 2, 2, 0), ((4, 32, 4, 14, 14), 16, 4, 2, 1)]
# (N, C, L), O, kernel, padding
CONV1D = [((16, 64, 256), 64, 5, 2), ((64, 16, 1024), 32, 9, 4)]
# (N, C, D, H, W), O, kernel, padding: a video clip's layer (C3D-like), a medical volume's
CONV3D = [((4, 16, 8, 28, 28), 32, 3, 1), ((2, 8, 16, 32, 32), 16, 3, 1)]
# (N, C, H, W), O, kernel, stride, padding
CONV2D_DX = [
    ((64, 6, 14, 14), 16, 5, 1, 0),  # LeNet's second layer
    ((64, 3, 32, 32), 6, 5, 1, 0),  # LeNet's first layer
    ((16, 64, 32, 32), 64, 3, 1, 1),
    ((16, 32, 32, 32), 64, 4, 2, 1),  # a DCGAN discriminator layer
]


def cases(rng):
    """(name, graphdl run and its arrays, torch callable, torch's result as NumPy)."""
    import torch
    import torch.nn.functional as F

    def array(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    for xs, o, k, s, p in TRANSPOSED + TRANSPOSED3D:
        dims = len(xs) - 2
        ours, theirs = gd.conv_transpose2d, F.conv_transpose2d
        if dims == 3:
            ours, theirs = gd.conv_transpose3d, F.conv_transpose3d
        x, w = array(*xs), array(xs[1], o, *(k,) * dims)
        tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
        y = theirs(tx, tw, stride=s, padding=p)
        r = array(*y.shape)
        tag, kind = f"{xs} -> {o}, k{k} s{s} p{p}", "convT" if dims == 2 else "convT3d"
        xi, wi = gd.input("x", x.shape, "float32"), gd.input("w", w.shape, "float32")
        yi = ours(xi, wi, stride=s, padding=p)
        yield (f"{kind} fwd  {tag}", compiled([yi], {"x": x, "w": w}),
               lambda tx=tx, tw=tw, s=s, p=p, f=theirs: f(tx, tw, stride=s, padding=p),
               [y.detach().numpy()])
        ri = gd.input("r", r.shape, "float32")
        grads = gd.grad(gd.sum(yi * ri), [xi, wi])
        tr = torch.tensor(r)

        def torch_grad(tx=tx, tw=tw, s=s, p=p, tr=tr, f=theirs):
            return torch.autograd.grad(f(tx, tw, stride=s, padding=p), [tx, tw], tr)

        yield (f"{kind} grad {tag}", compiled(grads, {"x": x, "w": w, "r": r}), torch_grad,
               [g.numpy() for g in torch_grad()])
    for name, shapes in (("conv1d", CONV1D), ("conv3d", CONV3D)):
        for xs, o, k, p in shapes:
            x, w = array(*xs), array(o, xs[1], *(k,) * (len(xs) - 2))
            yield from forward_and_grads(name, f"{xs} -> {o}, k{k} p{p}", x, w, p, array)
    for xs, o, k, s, p in CONV2D_DX:
        x, w = array(*xs), array(o, xs[1], k, k)
        tw = torch.tensor(w)
        r = array(*F.conv2d(torch.tensor(x), tw, stride=s, padding=p).shape)
        tr = torch.tensor(r)
        xi, wi = gd.input("x", x.shape, "float32"), gd.input("w", w.shape, "float32")
        ri = gd.input("r", r.shape, "float32")
        dx = gd.grad(gd.sum(gd.conv2d(xi, wi, stride=s, padding=p) * ri), xi)

        def torch_dx(xs=xs, tw=tw, tr=tr, s=s, p=p):
            return torch.nn.grad.conv2d_input(xs, tw, tr, stride=s, padding=p)

        yield (f"conv2d dx  {xs} -> {o}, k{k} s{s} p{p}",
               compiled([dx], {"x": x, "w": w, "r": r}), torch_dx, [torch_dx().numpy()])


def forward_and_grads(name, tag, x, w, padding, array):
    """conv1d's or conv3d's forward pass, and its gradients dx, dw for an output gradient r."""
    import torch

    ours, theirs = getattr(gd, name), getattr(torch.nn.functional, name)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    xi, wi = gd.input("x", x.shape, "float32"), gd.input("w", w.shape, "float32")
    yi = ours(xi, wi, padding=padding)
    with torch.no_grad():
        yield (f"{name:<10} {tag}", compiled([yi], {"x": x, "w": w}),
               lambda: theirs(tx.detach(), tw.detach(), padding=padding),
               [theirs(tx, tw, padding=padding).numpy()])
    r = array(*yi.shape)
    ri, tr = gd.input("r", r.shape, "float32"), torch.tensor(r)

    def torch_grad():
        return torch.autograd.grad(theirs(tx, tw, padding=padding), [tx, tw], tr)

    yield (f"{name} grad {tag}",
           compiled(gd.grad(gd.sum(yi * ri), [xi, wi]), {"x": x, "w": w, "r": r}),
           torch_grad, [g.numpy() for g in torch_grad()])


def compiled(outputs, feeds):
    """graphdl's generated `run` for `outputs` and its arguments, as a callable."""
    fn = gd.compile(outputs)
    fn(feeds)
    run = fn.specialize({name: np.shape(v) for name, v in feeds.items()}).run
    args = [feeds[name] for name in fn.input_names]
    return lambda: run(*args)


def disagreement(ours, theirs):
    """The largest difference over the outputs, relative to each output's largest value."""
    return max(float(np.max(np.abs(np.asarray(a) - b)) / max(np.max(np.abs(b)), 1e-30))
               for a, b in zip(ours, theirs))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=21)
    parser.add_argument("--threads", type=int, default=1, help="threads for both (default 1)")
    parser.add_argument("--only", default="", help="run only the cases whose name holds this")
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    blas = limit_threads(args.threads)
    print(f"convolution input gradients, float32; graphdl {source_version()}, torch "
          f"{torch.__version__}, numpy {np.__version__}; {args.threads} thread(s), {blas}; "
          f"{os.cpu_count()} CPUs ({cpu_model()}); medians of {args.reps} interleaved reps")
    print(f"{'case':<48} {'graphdl':>9} {'torch':>9} {'ratio':>6}  agreement")
    for name, mine, theirs, expected in cases(np.random.default_rng(0)):
        if args.only not in name:
            continue
        worst = disagreement(mine(), expected)
        med, ratio, _ = interleaved(mine, theirs, args.reps, warmup=3)
        print(f"{name:<48} {med['g'] * 1e3:6.2f} ms {med['t'] * 1e3:6.2f} ms {ratio:5.2f}x  "
              f"{worst:.0e}")


if __name__ == "__main__":
    main()
