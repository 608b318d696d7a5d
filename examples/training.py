"""What the training examples share: the --epochs, --backend and --device flags, the epoch
loop."""

from __future__ import annotations

import argparse
import time

import data
import numpy as np
import smoke


def parse_epochs(description):
    """The --epochs flag: 5 by default, 1 in smoke mode."""
    parser = _epochs_parser(description)
    return _epochs(parser, parser.parse_args())


def parse_training(description):
    """--epochs and the backend flags: (epochs, keyword arguments for `gd.compile`)."""
    parser = _epochs_parser(description)
    add_backend_flags(parser)
    args = parser.parse_args()
    return _epochs(parser, args), compile_options(parser, args)


def add_backend_flags(parser):
    """--backend {numpy,cuda} and --device {gpu,cpu} (where the CUDA kernels run)."""
    parser.add_argument("--backend", choices=("numpy", "cuda"), default="numpy",
                        help="generated NumPy code (default) or CUDA kernels")
    parser.add_argument("--device", choices=("gpu", "cpu"), default=None,
                        help="with --backend cuda: run the kernels on an NVIDIA GPU (default) or "
                             "on the CPU through graphdl's emulator (slow, needs g++)")


def compile_options(parser, args):
    """The flags of `add_backend_flags` as keyword arguments for `gd.compile`."""
    if args.backend != "cuda":
        if args.device is not None:
            parser.error("--device applies to --backend cuda only")
        return {"backend": args.backend}
    return {"backend": "cuda", "device": args.device or "gpu"}


def _epochs_parser(description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--epochs", type=int, default=None,
                        help="passes over the training set (default 5; 1 in smoke mode)")
    return parser


def _epochs(parser, args):
    epochs = args.epochs if args.epochs is not None else (1 if data.is_smoke() else 5)
    if epochs < 1:
        parser.error("--epochs must be at least 1")
    return epochs


def he_init(shapes, rng):
    """He initialization for ReLU layers (conv OIHW: fan-in C·kh·kw; matrices (in, out): fan-in
    in), zero biases (1-D shapes); float32."""
    params = {}
    for name, shape in shapes.items():
        if len(shape) == 1:
            params[name] = np.zeros(shape, np.float32)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) == 4 else shape[0]
            params[name] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    return params


def accuracy(predict, params, x, y, batch=1000):
    """Test accuracy, the logits computed `batch` images at a time."""
    hits = 0
    for i in range(0, len(x), batch):
        logits = predict(x=x[i:i + batch], **params)
        hits += int(np.sum(np.argmax(logits, axis=1) == y[i:i + batch]))
    return hits / len(x)


def train(train_step, predict, params, state, splits, epochs, batch, rng):
    """Minibatch epochs with a progress bar; `train_step` writes the new parameters and the
    optimizer's state (`state`: its `init()` arrays) into their arrays in place. Returns the
    final test accuracy."""
    x_train, y_train, x_test, y_test = splits
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(x_train))
        total = 0.0
        batches = [order[i:i + batch] for i in range(0, len(order), batch)]
        for idx in data.progress(batches, desc=f"epoch {epoch}/{epochs}", leave=False):
            loss = train_step(x=x_train[idx], y=y_train[idx], **params, **state)
            total += float(loss) * len(idx)
        acc = accuracy(predict, params, x_test, y_test)
        print(f"epoch {epoch}: train loss {total / len(x_train):.4f}, test accuracy {acc:.2%} "
              f"({time.perf_counter() - start:.0f} s){smoke.tag()}")
    print(f"trained {epochs} epoch(s) in {time.perf_counter() - start:.1f} s "
          f"(compiling: {train_step.compile_seconds + predict.compile_seconds:.2f} s){smoke.tag()}")
    print(f"final test accuracy on {data.dataset_name}: {acc:.2%}{smoke.tag()}")
    return acc


def describe(options):
    """'numpy backend' or 'cuda backend on the gpu' for the examples' first line."""
    where = f" on the {options['device']}" if "device" in options else ""
    return f"{options['backend']} backend{where}"
