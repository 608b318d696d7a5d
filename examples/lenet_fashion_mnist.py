"""A LeNet-style CNN on Fashion-MNIST, trained with momentum SGD compiled by graphdl.

    conv 6@5x5 (padding 2) -> ReLU -> maxpool 2 -> conv 16@5x5 -> ReLU -> maxpool 2
      -> FC 120 -> ReLU -> FC 84 -> ReLU -> FC 10 -> softmax cross-entropy

The training step is one compiled function (forward, loss, symbolic gradients through the
convolutions and poolings, `gd.optim.sgd`'s momentum update written in place); a second one
gives the logits.
Without Fashion-MNIST installed, examples/data.py falls back to scikit-learn's 8x8 digits, which
are scaled up to 24x24 and padded to 28x28 here so that the same network applies.

Run from the repository root:  python examples/lenet_fashion_mnist.py [--epochs N]
Smoke mode (1 short epoch on a small subset):
    GRAPHDL_SMOKE=1 python examples/lenet_fashion_mnist.py
Data-parallel on N local processes (torchrun and gloo; needs torch), each stepping on its rows
of every batch of 64:  --workers N (see examples/training.py)
CUDA kernels instead of NumPy code:  --backend cuda (on an NVIDIA GPU through CuPy), with
--device cpu the same kernels on the CPU through graphdl's emulator (no GPU needed; slow).
"""

from __future__ import annotations

import data
import numpy as np
import smoke
import training

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
    return training.he_init(SHAPES, rng)


def lenet(x, p):
    h = gd.max_pool2d(gd.relu(gd.conv2d(x, p["c1w"], p["c1b"], padding=2)), 2)  # 6 x 14 x 14
    h = gd.max_pool2d(gd.relu(gd.conv2d(h, p["c2w"], p["c2b"])), 2)  # 16 x 5 x 5
    h = gd.reshape(h, (-1, 16 * 5 * 5))
    h = gd.relu(h @ p["f1w"] + p["f1b"])
    h = gd.relu(h @ p["f2w"] + p["f2b"])
    return h @ p["f3w"] + p["f3b"]


def build(lr, mu, options):
    """(train_step, predict, state): compiled functions of x, y, the parameters and (the step)
    their momentum buffers, whose initial arrays are `state`; `options` are `gd.compile`'s
    backend and device."""
    x = gd.input("x", (None, 1, 28, 28))  # None: the last, shorter batch compiles once more
    y = gd.input("y", (None,), "int64")
    params = {name: gd.input(name, shape) for name, shape in SHAPES.items()}
    logits = lenet(x, params)
    loss = gd.softmax_cross_entropy(logits, y)
    opt = gd.optim.sgd(loss, list(params.values()), lr, momentum=mu, **training.data_parallel(x))
    return (gd.compile(loss, updates=opt.updates, **options), gd.compile(logits, **options),
            opt.init())


def main():
    epochs, options = training.parse_training(__doc__.splitlines()[0], workers=True)
    smoke.note("88.39 % test accuracy on Fashion-MNIST after 5 epochs of all 60,000 images "
               "(python examples/lenet_fashion_mnist.py)")
    x_train, y_train, x_test, y_test = data.load_fashion_mnist(smoke=data.is_smoke())
    splits = as_images(x_train), y_train, as_images(x_test), y_test
    rng = np.random.default_rng(SEED)
    params = init_params(rng)
    train_step, predict, state = build(LR, MOMENTUM, options)
    n_params = sum(p.size for p in params.values())
    print(f"LeNet: {n_params:,} parameters; input {splits[0].shape[1:]}, {len(splits[0])} "
          f"training images, batch {BATCH}, momentum SGD (lr {LR}, mu {MOMENTUM}); "
          f"{training.describe(options)}")
    training.train(train_step, predict, params, state, splits, epochs, BATCH, rng)


if __name__ == "__main__":
    main()
