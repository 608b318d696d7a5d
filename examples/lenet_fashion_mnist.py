"""A LeNet-style CNN on Fashion-MNIST, trained with momentum SGD compiled by graphdl.

    conv 6@5x5 (padding 2) -> ReLU -> maxpool 2 -> conv 16@5x5 -> ReLU -> maxpool 2
      -> FC 120 -> ReLU -> FC 84 -> ReLU -> FC 10 -> softmax cross-entropy

The training step is one compiled function (forward, loss, symbolic gradients through the
convolutions and poolings, momentum update written in place); a second one gives the logits.
Without Fashion-MNIST installed, examples/data.py falls back to scikit-learn's 8x8 digits, which
are scaled up to 24x24 and padded to 28x28 here so that the same network applies.

Run from the repository root:  python examples/lenet_fashion_mnist.py [--epochs N]
Smoke mode (1 short epoch on a small subset):  GRAPHDL_SMOKE=1 python examples/lenet_fashion_mnist.py
"""

from __future__ import annotations

import argparse
import time

import data
import numpy as np

import graphdl as gd

BATCH, LR, MOMENTUM, SEED = 64, 0.01, 0.9, 0
SHAPES = {
    "c1w": (6, 1, 5, 5), "c1b": (6,), "c2w": (16, 6, 5, 5), "c2b": (16,),
    "f1w": (16 * 5 * 5, 120), "f1b": (120,), "f2w": (120, 84), "f2b": (84,),
    "f3w": (84, 10), "f3b": (10,),
}


def as_images(x):
    """(N, 784) rows -> (N, 1, 28, 28); the 8x8 digits fallback is scaled 3x and padded."""
    if x.shape[1] == 64:
        x = np.kron(x.reshape(-1, 8, 8), np.ones((3, 3), np.float32))
        x = np.pad(x, ((0, 0), (2, 2), (2, 2)))
    return np.ascontiguousarray(x.reshape(-1, 1, 28, 28), dtype=np.float32)


def init_params(rng):
    """He initialization (ReLU layers), zero biases; float32."""
    params = {}
    for name, shape in SHAPES.items():
        if len(shape) == 1:
            params[name] = np.zeros(shape, np.float32)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) == 4 else shape[0]
            params[name] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    return params


def lenet(x, p):
    h = gd.max_pool2d(gd.relu(gd.conv2d(x, p["c1w"], p["c1b"], padding=2)), 2)  # 6 x 14 x 14
    h = gd.max_pool2d(gd.relu(gd.conv2d(h, p["c2w"], p["c2b"])), 2)  # 16 x 5 x 5
    h = gd.reshape(h, (-1, 16 * 5 * 5))
    h = gd.relu(h @ p["f1w"] + p["f1b"])
    h = gd.relu(h @ p["f2w"] + p["f2b"])
    return h @ p["f3w"] + p["f3b"]


def build(lr, mu):
    """(train_step, predict): compiled functions of x, y, the parameters and their velocities."""
    x = gd.input("x", (None, 1, 28, 28))  # None: the last, shorter batch compiles once more
    y = gd.input("y", (None,), "int64")
    params = {name: gd.input(name, shape) for name, shape in SHAPES.items()}
    logits = lenet(x, params)
    loss = gd.softmax_cross_entropy(logits, y)
    grads = gd.grad(loss, list(params.values()))
    updates = {}  # heavy-ball momentum: v' = mu·v - lr·dp, p' = p + v'
    for p, g in zip(params.values(), grads):
        v = gd.input("v_" + p.name, p.shape)
        updates[v] = mu * v - lr * g
        updates[p] = p + updates[v]
    return gd.compile(loss, updates=updates), gd.compile(logits)


def accuracy(predict, params, x, y, batch=1000):
    hits = 0
    for i in range(0, len(x), batch):
        hits += int(np.sum(np.argmax(predict(x=x[i:i + batch], **params), axis=1) == y[i:i + batch]))
    return hits / len(x)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None,
                        help="passes over the training set (default 5; 1 in smoke mode)")
    args = parser.parse_args()
    smoke = data.is_smoke()
    epochs = args.epochs if args.epochs is not None else (1 if smoke else 5)
    if epochs < 1:
        parser.error("--epochs must be at least 1")

    x_train, y_train, x_test, y_test = data.load_fashion_mnist(smoke=smoke)
    x_train, x_test = as_images(x_train), as_images(x_test)
    rng = np.random.default_rng(SEED)
    params = init_params(rng)
    velocity = {"v_" + name: np.zeros_like(p) for name, p in params.items()}
    train_step, predict = build(LR, MOMENTUM)
    n_params = sum(p.size for p in params.values())
    print(f"LeNet: {n_params:,} parameters; input {x_train.shape[1:]}, {len(x_train)} training "
          f"images, batch {BATCH}, momentum SGD (lr {LR}, mu {MOMENTUM})")

    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(x_train))
        batches = [order[i:i + BATCH] for i in range(0, len(order), BATCH)]
        total = 0.0
        for idx in data.progress(batches, desc=f"epoch {epoch}/{epochs}", leave=False):
            loss = train_step(x=x_train[idx], y=y_train[idx], **params, **velocity)
            total += float(loss) * len(idx)
        acc = accuracy(predict, params, x_test, y_test)
        print(f"epoch {epoch}: train loss {total / len(x_train):.4f}, test accuracy {acc:.2%} "
              f"({time.perf_counter() - start:.0f} s)")
    elapsed = time.perf_counter() - start
    print(f"trained {epochs} epoch(s) in {elapsed:.1f} s "
          f"(compiling: {train_step.compile_seconds + predict.compile_seconds:.2f} s)")
    print(f"final test accuracy on {data.dataset_name}: {acc:.2%}")


if __name__ == "__main__":
    main()
