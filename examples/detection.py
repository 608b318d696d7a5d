"""A single-shot grid detector (YOLO-style, no anchors) on synthetic canvases of Fashion-MNIST
items, trained with Adam compiled by graphdl and evaluated with pycocotools (COCO mAP).

    64x64 canvas (examples/boxes_data.py: 1-4 items of 16-40 px, boxes (x, y, w, h))
      block1  conv 16@3x3 -> ReLU -> maxpool 2     16 x 32 x 32
      block2  conv 32@3x3 -> ReLU -> maxpool 2     32 x 16 x 16
      block3  conv 64@3x3 -> ReLU -> maxpool 2     64 x 8 x 8
      block4  conv 64@3x3 -> ReLU                  64 x 8 x 8
      head    conv (5 + 10)@1x1                    per cell: objectness, box, 10 class logits

Each object belongs to the cell holding its box centre (examples/detection_lib.py: targets,
decoding, NMS per class, COCO evaluation). The loss, divided by the number of objects in the
batch:
    objectness  binary cross-entropy with logits, summed over every cell
    box         BOX_WEIGHT * smooth L1 of (offsets, log-sizes), summed over the object cells
    class       softmax cross-entropy, summed over the object cells
The training step (forward, loss, gradients, Adam's update of parameters and state in place) is
one compiled function; a second gives the head's outputs for decoding.

Writes build/detection/predictions.png (test canvases, true boxes green, predicted red) and
build/detection/network.png (the network, each block drawn as one gate).

Measured (5,000 steps, 20,000 training canvases, 1,000 test canvases): test mAP@0.5 0.780,
mAP@[.5:.95] 0.460; 5.8 min of CPU time (16 min wall on 2 cores shared with other jobs).

Run from the repository root:  python examples/detection.py [--steps N]
(on cores shared with other work, OPENBLAS_NUM_THREADS=1 avoids OpenBLAS threads spinning
against the other processes: a step took ~6 s instead of ~0.1 s on 2 busy cores)
Smoke mode (tiny data, a few steps):  GRAPHDL_SMOKE=1 python examples/detection.py
CUDA kernels instead of NumPy code:  --backend cuda [--device cpu] (as the LeNet example).
"""

from __future__ import annotations

import argparse
import os
import time

import boxes_data
import data
import detection_lib as D
import numpy as np
import smoke
import training

import graphdl as gd

CLASSES = len(boxes_data.CLASS_NAMES)
GRID = D.Grid(cells=8, size=64, prior=24.0)
OBJECTS = (1, 4)
BATCH, LR, BOX_WEIGHT, SEED = 32, 2e-3, 5.0, 0
FULL = {"train": 20_000, "test": 1_000, "steps": 5_000}
SMOKE = {"train": 256, "test": 64, "steps": 30}
BLOCKS = [  # name, output channels, kernel, pooled
    ("block1", 16, 3, True), ("block2", 32, 3, True), ("block3", 64, 3, True),
    ("block4", 64, 3, False), ("head", D.BOX_CHANNELS + CLASSES, 1, False)]
OUT = "build/detection"


def shapes():
    """{parameter name: shape}: each block's weight "<block>.w" (OIHW) and bias "<block>.b"."""
    result, channels = {}, 1
    for name, out, kernel, _ in BLOCKS:
        result[f"{name}.w"], result[f"{name}.b"] = (out, channels, kernel, kernel), (out,)
        channels = out
    return result


def init_params(rng):
    """He-normal weights (ReLU layers), zero biases; float32. The benchmark's PyTorch model
    starts from these arrays."""
    params = {}
    for name, shape in shapes().items():
        fan_in = int(np.prod(shape[1:]))
        scale = np.sqrt(2.0 / fan_in) if len(shape) == 4 else 0.0
        params[name] = (rng.standard_normal(shape) * scale).astype(np.float32)
    return params


