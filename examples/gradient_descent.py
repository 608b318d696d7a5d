"""Gradient descent drawn: plain SGD, SGD with momentum and Adam on a loss of two weights.

The lecture derives the step from the Taylor expansion: f(w + Δw) − f(w) ≈ ∇f·Δw, which is most
negative for Δw along −∇f, hence w' = w − η·∇f. `gd.descent_plot` draws it for a loss of two
scalars: the contour lines of the loss, the downhill direction −∇f on a grid (across the
contours), and each optimizer's path from one start, all computed by compiled graphdl functions
(the loss and its gradient on the grid; `gd.optim`'s compiled training steps for the paths).

The default loss is an elongated bowl, f = ½(w1² + 10·w2²): plain SGD zigzags across the narrow
valley, momentum overshoots and swings back, Adam's per-parameter scaling walks diagonally.
`--loss banana` is a Rosenbrock valley, (1 − w1)² + 10(w2 − w1²)², curved and flat along its
floor. The script also prints the lecture's first-order argument at the start: for a step
Δw = −η·∇f, the change ∇f·Δw predicts beside the change f makes, closer as η shrinks.

Run from the repository root:  python examples/gradient_descent.py [--loss bowl|banana]
    [--steps N] [--out build/gradient_descent]   (writes OUT.svg, and OUT.png with matplotlib;
    an OUT ending in .svg or .png: that file only)
It takes about a second; smoke mode (GRAPHDL_SMOKE=1) runs the same.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import numpy as np

import graphdl as gd

w1, w2 = gd.input("w1", (), "float64"), gd.input("w2", (), "float64")
LOSSES = {  # name -> (loss, start, optimizers, steps, descent_plot options)
    "bowl": ((0.5 * (w1 * w1 + 10 * w2 * w2)).named("f"), (-2.0, 1.0), {
        "sgd, lr 0.15": functools.partial(gd.optim.sgd, lr=0.15),
        "momentum 0.8, lr 0.03": functools.partial(gd.optim.sgd, lr=0.03, momentum=0.8),
        "adam, lr 0.3": functools.partial(gd.optim.adam, lr=0.3),
    }, 30, {}),
    "banana": (((1 - w1) ** 2 + 10 * (w2 - w1 * w1) ** 2).named("f"), (-1.2, 1.6), {
        "sgd, lr 0.02": functools.partial(gd.optim.sgd, lr=0.02),
        "momentum 0.9, lr 0.005": functools.partial(gd.optim.sgd, lr=0.005, momentum=0.9),
        "adam, lr 0.1": functools.partial(gd.optim.adam, lr=0.1),
    }, 150, {"xlim": (-2.0, 2.0), "ylim": (-0.6, 2.4), "spacing": "log"}),
}


def first_order_check(loss, start):
    """The lecture's argument at `start`: a step Δw = −η∇f changes f by ≈ ∇f·Δw = −η|∇f|², the
    closer the smaller the step (the loss and its gradient compiled)."""
    fn = gd.compile([loss, *gd.grad(loss, [w1, w2])])
    value, *gradient = (float(v) for v in fn(w1=start[0], w2=start[1]))
    for eta in (0.1, 0.01, 0.001):
        step = -eta * np.array(gradient)
        predicted = float(np.dot(gradient, step))
        actual = float(fn(w1=start[0] + step[0], w2=start[1] + step[1])[0]) - value
        print(f"  η = {eta:<6g} ∇f·Δw = {predicted:+10.6f}   f(w + Δw) − f(w) = {actual:+10.6f}   "
              f"ratio {actual / predicted:.4f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loss", choices=sorted(LOSSES), default="bowl")
    parser.add_argument("--steps", type=int, help="steps of each optimizer (default: the loss's)")
    parser.add_argument("--out", default="build/gradient_descent",
                        help="OUT.svg and OUT.png (PNG with matplotlib), or the one file named")
    args = parser.parse_args()
    loss, start, optimizers, steps, options = LOSSES[args.loss]
    steps = args.steps if args.steps is not None else steps
    plot = gd.descent_plot(loss, [w1, w2], optimizers, steps=steps, start=start, **options)

    print(f"{args.loss}: {steps} steps from w = {start}")
    for label, losses in plot.losses.items():
        w = plot.paths[label][-1]
        print(f"  {label:24s} ends at w = ({w[0]:+.4f}, {w[1]:+.4f}), loss {losses[-1]:.3g}")
    print("a step Δw = −η·∇f from the start, to first order (the lecture's Taylor argument):")
    first_order_check(loss, start)

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    one = args.out.endswith((".svg", ".png"))
    for path in [args.out] if one else [args.out + ".svg", args.out + ".png"]:
        try:
            print(f"wrote {plot.save(path)}")
        except ImportError as e:  # a PNG without matplotlib
            print(f"no PNG: {e}")


if __name__ == "__main__":
    main()
