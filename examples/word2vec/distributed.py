"""word2vec on processes that share no memory (`python -m examples.word2vec.train --workers N
--distributed`, or torchrun/Ray Train across machines), after Intel's pWord2Vec (MPI).

Every rank holds its own copy of the tables, equal at the start (rank 0's, broadcast), and
trains on its share of the corpus's lines (`parallel.shares`: its own batches, learning-rate
decay over its share and random draws from seed + rank + 1, as the shared-memory workers).
The shares are cut to equal expected rows (`batches.expected_rows`), not equal words:
subsampling and short lines make the same words different numbers of rows, and cut by words
the 6.2M-word corpus's shares were 2.0 % apart at 2 ranks and 15 % at 4; whichever ran out
first waited for the others. Cut by rows: 0.02 % and 0.10 %.

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
- at the end every row, so that the replicas end bit-identical. Not at each epoch's end: a
  rank goes on into its next epoch, and only the last end waits for the slowest rank. (Waiting
  for each other at every epoch's end, 2 ranks spent 20.7 and 31.8 s of 331 and 307 s runs in
  rounds, mostly there; without, 22.3 s on the rank that finished first and 15.3 s on the
  other, of 278 s: a rank slowed in one epoch may catch up in the next. docs/RESULTS.md.)

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

One collective per round: `gdd.allreduce_start` sums one float32 buffer holding the rows (the
averaged ones' values, the others' changes) and a done flag, in place; the sums come back
identical on every rank. A round travels while the rank trains on: it is sent, the steps go on,
and it lands before the first step after it has arrived, each row moving by the combined value
less what this rank sent, so that the steps taken meanwhile are kept (and go out, as changes,
with the next round). A rank that reaches a round before the others then trains instead of
waiting for them: waiting in each round, the ranks lost 3–4 s of a 130 s run at 2 ranks, on
top of the rounds' own time (docs/RESULTS.md). A round that has not arrived by the time the
next is due is waited for. Ranks must call the same collectives in the same order, or the
group hangs (until the timeout); they agree
- on WHEN, by counting rounds: a rank sends the next round once `INTERVAL` seconds have
  passed since the last one landed (`Schedule`), or ROUND_ROWS / (ranks × batch) steps after
  it sent the last: the added-up changes are those of ranks × steps × batch rows computed from
  tables up to a round old, and past ~2^17 rows they overshot (4 ranks, a round every 54
  steps: analogies 0.60 % where 30 steps gave 1.38 %). The ranks' rounds land at about the
  same time, so they send the next within about a step of each other, however much each
  trained in between. (A fixed number of steps between rounds, agreed from the first steps'
  time, kept the others waiting for whichever rank the scheduler or its batch thread had
  slowed: 12 s of a 164 s run at 2 ranks; docs/RESULTS.md.) `every` (`--sync-every`) fixes
  the steps instead, each round landing at the step after it was sent, for a repeatable run;
- on the end: a rank whose share of every epoch is done lands its round and keeps joining
  the rounds with its flag raised, training nothing (they land as they are sent), until a
  round's flags add up to the number of ranks; then every rank combines every row (a second
  collective, landed as sent: every row of every replica the same bits). A share without a
  batch joins all the same.
With one rank there are no rounds: the run is the one-process run, bit for bit.
Memory: the tables four times (the replica, the base of its added-up rows, a round of every
row's buffer and what this rank sent in it).
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
    """This rank's tables and the rounds that combine rows of them with the other ranks'.
    A round takes parts (table, rows, how): "mean" parts become the mean over the ranks;
    "add" parts become their values at the last round that took them plus every rank's change
    since (kept in `base`). `start(buffer)` starts the collective that sums the ranks' buffers
    in place and returns at once: a handle with `ready()` (arrived, without waiting) and
    `wait()` (the summed buffer). Each kind of round packs into a buffer of its own, kept: a
    round of every row is tens of MB, and a fresh one each time cost more than its transfer.

    A round travels while the rank trains on (`send`, then `land` once it has arrived): each
    row then moves by the combined value less what this rank sent, keeping the steps it took
    meanwhile. `round` sends and lands at once, as every rank's rows stand: the rows come out
    exactly the combined values, the same bits on every rank."""

    def __init__(self, tables: dict[str, np.ndarray], start: Callable, world: int):
        self.tables, self.start, self.world = tables, start, world
        self.base = {name: t.copy() for name, t in tables.items()}
        self.buffers: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        self.travelling = None  # (the collective, its parts, what this rank sent)
        self.rounds, self.seconds = 0, 0.0  # for the report: rounds made, time spent in them

    def round(self, parts: list[tuple[str, slice, str]], done: bool) -> bool:
        """Combine `parts` over the ranks now; whether every rank said `done`. One rank keeps
        its rows as they are (base + change would round them)."""
        if self.world == 1:
            return done
        self.send(parts, done)
        return self.land(exact=True)

    def send(self, parts: list[tuple[str, slice, str]], done: bool) -> None:
        """Start a round of `parts` (none with one rank): the "mean" rows' values, the "add"
        rows' changes, the flag."""
        if self.world == 1:
            return
        clock = time.perf_counter()
        key = tuple((name, rows.start, rows.stop, how) for name, rows, how in parts)
        if key not in self.buffers:
            size = sum(self.tables[name][rows].size for name, rows, _ in parts) + 1
            dtype = self.tables[parts[0][0]].dtype
            self.buffers[key] = np.empty(size, dtype), np.empty(size, dtype)
        buffer, sent = self.buffers[key]
        for name, rows, how, table, mine in self.views(buffer, parts):
            if how == "add":
                np.subtract(table, self.base[name][rows], out=mine)
            else:
                mine[...] = table
        buffer[-1] = done
        sent[...] = buffer
        self.travelling = self.start(buffer), parts, sent
        self.rounds += 1
        self.seconds += time.perf_counter() - clock

    def ready(self) -> bool:
        """Whether the round under way has arrived (without waiting)."""
        return self.travelling is not None and self.travelling[0].ready()

    def land(self, exact: bool = False) -> bool:
        """Wait for the round under way and apply it: the "mean" parts := the mean of the ranks'
        values, the "add" parts := base + the sum of the changes, each plus this rank's steps
        since it sent (none with `exact`: then the rows are those values themselves, bit for
        bit); whether the done flags add up to every rank."""
        clock = time.perf_counter()
        (collective, parts, sent), self.travelling = self.travelling, None
        summed = collective.wait()
        for (name, rows, how, table, total), (*_, mine) in zip(
                self.views(summed, parts), self.views(sent, parts), strict=True):
            if how == "add":
                base = self.base[name][rows]
                np.add(base, total, out=base)
                if exact:
                    table[...] = base
                else:
                    table += np.subtract(total, mine, out=mine)
            elif exact:
                np.divide(total, self.world, out=table)
            else:
                table += np.subtract(np.divide(total, self.world, out=total), mine, out=mine)
        self.seconds += time.perf_counter() - clock
        return bool(summed[-1] == self.world)

    def views(self, buffer: np.ndarray, parts: list[tuple[str, slice, str]]):
        """(table, rows, how, the rows of the table, their place in `buffer`) for each part."""
        offset = 0
        for name, rows, how in parts:
            table = self.tables[name][rows]
            yield name, rows, how, table, buffer[offset:offset + table.size].reshape(table.shape)
            offset += table.size


