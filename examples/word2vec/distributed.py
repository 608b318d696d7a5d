"""word2vec on processes that share no memory (`python -m examples.word2vec.train --workers N
--distributed`, or torchrun/Ray Train across machines), after Intel's pWord2Vec (MPI).

Every rank holds its own copy of the tables, equal at the start (rank 0's, broadcast), and
trains on its share of the corpus's lines (`parallel.shares`: its own batches, learning-rate
decay over its share and random draws from seed + rank + 1, as the shared-memory workers).
The shares are cut to equal expected rows (`batches.expected_rows`), not equal words:
subsampling and short lines make the same words different numbers of rows, and cut by words
the 6.2M-word corpus's shares were 2.0 % apart at 2 ranks and 15 % at 4; whichever ran out
first waited at every epoch's end. Cut by rows: 0.02 % and 0.10 %.

The replicas drift apart; rounds bring them back together:
- every ~`INTERVAL` s (0.1 s, pWord2Vec's sync period) the K hottest rows of each table
  (`--sync-rows`, `ROWS`): W_in's rows [0:K), the K most frequent words (the vocabulary is
  sorted by count); W_out's [0:K) for negative sampling (its rows are words: the frequent ones
  are the targets and negatives most often); for hierarchical softmax its LAST K rows, the inner
  nodes nearest the root (`vocab.huffman` numbers them in the order merged, by growing weight,
  the root last; a node is on the path of every occurrence of the words below it);
- every `FULL_EVERY`-th round (~1 s) every row instead: on the 6.2M-word corpus, with every
  row combined at the epochs' ends only, each rank's copy of the rare words drifted for a
  whole epoch (analogies: 2 ranks 13.03 %, 4 ranks 8.37 %, one process 14.71 %); with these
  rounds, 14.30 % and 12.24 % (docs/RESULTS.md);
- at the end of each epoch every row, so that the replicas end bit-identical.

How rows combine. pWord2Vec averages them. Averaging N replicas divides every rank's change by
N: word2vec's loss is a sum (each occurrence moves its rows by lr times its own gradient), so
the averaged model moves as one process at lr/N would. Measured on this machine's corpus, it
halved the analogy score at 2 ranks and cut it to a fifth at 4 (docs/RESULTS.md). The rows
are therefore combined as the shared-memory workers' updates are, by adding every rank's change
since the last round (`Replica`'s "add" parts: base + Σ_r (x_r − base), base the value the
round before) — except the M hottest rows of each table (`MEAN_ROWS`), which a rank moves so
often between two rounds that each change alone nearly reaches where the row settles: N of
them added overshoot (with M = 0 at 4 ranks the loss per row went from 2.5 to 44,343), so
those are averaged. The other rows' changes over a round are small, and added up they are what
one process sharing the tables would have made of them, seen 0.1 s late by the other ranks.
M = 128 was measured on the 6.2M-word corpus (docs/RESULTS.md; one process: 14.71 % and
14.49 % of the analogies, seeds 0 and 1): at 4 ranks M = 16 scored 9.78 %, 64 13.72 %,
128 13.96 % and 14.01 %, 256 13.40 %; at 2 ranks M = 16 14.30 %, 64 14.04 %, 128 13.93 % and
13.79 %. The more ranks add their changes up, the more rows overshoot; 128 keeps both counts
within a point of one process. Rounds were every 32 (4 ranks) and 54 (2 ranks) steps.

One collective per round: `gdd.allreduce_array` sums one float32 buffer holding the rows (the
averaged ones' values, the others' changes) and a done flag, in place; the sums come back
identical on every rank, and so do the rows made from them. Ranks must call the same
collectives in the same order, or the group hangs (until the timeout); they agree
- on WHEN, by counting rounds: a rank joins the next round once `INTERVAL` seconds have
  passed since the last one ended (`Schedule`), or after ROUND_ROWS / (ranks × batch) steps:
  the added-up changes are those of ranks × steps × batch rows computed from tables up to a
  round old, and past ~2^17 rows they overshot (4 ranks, a round every 54 steps: analogies
  0.60 % where 30 steps gave 1.38 %). The ranks leave a round together and so reach the next
  within about a step of each other, however much each trained in between. (A fixed number of
  steps between rounds, agreed from the first steps' time, kept the others waiting for
  whichever rank the scheduler or its batch thread had slowed: 12 s of a 164 s run at 2
  ranks, against 3–4 s; docs/RESULTS.md.) `every` (`--sync-every`) fixes the steps instead,
  for a repeatable run;
- on the epoch's end: a rank whose share of the epoch is done keeps joining the rounds with its
  flag raised, training nothing, until a round's flags add up to the number of ranks; then
  every rank combines every row (a second collective) and starts the next epoch. A share
  without a batch in an epoch joins all the same.
With one rank every collective is the identity: the run is the one-process run, bit for bit.
Memory: the tables three times (the replica, the base of its added-up rows, the buffer of
a round of every row).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

import graphdl.distributed as gdd

from . import parallel
from .model import Model

INTERVAL = 0.1  # seconds of training between two rounds
ROWS = 1024  # K: hot rows of each table combined every round (docs/RESULTS.md: 4,096 was no
# better on the 6.2M-word corpus, and its rounds took a third more of the 2 ranks' time)
MEAN_ROWS = 128  # M: the hottest of them, averaged (the others' changes are added up)
ROUND_ROWS = 2**17  # rows trained by all ranks together between two rounds, at most
FULL_EVERY = 10  # every FULL_EVERY-th round combines every row (~1 s), not the hot ones alone


def hot_rows(model: Model, rows: int) -> dict[str, slice]:
    """Each table's K most updated rows (see the module's docstring)."""
    vocab = model.shape.vocab
    w_out = vocab - 1 if model.loss_kind == "hs" else vocab
    k_in, k_out = min(rows, vocab), min(rows, w_out)
    out = slice(w_out - k_out, w_out) if model.loss_kind == "hs" else slice(0, k_out)
    return {"W_in": slice(0, k_in), "W_out": out}


class Replica:
    """This rank's tables and the round that combines rows of them with the other ranks'.
    A round takes parts (table, rows, how): "mean" parts become the mean over the ranks;
    "add" parts become their values at the last round that took them plus every rank's change
    since (kept in `base`). `reduce(buffer)` returns the element-wise sum over the ranks of
    their buffers (a collective, called by every rank at once; it may sum in place). Each kind
    of round packs into a buffer of its own, kept: a round of every row is tens of MB, and a
    fresh one each time cost more than its transfer."""

    def __init__(self, tables: dict[str, np.ndarray], reduce: Callable, world: int):
        self.tables, self.reduce, self.world = tables, reduce, world
        self.base = {name: t.copy() for name, t in tables.items()}
        self.buffers: dict[tuple, np.ndarray] = {}
        self.rounds, self.seconds = 0, 0.0  # for the report: rounds made, time spent in them

    def round(self, parts: list[tuple[str, slice, str]], done: bool) -> bool:
        """Combine `parts` over the ranks; whether every rank said `done`. One rank keeps its
        rows as they are (base + change would round them)."""
        if self.world == 1:
            return done
        start = time.perf_counter()
        every_rank_done = self.unpack(self.reduce(self.pack(parts, done)), parts)
        self.rounds += 1
        self.seconds += time.perf_counter() - start
        return every_rank_done

    def pack(self, parts: list[tuple[str, slice, str]], done: bool) -> np.ndarray:
        """The parts' buffer: the "mean" rows' values, the "add" rows' changes, the flag."""
        key = tuple((name, rows.start, rows.stop, how) for name, rows, how in parts)
        if key not in self.buffers:
            size = sum(self.tables[name][rows].size for name, rows, _ in parts)
            self.buffers[key] = np.empty(size + 1, self.tables[parts[0][0]].dtype)
        buffer = self.buffers[key]
        for name, rows, how, table, mine in self.views(buffer, parts):
            if how == "add":
                np.subtract(table, self.base[name][rows], out=mine)
            else:
                mine[...] = table
        buffer[-1] = done
        return buffer

    def unpack(self, summed: np.ndarray, parts: list[tuple[str, slice, str]]) -> bool:
        """The parts := the sums' means, or base + the sums; whether the done flags add up to
        every rank."""
        for name, rows, how, table, total in self.views(summed, parts):
            if how == "add":
                base = self.base[name][rows]
                np.add(base, total, out=base)
                table[...] = base
            else:
                np.divide(total, self.world, out=table)
        return bool(summed[-1] == self.world)

    def views(self, buffer: np.ndarray, parts: list[tuple[str, slice, str]]):
        """(table, rows, how, the rows of the table, their place in `buffer`) for each part."""
        offset = 0
        for name, rows, how in parts:
            table = self.tables[name][rows]
            yield name, rows, how, table, buffer[offset:offset + table.size].reshape(table.shape)
            offset += table.size


