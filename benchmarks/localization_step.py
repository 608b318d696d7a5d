"""The classification + localization CNN (examples/localization.py) trained by graphdl and by
PyTorch CPU eager side by side: the same architecture, the same initial weights (graphdl's,
copied into torch), the same canvases, minibatches and Adam schedule: the example's, the rate
LR divided by 10 after 70 % and again after 90 % of the steps.

Each repetition takes one training step in each framework (the order alternating), timed; the
table gives the median step times and the median of the per-step ratios, then both models'
test accuracy, mean IoU and IoU >= 0.5 after the same number of steps (they should agree within
2 points: float32 rounding makes the trajectories drift apart, not the results). The initial
gradients are also compared.

Both run on --threads threads (default 1: OpenBLAS through threadpoolctl, torch by
`set_num_threads`). On a shared 2-core machine OpenBLAS's worker threads, spinning for cores
that other processes hold, made graphdl's convolution products up to 100x slower with 2 threads
than with 1 (a 16x16 conv: 248 ms vs 1.3 ms), which would measure the machine, not graphdl.

    python benchmarks/localization_step.py [--steps N] [--test N] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle torch threads must not spin

import localization as L
import machine  # benchmarks/machine.py (this script's folder is on the path)
import torch
import torch.nn.functional as F

import graphdl as gd


def _forward(t, x):
    """The network in torch: (class scores, normalised boxes) of images x."""
    h = x
    for k, (_, _, stride, pad, pool) in enumerate(L.CONVS, 1):
        h = F.relu(F.conv2d(h, t[f"c{k}w"], t[f"c{k}b"], stride=stride, padding=pad))
        h = F.max_pool2d(h, 2) if pool else h
    pooled = F.max_pool2d(h, h.shape[-1]).reshape(len(h), -1)
    trunk = F.relu(h.reshape(len(h), -1) @ t["f1w"] + pooled @ t["f1g"] + t["f1b"])
    return trunk @ t["clsw"] + t["clsb"], trunk @ t["boxw"] + t["boxb"]


def _torch_loss(t, x, y, box):
    scores, pred = _forward(t, torch.from_numpy(x))
    return F.cross_entropy(scores, torch.from_numpy(y)) + L.BOX_WEIGHT * F.smooth_l1_loss(
        pred, torch.from_numpy(box), beta=L.BETA)


def torch_model(params):
    """(step(x, y, t) -> loss, predict(x) -> (scores, boxes), tensors) with `params` copied."""
    t = {name: torch.tensor(v, requires_grad=True) for name, v in params.items()}
    opt = torch.optim.Adam(list(t.values()), lr=L.LR)

    def step(x, y, box, lr=L.LR):
        opt.param_groups[0]["lr"] = lr
        return machine.torch_step(opt, _torch_loss(t, x, y, box))

    def predict(x):
        with torch.no_grad():
            scores, pred = _forward(t, torch.from_numpy(x))
        return scores.numpy(), pred.numpy()

    return step, predict, t


def first_gradient_gap(params, batch):
    """The largest difference between graphdl's and torch's gradients at the initial weights,
    relative to the largest gradient of the same parameter. (Adam's first update is ±lr
    wherever a gradient is nonzero, so comparing updates would compare signs of rounding.)"""
    x, y, box = batch
    names, loss, _, _ = L.declare()
    grads = gd.compile(gd.grad(loss, list(names.values())))(x=x, y=y, t=box, **params)
    _, _, t = torch_model(params)
    _torch_loss(t, x, y, box).backward()
    return max(float(np.max(np.abs(g - t[name].grad.numpy())) / np.max(np.abs(g)))
               for name, g in zip(names, grads, strict=True))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps (default 200)")
    parser.add_argument("--test", type=int, default=2000, help="test canvases (default 2000)")
    parser.add_argument("--threads", type=int, default=1, help="threads of each (default 1)")
    args = parser.parse_args()
    limited = machine.limit_threads(args.threads)
    print(f"graphdl {machine.source_version()} on {machine.cpu_model()}, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads); {limited}")
    params = L.init_params(np.random.default_rng(L.SEED))
    train = L.canvases("train", args.steps * L.BATCH, seed=1)
    test = L.canvases("test", args.test, seed=L.SEED)
    order = np.random.default_rng(L.SEED).permutation(len(train[0]))
    batches = [tuple(a[order[i:i + L.BATCH]] for a in train)
               for i in range(0, len(order), L.BATCH)]
    print(f"initial gradients, largest difference: {first_gradient_gap(params, batches[0]):.1e}"
          " of the largest gradient (float32)")

    train_step, predict, state = L.build()
    ours = {k: v.copy() for k, v in params.items()}
    torch_step, torch_predict, _ = torch_model(params)
    runs = [("graphdl", lambda x, y, box, lr: train_step(x=x, y=y, t=box, lr=lr, **ours, **state)),
            ("torch", torch_step)]
    times = {"graphdl": [], "torch": []}
    for i, batch in enumerate(batches):
        lr = L.learning_rate(i + 1, len(batches))  # the example's decay, over steps
        for name, run in runs if i % 2 == 0 else runs[::-1]:
            start = time.perf_counter()
            run(*batch, lr)
            times[name].append(time.perf_counter() - start)
    warm = slice(min(5, len(batches) - 1), None)  # the first steps compile / warm up
    ratio = statistics.median(g / t for g, t in zip(times["graphdl"][warm],
                                                    times["torch"][warm], strict=True))
    results = {"graphdl": L.evaluate(predict, ours, test),
               "torch": L.evaluate(_as_compiled(torch_predict), {}, test)}
    print(f"\n{len(batches)} steps of batch {L.BATCH} (lr {L.LR:g}, / 10 after "
          f"{' and '.join(f'{f:.0%}' for f in L.DECAY_AT)} of them), {args.test} test canvases")
    print(f"{'':10} {'step ms':>9} {'accuracy':>9} {'mean IoU':>9} {'IoU>=0.5':>9}")
    for name in ("graphdl", "torch"):
        m = results[name]
        print(f"{name:10} {1e3 * statistics.median(times[name][warm]):9.1f} "
              f"{m['accuracy']:9.2%} {m['mean_iou']:9.3f} {m['iou50']:9.2%}")
    print(f"graphdl / torch step time: median ratio {ratio:.2f}")
    gaps = {k: abs(results["graphdl"][k] - results["torch"][k]) for k in results["torch"]}
    print("metric gaps (points): " + ", ".join(f"{k} {100 * v:.1f}" for k, v in gaps.items())
          + ("  (all within 2)" if max(gaps.values()) <= 0.02 else "  (NOT all within 2)"))


def _as_compiled(torch_predict):
    """torch's predict with the compiled function's keyword signature (x=..., **params)."""
    return lambda x, **_: torch_predict(x)


if __name__ == "__main__":
    main()
