"""One rank of tests/test_word2vec_distributed.py: `python -m tests.word2vec_distributed_worker
RANK WORLD RENDEZVOUS OUT EVERY` joins a gloo group through the `file://` rendezvous, trains
skip-gram NS on the smoke corpus (examples/word2vec/distributed.py's rounds, every EVERY steps
or, for 0, every 0.1 s) and saves its replica's tables and the words trained on by all ranks to
OUT (.npz)."""

from __future__ import annotations

import sys

import numpy as np

import graphdl.distributed as gdd
from examples.word2vec.model import Shape, declare
from examples.word2vec.train import load, load_once_per_machine, train

SETTINGS = {"epochs": 2, "window": 3, "sample": 1e-3, "negative": 3, "seed": 0}
ROWS = 100  # of the smoke vocabulary's 1,759: most rows are combined at the epochs' ends only


def run(sync_rows=None, sync_every=None):
    """The smoke run; one rank's with `sync_rows`, else one process's (the test's own)."""
    data = (load_once_per_machine if sync_rows else load)(True, 5, None)
    model = declare("sg", "ns", Shape(len(data.vocab), 16, 256, SETTINGS["window"],
                                      SETTINGS["negative"]))
    return train(model, data, progress=False, sync_rows=sync_rows, sync_every=sync_every,
                 **SETTINGS)


def main(rank, world, rendezvous, out, every):
    gdd.init(init_method=f"file://{rendezvous}", rank=rank, world_size=world, timeout=60)
    result = run(ROWS, every or None)
    np.savez(out, words=result.words, **result.tables)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]))