def round_parts(model: Model, rows: int, mean_rows: int) -> tuple[list, list]:
    """(a round's parts, an epoch end's parts) as (table, rows, how) for `Replica.round`: every
    round, each table's `mean_rows` hottest rows averaged and the rest of its `rows` hottest
    added up; at an epoch's end, those and every other row added up."""
    hot, hottest = hot_rows(model, rows), hot_rows(model, min(mean_rows, rows))
    every, rest = [], []
    for name, where in hot.items():
        size = model.shape.vocab - (name == "W_out" and model.loss_kind == "hs")
        every.append((name, hottest[name], "mean"))
        every += [(name, part, "add") for part in _outside(where, hottest[name])]
        rest += [(name, part, "add") for part in _outside(slice(0, size), where)]
    return every, every + rest


def _outside(outer: slice, inner: slice) -> list[slice]:
    """The rows of `outer` before and after `inner` (a slice within it), where there are any."""
    return [slice(lo, hi) for lo, hi in ((outer.start, inner.start), (inner.stop, outer.stop))
            if hi > lo]


class Schedule:
    """When the rounds come (see the module's docstring): `before(batch)` is called before each
    batch (`Model.run`'s hook), `finish()` after the last one. A round comes once `interval`
    seconds of `clock` have passed since the last one ended, or after `most` steps; with
    `every`, after every `every` steps instead (the same steps in every run: repeatable)."""

    def __init__(self, replica: Replica, hot: list, end: list, epochs: int,
                 every: int | None = None, interval: float = INTERVAL, most: int | None = None,
                 full_every: int | None = FULL_EVERY, clock: Callable = time.perf_counter):
        self.replica, self.hot, self.end, self.epochs = replica, hot, end, epochs
        self.every, self.interval, self.most = every, interval, most
        self.full_every, self.clock = full_every, clock
        self.epoch, self.since, self.last = 0, 0, clock()  # steps and time since the last round

    def before(self, batch) -> None:
        while self.epoch < batch.epoch:
            self.end_epoch()
        if self.due():
            self.periodic(done=False)
        self.since += 1

    def finish(self) -> None:
        while self.epoch < self.epochs:
            self.end_epoch()

    def due(self) -> bool:
        if self.every is not None:
            return self.since == self.every
        return (self.most is not None and self.since >= self.most
                or self.clock() - self.last >= self.interval)

    def end_epoch(self) -> None:
        """Join the rounds until every rank is done with the epoch, then combine every row."""
        while not self.periodic(done=True):
            pass
        self.replica.round(self.end, done=True)
        self.epoch += 1
        self.since, self.last = 0, self.clock()

    def periodic(self, done: bool) -> bool:
        """A round between epoch ends: the hot rows, or every row each `full_every`-th round
        (the same on every rank: they count the same rounds)."""
        full = self.full_every and (self.replica.rounds + 1) % self.full_every == 0
        every_rank_done = self.replica.round(self.end if full else self.hot, done)
        self.since, self.last = 0, self.clock()
        return every_rank_done


