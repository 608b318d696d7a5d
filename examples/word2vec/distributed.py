"""word2vec on processes that share no memory (`python -m examples.word2vec.train --workers N
--distributed`, or torchrun/Ray Train across machines), as Intel's pWord2Vec does it with MPI.

Every rank holds its own copy of the tables, equal at the start (rank 0's, broadcast), and
trains on its share of the corpus's lines (`parallel.shares`: its own batches, learning-rate
decay over its share, random draws from seed + rank + 1, as the shared-memory workers). Each
replica drifts from the others; averaging pulls them together:
- every ~`INTERVAL` s (0.1 s, pWord2Vec's sync period) the hot rows are averaged: W_in's rows
  [0:K) (the vocabulary is sorted by count, so these are the K most frequent words) and W_out's
  K most updated rows: [0:K) for negative sampling (its rows are words, the frequent ones the
  targets and negatives most often); for hierarchical softmax its LAST K rows, the inner nodes
  nearest the root (`vocab.huffman` numbers them in the order merged, by growing weight, the
  root last; a node is on the path of every occurrence of the words below it, so the root is
  updated by every row);
- at the end of each epoch every row is averaged, so that the rare words' rows, trained by one
  or a few ranks, are shared too, and after the last epoch all replicas are bit-identical.

One collective per round: `gdd.allreduce_array` sums one float32 buffer holding the hot rows
of both tables and a done flag; every rank divides the sums by the number of ranks (the sums,
hence the means, come back identical on every rank). Ranks must call the same collectives in the
same order, or the group hangs; they agree:
- on WHEN: after `CALIBRATION` steps (or at the first epoch end, if a share is shorter) one
  collective sums every rank's measured seconds and steps; a round then comes every
  S = INTERVAL / (mean step time) steps, the same S on every rank, for the whole run;
- on the epoch's end: a rank whose share of the epoch is done keeps joining the rounds with its
  flag raised, training nothing, until a round's flags sum to the number of ranks; then every
  rank averages all rows (a second collective) and starts the next epoch. A share that runs
  out of batches early (the last batch of the run is dropped when short) does the same.
With one rank every collective is the identity: the run is the one-process run.

K (`ROWS`): measured on this machine (docs/RESULTS.md, "word2vec across processes").
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

import graphdl.distributed as gdd

from . import parallel
from .model import Model

INTERVAL = 0.1  # seconds of training between two rounds
CALIBRATION = 50  # steps timed before the ranks agree on the steps between rounds
ROWS = 4096  # K: hot rows of each table averaged every round


def hot_rows(model: Model, rows: int) -> dict[str, slice]:
    """Each table's K most updated rows (see the module's docstring)."""
    vocab = model.shape.vocab
    w_out = vocab - 1 if model.loss_kind == "hs" else vocab
    k_in, k_out = min(rows, vocab), min(rows, w_out)
    out = slice(w_out - k_out, w_out) if model.loss_kind == "hs" else slice(0, k_out)
    return {"W_in": slice(0, k_in), "W_out": out}


class Replica:
    """This rank's tables and the round that averages rows of them with the other ranks'.
    `reduce(buffer)` returns the element-wise sum over the ranks of their buffers (a
    collective, called by every rank at once)."""

    def __init__(self, tables: dict[str, np.ndarray], reduce: Callable, world: int):
        self.tables, self.reduce, self.world = tables, reduce, world
        self.everything = {name: slice(None) for name in tables}
        self.rounds, self.seconds = 0, 0.0  # for the report: rounds made, time spent in them

    def round(self, rows: dict[str, slice], done: bool) -> bool:
        """Average `rows` ({table: slice}) over the ranks; whether every rank said `done`."""
        start = time.perf_counter()
        summed = self.unpack(self.reduce(self.pack(rows, done)), rows)
        self.rounds += 1
        self.seconds += time.perf_counter() - start
        return summed

    def pack(self, rows: dict[str, slice], done: bool) -> np.ndarray:
        parts = [self.tables[name][where].ravel() for name, where in rows.items()]
        dtype = parts[0].dtype
        return np.concatenate([*parts, np.array([done], dtype)])

    def unpack(self, summed: np.ndarray, rows: dict[str, slice]) -> bool:
        """The rows := their sums / ranks; whether the done flags add up to every rank."""
        offset = 0
        for name, where in rows.items():
            table = self.tables[name][where]
            np.divide(summed[offset:offset + table.size].reshape(table.shape), self.world,
                      out=table)
            offset += table.size
        return bool(summed[offset] == self.world)


class Schedule:
    """When the rounds come (see the module's docstring): `before(batch)` is called before each
    batch (`Model.run`'s hook), `finish()` after the last one. `every`: steps between rounds,
    None to agree on it from the measured step time."""

    def __init__(self, replica: Replica, hot: dict[str, slice], epochs: int,
                 every: int | None = None, interval: float = INTERVAL,
                 calibration: int = CALIBRATION):
        self.replica, self.hot, self.epochs = replica, hot, epochs
        self.every, self.interval, self.calibration = every, interval, calibration
        self.epoch, self.steps, self.since, self.start = 0, 0, 0, 0.0

    def before(self, batch) -> None:
        while self.epoch < batch.epoch:
            self.end_epoch()
        if self.every is None:
            if self.steps == 1:  # the first step compiles caches: not timed
                self.start = time.perf_counter()
            if self.steps == self.calibration:
                self.agree()
        elif self.since == self.every:
            self.replica.round(self.hot, done=False)
            self.since = 0
        self.steps += 1
        self.since += 1

    def finish(self) -> None:
        while self.epoch < self.epochs:
            self.end_epoch()

    def end_epoch(self) -> None:
        """Join the rounds until every rank is done with the epoch, then average every row."""
        if self.every is None:
            self.agree()
        while not self.replica.round(self.hot, done=True):
            pass
        self.replica.round(self.replica.everything, done=True)
        self.epoch += 1
        self.since = 0

    def agree(self) -> None:
        """Steps between rounds from every rank's seconds per step (one collective)."""
        timed = max(self.steps - 1, 0)
        mine = np.array([time.perf_counter() - self.start if timed else 0.0, timed])
        seconds, steps = self.replica.reduce(mine)
        self.every = max(1, round(self.interval * steps / seconds)) if steps else 1
        self.since = 0


def train(model: Model, step, counts: np.ndarray, corpus, tables: dict, *, epochs: int,
          window: int, sample: float, negative: int, seed: int, rows: int = ROWS,
          report=None) -> tuple[int, np.ndarray, int, str]:
    """Train this rank's replica of `tables` (in place) with the compiled `step` on its share of
    `corpus`, averaged with the other ranks' (gdd.init() made the group): (center words of all
    ranks, this rank's per-step losses, rows dropped by all ranks, a line on the rounds)."""
    me, world = gdd.rank(), gdd.world_size()
    gdd.broadcast_parameters(tables)
    part = parallel.shares(corpus, world)[me]
    stream = model.stream(part, counts, epochs=epochs, window=window, sample=sample,
                          negative=negative, seed=seed + me + 1)
    hot = hot_rows(model, rows)
    replica = Replica(tables, lambda buffer: gdd.allreduce_array(buffer, "sum"), world)
    schedule = Schedule(replica, hot, epochs)
    words, losses, dropped = model.run(step, tables, stream, report, before=schedule.before)
    schedule.finish()
    words, dropped = gdd.allreduce_array(np.array([words, dropped], np.float64), "sum")
    k = hot["W_in"].stop - hot["W_in"].start
    line = (f"{world} rank{'s' if world > 1 else ''}: a round every {schedule.every} steps "
            f"averaged {k:,} rows of each table; {replica.rounds:,} rounds (with {epochs} of "
            f"every row), {replica.seconds:.1f} s in them on rank {me}")
    return int(words), losses, int(dropped), line
