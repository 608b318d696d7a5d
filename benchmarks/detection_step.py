"""The grid detector of examples/detection.py in graphdl and in PyTorch CPU eager: step time and
final COCO mAP after the same training.

The PyTorch model is the same network (the example's BLOCKS), started from the same arrays
(the example's `init_params`), with the same loss written with torch.nn.functional
(binary_cross_entropy_with_logits and smooth_l1_loss summed, cross-entropy on one-hot rows
summed over the object cells, all divided by the number of objects), torch.optim.Adam with the
example's learning rate, and fed the same batches in the same order.

    step time  one batch (BATCH canvases) fed to both; after a warm-up, one step each per
               repetition, the order alternating; the median of the per-repetition ratios
               graphdl / torch (wall and CPU time) is printed
    metrics    both trained for --steps steps (default: the example's full run; 0 skips) on the
               same batches, then COCO mAP@0.5 and mAP@[.5:.95] on the same test canvases by
               pycocotools; the difference is expected within 2 points

Both use --threads threads (default 1: on shared cores, OpenBLAS's threads spin against other
processes). GRAPHDL_SMOKE=1 uses the example's tiny data and step count.

    PYTHONPATH=. python benchmarks/detection_step.py [--reps N] [--steps N] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import numpy as np
from machine import interleaved, limit_threads, torch_step

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

import data  # examples/data.py
import detection as E  # examples/detection.py
import detection_lib as D


def torch_model(params):
    """(step, predict) of the example's model in PyTorch eager, from copies of `params`."""
    import torch
    import torch.nn.functional as F

    t = {name: torch.tensor(v, requires_grad=True) for name, v in params.items()}
    opt = torch.optim.Adam(list(t.values()), lr=E.LR)

    def network(x):
        h = x
        for name, _, kernel, pooled in E.BLOCKS:
            h = F.conv2d(h, t[f"{name}.w"], t[f"{name}.b"], padding=kernel // 2)
            if name != "head":
                h = F.relu(h)
            h = F.max_pool2d(h, 2) if pooled else h
        return h

    def step(x, objects, boxes, classes):
        x, objects, boxes, classes = map(torch.from_numpy, (x, objects, boxes, classes))
        out = network(x)
        n_objects = objects.sum()
        objectness = F.binary_cross_entropy_with_logits(out[:, 0], objects, reduction="sum")
        box = F.smooth_l1_loss(out[:, 1:D.BOX_CHANNELS] * objects[:, None], boxes,
                               reduction="sum")
        logp = F.log_softmax(out[:, D.BOX_CHANNELS:].permute(0, 2, 3, 1), dim=-1)
        cls = -(classes * logp).sum() / n_objects
        return torch_step(opt, (objectness + E.BOX_WEIGHT * box) / n_objects + cls)

    def predict(x):
        with torch.no_grad():
            return network(torch.from_numpy(x)).numpy()

    return step, predict


def graphdl_model(params):
    """(step, predict) of the example's compiled graphdl model, on `params` (updated in place)."""
    train_step, predict, state, _ = E.build()
    return (lambda **f: train_step(**f, **params, **state),
            lambda x: predict(x=x, **params))


def main():
    sizes = E.SMOKE if data.is_smoke() else E.FULL
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=10 if data.is_smoke() else 100)
    parser.add_argument("--steps", type=int, default=sizes["steps"],
                        help=f"training steps for the metrics (default {sizes['steps']}; 0: none)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    blas = limit_threads(args.threads)
    print(f"grid detector step, batch {E.BATCH}, 1x64x64, float32; torch {torch.__version__}, "
          f"numpy {np.__version__}; {args.threads} thread(s), {blas}")
    train_set, test, targets = E.datasets(sizes)
    rng = np.random.default_rng(E.SEED)
    params = E.init_params(rng)  # as the example: the batches' generator continues from here

    idx = np.arange(E.BATCH)
    batch = {"x": train_set.images[idx], **{k: v[idx] for k, v in E.feeds(targets).items()}}
    g_step = graphdl_model({k: v.copy() for k, v in params.items()})[0]
    t_step = torch_model(params)[0]
    med, ratio, cpu_ratio = interleaved(lambda: g_step(**batch), lambda: t_step(**batch),
                                        args.reps, warmup=5)
    print(f"graphdl: median {med['g'] * 1e3:6.1f} ms (CPU {med['g_cpu'] * 1e3:6.1f} ms)   "
          f"torch: median {med['t'] * 1e3:6.1f} ms (CPU {med['t_cpu'] * 1e3:6.1f} ms)")
    print(f"ratio graphdl / torch, median of {args.reps} interleaved repetitions: wall "
          f"{ratio:.2f}x, CPU {cpu_ratio:.2f}x")
    if args.steps:
        compare_training(params, rng, train_set, test, targets, args.steps)


def compare_training(params, rng, train_set, test, targets, steps):
    """Train both from `params` on the same batches; print both frameworks' test mAPs."""
    results = {}
    for name, make in (("graphdl", graphdl_model), ("torch", torch_model)):
        step, predict = make({k: v.copy() for k, v in params.items()})
        start = time.perf_counter()
        losses = E.train(step, train_set, targets, steps, copy.deepcopy(rng), report=steps)
        results[name] = E.evaluate(predict, test)[0]
        print(f"{name}: {steps} steps in {(time.perf_counter() - start) / 60:.1f} min, final "
              f"loss {np.mean(losses[-100:]):.4f}; mAP@0.5 {results[name]['mAP@0.5']:.3f}, "
              f"mAP@[.5:.95] {results[name]['mAP@[.5:.95]']:.3f}")
    for key in ("mAP@0.5", "mAP@[.5:.95]"):
        gap = 100 * (results["graphdl"][key] - results["torch"][key])
        print(f"{key}: graphdl - torch = {gap:+.1f} points "
              f"({'within' if abs(gap) <= 2 else 'OUTSIDE'} 2 points)")


if __name__ == "__main__":
    main()