def round_parts(model: Model, rows: int, mean_rows: int) -> tuple[list, list]:
    """(a round's parts, a full round's parts) as (table, rows, how) for `Replica.round`:
    every round, each table's `mean_rows` hottest rows averaged and the rest of its `rows`
    hottest added up; in a full round, those and every other row added up."""
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
    batch (`Model.run`'s hook), `finish()` after the last one. A round is sent once `interval`
    seconds of `clock` have passed since the last one landed, or `most` steps after the last
    was sent; with `every`, every `every` steps instead. It lands before the first step after
    it has arrived, or when the next is due (waiting for it); with `every`, before the step
    after it was sent: the same rounds at the same steps in every run (repeatable)."""

    def __init__(self, replica: Replica, hot: list, end: list, every: int | None = None,
                 interval: float = INTERVAL, most: int | None = None,
                 full_every: int | None = FULL_EVERY, clock: Callable = time.perf_counter):
        self.replica, self.hot, self.end = replica, hot, end
        self.every, self.interval, self.most = every, interval, most
        self.full_every, self.clock = full_every, clock
        self.since = 0  # steps since the last round was sent
        self.sent = self.landed = clock()

    def before(self, _batch) -> None:
        if self.replica.travelling is not None and (self.replica.ready() or self.overdue()):
            self.land()
        if self.replica.travelling is None and self.due(self.landed):
            self.replica.send(self.parts(), done=False)
            self.since, self.sent = 0, self.clock()
        self.since += 1

    def finish(self) -> None:
        """Join the rounds until every rank is done with its share, then combine every row.
        These rounds land as they are sent: this rank has nothing left to train meanwhile."""
        if self.replica.travelling is not None:
            self.land()
        while not self.replica.round(self.parts(), done=True):
            pass
        self.replica.round(self.end, done=True)

    def due(self, start: float) -> bool:
        """Whether `interval` has passed since `start` or `most` steps since the last round
        was sent; with `every`, whether it is `every` steps since."""
        if self.every is not None:
            return self.since == self.every
        return (self.most is not None and self.since >= self.most
                or self.clock() - start >= self.interval)

    def overdue(self) -> bool:
        """Whether the round under way must land now, waiting for it if it has not arrived:
        with `every`, at the step after it was sent; else once it has travelled as long as
        rounds are apart (a rank that never joins it is then found within the timeout)."""
        return self.every is not None or self.due(self.sent)

    def land(self) -> None:
        self.replica.land()
        self.landed = self.clock()

    def parts(self) -> list:
        """The next round's parts: the hot rows, or every row each `full_every`-th round (the
        same on every rank: they count the same rounds)."""
        full = self.full_every and (self.replica.rounds + 1) % self.full_every == 0
        return self.end if full else self.hot


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
    replica = Replica(tables, lambda buffer: gdd.allreduce_start(buffer, "sum"), world)
    most = max(1, ROUND_ROWS // (world * model.shape.batch))
    schedule = Schedule(replica, *round_parts(model, rows, mean_rows), every, most=most)
    words, losses, dropped = model.run(step, tables, stream, report, before=schedule.before)
    schedule.finish()
    words, dropped = gdd.allreduce_array(np.array([words, dropped], np.float64), "sum")
    if world == 1:
        return int(words), losses, int(dropped), "1 rank: no rounds (the one-process run)"
    k = hot["W_in"].stop - hot["W_in"].start
    when = f"{every} steps" if every else f"{INTERVAL:g} s (at most {most} steps)"
    line = (f"{world} ranks: {replica.rounds:,} rounds, one every {when}, combined the {k:,} "
            f"hottest rows of each table, every {FULL_EVERY}th round and at the end every row; "
            f"{replica.seconds:.1f} s in them on rank {me}")
    return int(words), losses, int(dropped), line