def train(model: Model, step, counts: np.ndarray, corpus, tables: dict, *, epochs: int,
          window: int, sample: float, negative: int, seed: int, rows: int = ROWS,
          mean_rows: int = MEAN_ROWS, every: int | None = None,
          report=None) -> tuple[int, np.ndarray, int, str]:
    """Train this rank's replica of `tables` (in place) with the compiled `step` on its share of
    `corpus`, combined with the other ranks' (gdd.init() made the group): (center words of all
    ranks, this rank's per-step losses, rows dropped by all ranks, a line on the rounds).
    `every`: steps between two rounds, for a repeatable run; None: every INTERVAL s."""
    me, world = gdd.rank(), gdd.world_size()
    gdd.broadcast_parameters(tables)
    part = parallel.shares(corpus, world, model.expected_rows(corpus, counts, window, sample))[me]
    stream = model.stream(part, counts, epochs=epochs, window=window, sample=sample,
                          negative=negative, seed=seed + me + 1)
    hot = hot_rows(model, rows)
    replica = Replica(tables, lambda buffer: gdd.allreduce_array(buffer, "sum", out=buffer),
                      world)
    most = max(1, ROUND_ROWS // (world * model.shape.batch))
    schedule = Schedule(replica, *round_parts(model, rows, mean_rows), epochs, every, most=most)
    words, losses, dropped = model.run(step, tables, stream, report, before=schedule.before)
    schedule.finish()
    words, dropped = gdd.allreduce_array(np.array([words, dropped], np.float64), "sum")
    if world == 1:
        return int(words), losses, int(dropped), "1 rank: no rounds (the one-process run)"
    k = hot["W_in"].stop - hot["W_in"].start
    when = f"{every} steps" if every else f"{INTERVAL:g} s (at most {most} steps)"
    line = (f"{world} ranks: {replica.rounds:,} rounds, one every {when}, combined the {k:,} "
            f"hottest rows of each table, every {FULL_EVERY}th round and each epoch's end every "
            f"row; {replica.seconds:.1f} s in them on rank {me}")
    return int(words), losses, int(dropped), line
