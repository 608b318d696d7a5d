"""word2vec across processes that share no memory (examples/word2vec/distributed.py): the
round (its averaged rows the mean, its added-up rows the start plus every change, the other
rows untouched, the done flags), hierarchical softmax's hot rows, the schedule of rounds on
ranks with unequal steps per epoch (ranks as threads, a barrier as the collective: a rank
calling one collective more or less than another breaks it), one rank being the one-process
run bit for bit, and two gloo processes on the smoke corpus ending with bit-identical
replicas."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from examples.word2vec.distributed import Replica, Schedule, hot_rows, round_parts
from examples.word2vec.model import Shape, declare
from examples.word2vec.train import train
from examples.word2vec.vocab import huffman
from tests import word2vec_distributed_worker as worker
from tests.test_word2vec_models import COUNTS, topic_corpus

ROOT = Path(__file__).resolve().parent.parent


def tables(rng, vocab=7, dim=3):
    return {"W_in": rng.standard_normal((vocab, dim)).astype(np.float32),
            "W_out": rng.standard_normal((vocab - 1, dim)).astype(np.float32)}


def test_a_round_averages_its_mean_parts_adds_its_add_parts_and_leaves_the_rest(rng):
    """Two replicas from equal tables, each changed its own way: "mean" rows become the mean,
    "add" rows the start plus both changes, the other rows stay each replica's own."""
    start = tables(rng)
    a, b = ({name: t.copy() for name, t in start.items()} for _ in range(2))
    ranks = [Replica(a, None, 2), Replica(b, None, 2)]
    for t in (*a.values(), *b.values()):
        t += rng.standard_normal(t.shape).astype(t.dtype)
    before = {name: (a[name].copy(), b[name].copy()) for name in a}
    parts = [("W_in", slice(0, 3), "mean"), ("W_out", slice(4, 6), "mean"),
             ("W_in", slice(3, 5), "add")]
    summed = ranks[0].pack(parts, True) + ranks[1].pack(parts, False)
    assert [r.unpack(summed, parts) for r in ranks] == [False, False]  # one rank not done
    for name, rows, how in parts:
        np.testing.assert_array_equal(a[name][rows], b[name][rows])
        mine, theirs = (before[name][k][rows].astype(np.float64) for k in (0, 1))
        want = (mine + theirs) / 2 if how == "mean" else mine + theirs - start[name][rows]
        np.testing.assert_allclose(a[name][rows], want, rtol=1e-5, atol=1e-6)
    for name, untouched in (("W_in", slice(5, None)), ("W_out", slice(0, 4))):
        np.testing.assert_array_equal(a[name][untouched], before[name][0][untouched])
        np.testing.assert_array_equal(b[name][untouched], before[name][1][untouched])
    summed = ranks[0].pack(parts, True) + ranks[1].pack(parts, True)
    assert [r.unpack(summed, parts) for r in ranks] == [True, True]
    # an "add" part's next round adds the changes since this one, not since the start
    a["W_in"][3:5] += 1
    summed = ranks[0].pack(parts, False) + ranks[1].pack(parts, False)
    ranks[0].unpack(summed, parts)
    np.testing.assert_array_equal(a["W_in"][3:5], b["W_in"][3:5] + 1)


def test_hierarchical_softmaxs_hot_rows_are_its_most_visited_inner_nodes():
    tree = huffman(COUNTS)
    model = declare("sg", "hs", Shape(len(COUNTS), 3, 4), tree)
    on_path = tree.mask > 0
    visits = np.bincount(tree.points[on_path], weights=np.repeat(COUNTS, on_path.sum(1)),
                         minlength=len(COUNTS) - 1)
    hot = hot_rows(model, 3)
    assert hot["W_in"] == slice(0, 3)  # the most frequent words
    others = np.ones(len(visits), bool)
    others[hot["W_out"]] = False
    assert hot["W_out"].stop == len(COUNTS) - 1 and visits[hot["W_out"]].min() >= \
        visits[others].max()
    ns = hot_rows(declare("sg", "ns", Shape(len(COUNTS), 3, 4)), 100)
    assert ns == {"W_in": slice(0, 7), "W_out": slice(0, 7)}  # K past the vocabulary: all


class Threads:
    """Ranks as threads; `reduce(rank)` is their collective: each call waits for every rank's
    call and returns the sum of their buffers (a different buffer size fails the sum, a call
    the others do not make times the barrier out)."""

    def __init__(self, world):
        self.barrier = threading.Barrier(world, timeout=10)
        self.buffers, self.calls = [None] * world, [0] * world

    def reduce(self, rank):
        def collective(buffer):
            self.buffers[rank] = buffer.copy()
            self.calls[rank] += 1
            self.barrier.wait()
            total = np.sum(np.stack(self.buffers), axis=0)
            self.barrier.wait()
            return total
        return collective


