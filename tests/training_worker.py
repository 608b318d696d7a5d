"""The examples' data-parallel loop (examples/training.py) on a small MLP, for
tests/test_data_parallel_examples.py: `python -m tests.training_worker [--workers N]` parses its
command line as the examples do (--workers 2 starts two workers by torchrun), trains the MLP of
examples/mlp_fashion_mnist.py for two epochs on random data, and each rank saves its parameters,
momentum buffers and test accuracy, and whether torch was imported, to
$TRAINING_WORKER_OUT-<workers>-<rank>.npz."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
import mlp_fashion_mnist as mlp
import training

import graphdl.distributed as gdd

# batches of 25 rows, split 13 + 12 on two workers; the last, of 20, 10 + 10
ROWS, FEATURES, TESTS, BATCH = 70, 12, 30, 25


def main():
    epochs = training.parse_epochs("the examples' data-parallel loop", workers=True)
    rng = np.random.default_rng(0)  # the data and the batches: the same on every rank
    splits = (rng.random((ROWS, FEATURES), np.float32), rng.integers(0, 10, ROWS),
              rng.random((TESTS, FEATURES), np.float32), rng.integers(0, 10, TESTS))
    params = mlp.init_params(FEATURES, np.random.default_rng(1 + gdd.rank()))  # until broadcast
    train_step, predict, state = mlp.build(FEATURES, mlp.LR, mlp.MOMENTUM)
    accuracy = training.train(train_step, predict, params, state, splits, epochs, BATCH, rng)
    np.savez(f"{os.environ['TRAINING_WORKER_OUT']}-{gdd.world_size()}-{gdd.rank()}.npz",
             accuracy=accuracy, torch="torch" in sys.modules, **params, **state)


if __name__ == "__main__":
    main()
