"""What the training examples share: the --epochs, --backend, --device and --workers flags, the
epoch loop.

--workers N (the examples that take it): data-parallel training on N local processes
(graphdl.distributed; torchrun starts them, gloo connects them). Every worker draws the same
global batch (the same permutation generator), steps on its shard of it, and the optimizer
averages the gradients weighted by rows: the run is the one-process run up to float rounding.
Only rank 0 prints. With one worker (the default) nothing of this runs and torch is not
imported."""

from __future__ import annotations

import argparse
import os
import sys
import time

import data
import numpy as np
import smoke

import graphdl.distributed as gdd


def parse_epochs(description, workers=False):
    """The --epochs flag: 5 by default, 1 in smoke mode; with `workers`, --workers too (see
    `_parse`)."""
    parser = _epochs_parser(description, workers)
    return _epochs(parser, _parse(parser, workers))


def parse_training(description, workers=False):
    """--epochs and the backend flags (with `workers`, --workers too: see `_parse`): (epochs,
    keyword arguments for `gd.compile`)."""
    parser = _epochs_parser(description, workers)
    add_backend_flags(parser)
    args = _parse(parser, workers)
    return _epochs(parser, args), compile_options(parser, args)


def _parse(parser, workers):
    """The parsed command line. With --workers N > 1, this script is run again on N workers
    (`gdd.launch`: torchrun, which exits here with their status) and each worker joins their
    group; from there on only rank 0 prints."""
    args = parser.parse_args()
    if not workers:
        return args
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    gdd.launch(args.workers)
    gdd.init()
    if gdd.rank() != 0:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the rest of the process
    return args


def data_parallel(x):
    """The optimizer's keyword arguments for the workers' group: the gradients averaged over
    the workers, weighted by their rows of the batch `x`; none with one worker (the step is then
    the plain one)."""
    return {"allreduce": "mean", "rows": x} if gdd.world_size() > 1 else {}


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


def _epochs_parser(description, workers):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--epochs", type=int, default=None,
                        help="passes over the training set (default 5; 1 in smoke mode)")
    if workers:
        parser.add_argument("--workers", type=int, default=1,
                            help="data-parallel worker processes on this machine (default 1; "
                                 "more need torch: pip install '.[distributed]')")
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
    """Test accuracy, the logits computed `batch` images at a time. Each worker counts the hits
    on its shard of the test set and the counts are summed (exact: integers): with N workers
    the evaluation takes 1/N of the time."""
    images, x, y, hits = len(x), gdd.shard(x), gdd.shard(y), 0
    for i in range(0, len(x), batch):
        logits = predict(x=x[i:i + batch], **params)
        hits += int(np.sum(np.argmax(logits, axis=1) == y[i:i + batch]))
    return _summed(hits, np.int64) / images


def _summed(value, dtype):
    """`value` summed over the workers (itself with one worker)."""
    return gdd.allreduce_array(np.array([value], dtype), "sum")[0].item()


def train(train_step, predict, params, state, splits, epochs, batch, rng):
    """Minibatch epochs with a progress bar; `train_step` writes the new parameters and the
    optimizer's state (`state`: its `init()` arrays) into their arrays in place. Returns the
    final test accuracy. With several workers, every worker draws the same batches from `rng`
    and steps on its shard of each, from rank 0's parameters."""
    x_train, y_train, x_test, y_test = splits
    gdd.broadcast_parameters({**params, **state})
    if gdd.world_size() > 1:
        print(f"data-parallel on {gdd.world_size()} workers (torch.distributed, gloo): each "
              f"steps on its ~{batch // gdd.world_size()} rows of every batch of {batch}")
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(x_train))
        total = 0.0
        batches = [gdd.shard(order[i:i + batch]) for i in range(0, len(order), batch)]
        if gdd.rank() == 0:
            batches = data.progress(batches, desc=f"epoch {epoch}/{epochs}", leave=False)
        for idx in batches:
            loss = train_step(x=x_train[idx], y=y_train[idx], **params, **state)
            total += float(loss) * len(idx)
        acc = accuracy(predict, params, x_test, y_test)
        total = _summed(total, np.float64)
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