@pytest.mark.parametrize(("steps", "every", "most"), [
    ([[5, 1, 4], [2, 6, 4]], 2, None),  # unequal epochs, the last rounds of each differ
    ([[1, 5, 2], [3, 0, 4]], 1, None),  # an epoch without a batch on rank 1
    ([[9, 3], [2, 7]], None, None),  # by time: rank r's clock runs r + 1 times as fast
    ([[9, 3], [2, 7]], None, 3),  # by time, or after 3 steps where that comes first
    ([[3, 3], [3, 3], [0, 1]], 2, None),  # three ranks
], ids=["unequal", "empty-epoch", "timed", "timed-at-most", "three"])
@pytest.mark.parametrize("full_every", [None, 2], ids=["hot-rounds", "every-2nd-round-full"])
def test_ranks_with_unequal_steps_make_the_same_rounds_and_end_equal(steps, every, most,
                                                                     full_every):
    """Also with every 2nd round combining every row: a rank waiting at its epoch's end must
    make the full rounds where the others make them (their buffers differ in size)."""
    group, world = Threads(len(steps)), len(steps)
    model_of_nine = declare("sg", "hs", Shape(9, 3, 4), huffman(np.arange(9, 0, -1)))
    ends, errors = [None] * world, []

    def rank(r):
        try:
            rng = np.random.default_rng(r)
            mine = tables(np.random.default_rng(0), vocab=9)  # equal at the start
            replica = Replica(mine, group.reduce(r), world)
            hot, end = round_parts(model_of_nine, 3, 1)
            ticks = itertools.count(0, r + 1)
            schedule = Schedule(replica, hot, end, epochs=len(steps[r]), every=every,
                                interval=4, most=most, full_every=full_every,
                                clock=lambda: next(ticks))
            for epoch, count in enumerate(steps[r]):
                for _ in range(count):
                    schedule.before(SimpleNamespace(epoch=epoch))
                    for t in mine.values():  # the step: this rank's own change of every row
                        t += rng.standard_normal(t.shape).astype(t.dtype)
            schedule.finish()
            ends[r] = mine
        except Exception as error:  # noqa: BLE001 - reported by the test
            errors.append(error)
            group.barrier.abort()

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(set(group.calls)) == 1, group.calls
    assert group.calls[0] > 2 * len(steps[0])  # rounds within the epochs, not at their ends only
    for r in range(1, world):
        for name in ends[0]:
            np.testing.assert_array_equal(ends[r][name], ends[0][name])


@pytest.mark.parametrize(("every", "most", "rounds_after"), [
    (None, None, [4, 8, 12]),  # a step takes 0.03 s: 0.1 s has passed after 4 of them
    (None, 3, [3, 6, 9, 12]),  # at most 3 steps apart
    (5, None, [5, 10]),  # every 5 steps, whatever the time
], ids=["every-0.1-s", "at-most-3-steps", "every-5-steps"])
def test_a_round_comes_once_the_interval_has_passed_or_after_most_steps(every, most,
                                                                        rounds_after):
    """The time between rounds is counted from the end of the last one: a round (here 0.05 s)
    is not training."""
    steps, rounds_at = [0], []
    replica = SimpleNamespace(rounds=0, round=lambda parts, done: rounds_at.append(steps[0]))
    schedule = Schedule(replica, [], [], epochs=1, every=every, interval=0.1, most=most,
                        full_every=None, clock=lambda: 0.03 * steps[0] + 0.05 * len(rounds_at))
    for _ in range(13):
        schedule.before(SimpleNamespace(epoch=0))
        steps[0] += 1
    assert rounds_at == rounds_after


def test_one_rank_trains_as_one_process_bit_for_bit(rng):
    """Without a process group the rounds are the identity: the hook changes nothing."""
    data = topic_corpus(rng)
    model = declare("sg", "ns", Shape(len(data.vocab), 8, 32, window=2, negative=3,
                                      dtype="float32"))
    settings = {"epochs": 3, "window": 2, "sample": 0, "negative": 3, "seed": 1,
                "progress": False}
    one, ranked = train(model, data, **settings), train(model, data, sync_rows=4, **settings)
    assert ranked.words == one.words and ranked.note.startswith("1 rank:")
    for name, value in one.tables.items():
        np.testing.assert_array_equal(ranked.tables[name], value)


def two_ranks(directory: Path, every: int | None = None) -> list[dict]:
    """Two gloo ranks (`tests.word2vec_distributed_worker`) on the smoke corpus, rounds every
    `every` steps (None: every 0.1 s): each rank's tables and the words of both."""
    pytest.importorskip("torch")
    pytest.importorskip("gensim")  # the smoke corpus is gensim's Lee corpus
    directory.mkdir(exist_ok=True)
    procs = []
    for r in range(2):
        log = open(directory / f"rank-{r}.log", "w")  # noqa: SIM115 - closed with the process
        procs.append((subprocess.Popen(
            [sys.executable, "-m", "tests.word2vec_distributed_worker", str(r), "2",
             str(directory / "rendezvous"), str(directory / f"rank-{r}.npz"), str(every or 0)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT), log))
    try:
        for r, (proc, log) in enumerate(procs):
            proc.wait(timeout=300)
            log.close()
            assert proc.returncode == 0, (directory / f"rank-{r}.log").read_text()[-3000:]
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
    return [dict(np.load(directory / f"rank-{r}.npz")) for r in range(2)]


def test_two_processes_end_with_bit_identical_replicas(tmp_path):
    """Two gloo ranks on the smoke corpus, 100 hot rows of its 1,759: every row's replicas are
    bit-identical at the end, and together the ranks trained on every line once."""
    ranks = two_ranks(tmp_path)
    for name in ("W_in", "W_out"):
        np.testing.assert_array_equal(ranks[0][name], ranks[1][name], err_msg=name)
    one = worker.run()  # this process alone on the whole corpus
    assert abs(int(ranks[0]["words"]) - one.words) <= 0.02 * one.words
    assert np.abs(ranks[0]["W_out"]).max() > 0  # trained: W_out starts at zeros


def test_fixed_round_steps_repeat_the_run(tmp_path):
    """`--sync-every`: the same rounds at the same steps, so the same tables bit for bit in
    every run (by time, each run's rounds fall where the clock puts them)."""
    first, again = two_ranks(tmp_path / "first", every=5), two_ranks(tmp_path / "again", every=5)
    for name in ("W_in", "W_out"):
        np.testing.assert_array_equal(first[0][name], again[0][name], err_msg=name)
        np.testing.assert_array_equal(first[0][name], first[1][name], err_msg=name)