def network(x, p):
    """The head's outputs (N, 5 + classes, S, S); each block's output named after it."""
    h = x
    for name, _, kernel, pooled in BLOCKS:
        h = gd.conv2d(h, p[f"{name}.w"], p[f"{name}.b"], padding=kernel // 2)
        if name != "head":
            h = gd.relu(h)
        h = (gd.max_pool2d(h, 2) if pooled else h).named(name)
    return h


def detection_loss(out, objects, boxes, classes):
    """The loss of the module docstring from the head's outputs and the `Targets` inputs."""
    n_objects = gd.sum(objects)
    mask = gd.expand_dims(objects, 1)
    objectness = gd.binary_cross_entropy_with_logits(out[:, 0], objects, reduction="sum")
    box = gd.smooth_l1(out[:, 1:D.BOX_CHANNELS] * mask, boxes, reduction="sum")
    logits = gd.transpose(out[:, D.BOX_CHANNELS:], (0, 2, 3, 1))
    # the mean over all cells of -Σ onehot·log p (0 in empty cells), divided by the object
    # fraction: the sum over the object cells per object
    cls = gd.softmax_cross_entropy(logits, classes) / gd.mean(objects)
    return ((objectness.named("objectness_loss") + BOX_WEIGHT * box.named("box_loss"))
            / n_objects + cls.named("class_loss")).named("loss")


def build(options=None):
    """(train_step, predict, state, loss): the compiled step (fed x, the targets, the
    parameters and Adam's state by name, all updated in place) and forward pass. `options`:
    `gd.compile`'s backend and device."""
    options = options or {}
    s = GRID.cells
    x = gd.input("x", (None, 1, GRID.size, GRID.size))
    objects = gd.input("objects", (None, s, s))
    boxes = gd.input("boxes", (None, 4, s, s))
    classes = gd.input("classes", (None, s, s, CLASSES))
    params = {name: gd.input(name, shape) for name, shape in shapes().items()}
    out = network(x, params)
    loss = detection_loss(out, objects, boxes, classes)
    opt = gd.optim.adam(loss, list(params.values()), lr=LR)
    return (gd.compile(loss, updates=opt.updates, **options), gd.compile(out, **options),
            opt.init(), loss)


def feeds(targets):
    return {"objects": targets.objects, "boxes": targets.boxes, "classes": targets.classes}


def datasets(sizes):
    """(train, test) `boxes_data.Canvases` and the training `Targets`."""
    train = boxes_data.canvases("train", sizes["train"], objects=OBJECTS, seed=SEED)
    test = boxes_data.canvases("test", sizes["test"], objects=OBJECTS, seed=SEED)
    return train, test, D.encode(GRID, train.boxes, train.labels, CLASSES)


def batches(n, steps, rng):
    """`steps` index batches of BATCH: shuffled epochs, the last short batch of each dropped."""
    per_epoch = n // BATCH
    for step in range(steps):
        if step % per_epoch == 0:
            order = rng.permutation(n)
        k = step % per_epoch
        yield order[k * BATCH:(k + 1) * BATCH]


def train(step, train_set, targets, steps, rng, report=500):
    """Run `steps` steps of `step(x=..., objects=..., boxes=..., classes=...)` -> loss; returns
    the losses."""
    losses, start = [], time.perf_counter()
    for i, idx in enumerate(batches(len(train_set.images), steps, rng), 1):
        batch = {k: v[idx] for k, v in feeds(targets).items()}
        losses.append(float(step(x=train_set.images[idx], **batch)))
        if i % report == 0 or i == steps:
            print(f"step {i}/{steps}: mean loss of the last {min(report, i)} steps "
                  f"{np.mean(losses[-report:]):.4f} ({time.perf_counter() - start:.0f} s)"
                  + smoke.tag())
    return losses


def detect(predict, images, batch=500):
    """Decoded detections of every image, `predict` giving the head's outputs."""
    return [d for i in range(0, len(images), batch) for d in D.decode(GRID, predict(images[
        i:i + batch]))]


def evaluate(predict, test):
    detections = detect(predict, test.images)
    return D.evaluate(test.boxes, test.labels, detections, CLASSES, GRID.size), detections


def draw_network(loss):
    """The network with each block, loss term and composite drawn as one gate, as a PNG."""
    names = [name for name, *_ in BLOCKS] + ["objectness_loss", "box_loss", "class_loss",
                                             "cross_entropy", "log_sigmoid", "sigmoid"]
    path = os.path.join(OUT, "network.png")
    try:
        gd.draw(loss, collapse=names).render(outfile=path, cleanup=True)
        return path
    except gd.DotNotFound as e:
        return f"no drawing ({e})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sizes = SMOKE if data.is_smoke() else FULL
    parser.add_argument("--steps", type=int, default=sizes["steps"],
                        help=f"training steps of batch {BATCH} (default {sizes['steps']})")
    training.add_backend_flags(parser)
    args = parser.parse_args()
    options = training.compile_options(parser, args)
    smoke.note("test mAP@0.5 0.780, mAP@[.5:.95] 0.460 on 1,000 test canvases after 5,000 steps "
               "(OPENBLAS_NUM_THREADS=1 python examples/detection.py)")
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(SEED)
    train_set, test, targets = datasets(sizes)
    params = init_params(rng)
    train_step, predict, state, loss = build(options)
    print(f"grid detector: {sum(p.size for p in params.values()):,} parameters; "
          f"{len(train_set.images)} training canvases ({targets.dropped} objects lost their "
          f"cell to a larger one), {len(test.images)} test canvases; {args.steps} Adam steps "
          f"(lr {LR}) of batch {BATCH}; {training.describe(options)}")
    start = time.perf_counter()
    losses = train(lambda **f: train_step(**f, **params, **state), train_set, targets,
                   args.steps, rng, report=10 if data.is_smoke() else 500)
    print(f"trained in {(time.perf_counter() - start) / 60:.1f} min (compiling: "
          f"{train_step.compile_seconds:.2f} s); loss {losses[0]:.3f} -> {losses[-1]:.3f}"
          + smoke.tag())
    maps, detections = evaluate(lambda x: predict(x=x, **params), test)
    print(f"test COCO mAP@0.5 {maps['mAP@0.5']:.3f}, mAP@[.5:.95] {maps['mAP@[.5:.95]']:.3f} "
          f"(pycocotools, {len(test.images)} canvases){smoke.tag()}")
    shown = [(b[s >= 0.5], lab[s >= 0.5]) for b, s, lab in detections[:18]]
    grid_png = os.path.join(OUT, "predictions.png")
    boxes_data.save_grid(grid_png, test.images[:18],
                         list(zip(test.boxes[:18], test.labels[:18])), shown)
    print(f"predictions (score >= 0.5): {grid_png}{smoke.tag()}; network: {draw_network(loss)}")
    return losses, maps


if __name__ == "__main__":
    main()
