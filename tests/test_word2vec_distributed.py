"""word2vec across processes that share no memory (examples/word2vec/distributed.py): the
round (its averaged rows the mean, its added-up rows the start plus every change, the other
rows untouched, the done flags), a round landing after the ranks trained on (their steps
kept), hierarchical softmax's hot rows, the schedule of rounds on ranks with unequal steps per
epoch (ranks as threads, their collective a sum that waits for every rank's call: a rank
calling one collective more or less than another breaks it), when rounds are sent and land,
one rank being the one-process run bit for bit, and two gloo processes on the smoke corpus
ending with bit-identical replicas."""

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


def changed(rng, replicas):
    """Each replica's every row moved its own way (a rank's steps)."""
    for t in (t for tables in replicas for t in tables.values()):
        t += rng.standard_normal(t.shape).astype(t.dtype)


PARTS = [("W_in", slice(0, 3), "mean"), ("W_out", slice(4, 6), "mean"),
         ("W_in", slice(3, 5), "add")]


def two_changed_replicas(rng):
    """Two ranks' Replicas of equal tables, on one `Group`, each table then changed its own
    way: (the tables at the start, the two ranks' tables, their Replicas, a copy of both as
    changed)."""
    start = tables(rng)
    a, b = ({name: t.copy() for name, t in start.items()} for _ in range(2))
    group = Group(2)
    ranks = [Replica(a, group.start(0), 2), Replica(b, group.start(1), 2)]
    changed(rng, (a, b))
    return start, a, b, ranks, {name: (a[name].copy(), b[name].copy()) for name in a}


def exact_round(ranks, done):
    """`Replica.round` of every rank, made from one thread: all send, then all land."""
    for r in ranks:
        r.send(PARTS, done)
    return [r.land(exact=True) for r in ranks]


def test_a_round_averages_its_mean_parts_adds_its_add_parts_and_leaves_the_rest(rng):
    """Two replicas from equal tables, each changed its own way: "mean" rows become the mean,
    "add" rows the start plus both changes, the other rows stay each replica's own."""
    start, a, b, ranks, before = two_changed_replicas(rng)
    ranks[0].send(PARTS, True)
    ranks[1].send(PARTS, False)
    assert [r.land(exact=True) for r in ranks] == [False, False]  # one rank not done
    for name, rows, how in PARTS:
        np.testing.assert_array_equal(a[name][rows], b[name][rows])
        mine, theirs = (before[name][k][rows].astype(np.float64) for k in (0, 1))
        want = (mine + theirs) / 2 if how == "mean" else mine + theirs - start[name][rows]
        np.testing.assert_allclose(a[name][rows], want, rtol=1e-5, atol=1e-6)
    for name, untouched in (("W_in", slice(5, None)), ("W_out", slice(0, 4))):
        np.testing.assert_array_equal(a[name][untouched], before[name][0][untouched])
        np.testing.assert_array_equal(b[name][untouched], before[name][1][untouched])
    assert exact_round(ranks, True) == [True, True]
    # an "add" part's next round adds the changes since this one, not since the start
    a["W_in"][3:5] += 1
    for r in ranks:
        r.send(PARTS, False)
    ranks[0].land(exact=True)
    np.testing.assert_array_equal(a["W_in"][3:5], b["W_in"][3:5] + 1)


def test_a_round_that_travelled_while_the_ranks_trained_keeps_their_steps(rng):
    """Rows that moved between sending and landing: each lands at the combined value plus its
    own steps since it sent, and the next round adds those steps too."""
    start, a, b, ranks, sent = two_changed_replicas(rng)
    for r in ranks:
        r.send(PARTS, False)
    changed(rng, (a, b))  # trained on while the round travelled
    moved = {name: (a[name] - sent[name][0], b[name] - sent[name][1]) for name in a}
    assert all(r.ready() for r in ranks)
    for r in ranks:
        r.land()
    for name, rows, how in PARTS:
        mine, theirs = (sent[name][k][rows].astype(np.float64) for k in (0, 1))
        combined = (mine + theirs) / 2 if how == "mean" else mine + theirs - start[name][rows]
        for k, replica in enumerate((a, b)):
            np.testing.assert_allclose(replica[name][rows], combined + moved[name][k][rows],
                                       rtol=1e-5, atol=1e-5)
    assert exact_round(ranks, True) == [True, True]
    for name, rows, _ in PARTS:
        np.testing.assert_array_equal(a[name][rows], b[name][rows])
    # the add rows: the start plus every step of both ranks, the ones taken meanwhile too
    steps = sum(sent["W_in"][k] - start["W_in"] + moved["W_in"][k] for k in (0, 1))
    np.testing.assert_allclose(a["W_in"][3:5], (start["W_in"] + steps)[3:5], rtol=1e-5,
                               atol=1e-5)


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


class Group:
    """Ranks' collective, as torch.distributed's started allreduce: `start(rank)` is rank's
    `start(buffer)`; the n-th call of every rank is one sum, `ready()` once every rank has
    made it, and `wait()` waits for that (10 s at most: a call the others never make fails)
    and sums the buffers, in rank order, into the caller's (a different size fails)."""

    def __init__(self, world):
        self.world, self.calls = world, [0] * world
        self.sent: dict[int, dict[int, np.ndarray]] = {}
        self.changed = threading.Condition()

    def start(self, rank):
        def collective(buffer):
            with self.changed:
                call, self.calls[rank] = self.calls[rank], self.calls[rank] + 1
                self.sent.setdefault(call, {})[rank] = buffer.copy()
                self.changed.notify_all()
            return SimpleNamespace(ready=lambda: self.arrived(call),
                                   wait=lambda: self.wait(call, buffer))
        return collective

    def arrived(self, call):
        return len(self.sent[call]) == self.world

    def wait(self, call, buffer):
        with self.changed:
            if not self.changed.wait_for(lambda: self.arrived(call), timeout=10):
                raise TimeoutError(f"collective #{call}: only ranks {sorted(self.sent[call])}")
            buffer[...] = np.sum([self.sent[call][r] for r in range(self.world)], axis=0)
        return buffer


@pytest.mark.parametrize(("steps", "every", "most"), [
    ([10, 12], 2, None),  # unequal shares: the last rounds of each differ
    ([8, 0], 1, None),  # a share without a batch
    ([12, 9], None, None),  # by time: rank r's clock runs r + 1 times as fast
    ([12, 9], None, 3),  # by time, or after 3 steps where that comes first
    ([6, 6, 1], 2, None),  # three ranks
], ids=["unequal", "no-batch", "timed", "timed-at-most", "three"])
@pytest.mark.parametrize("full_every", [None, 2], ids=["hot-rounds", "every-2nd-round-full"])
def test_ranks_with_unequal_steps_make_the_same_rounds_and_end_equal(steps, every, most,
                                                                     full_every):
    """Also with every 2nd round combining every row: a rank waiting at the end must make the
    full rounds where the others make them (their buffers differ in size). No step is lost or
    counted twice: every row that is added up (all but the averaged hottest) ends at its start
    plus every rank's steps."""
    group, world = Group(len(steps)), len(steps)
    model_of_nine = declare("sg", "hs", Shape(9, 3, 4), huffman(np.arange(9, 0, -1)))
    start = tables(np.random.default_rng(0), vocab=9)
    ends, errors, sent = [None] * world, [], [0] * world
    moved = [{name: np.zeros(t.shape) for name, t in start.items()} for _ in range(world)]

    def rank(r):
        try:
            rng = np.random.default_rng(r)
            mine = {name: t.copy() for name, t in start.items()}  # equal at the start
            replica = Replica(mine, group.start(r), world)
            hot, end = round_parts(model_of_nine, 3, 1)
            ticks = itertools.count(0, r + 1)
            schedule = Schedule(replica, hot, end, every=every, interval=4, most=most,
                                full_every=full_every, clock=lambda: next(ticks))
            for _ in range(steps[r]):
                schedule.before(None)
                for name, t in mine.items():  # the step: this rank's own change of every row
                    change = rng.standard_normal(t.shape).astype(t.dtype)
                    t += change
                    moved[r][name] += change
            sent[r] = replica.rounds
            schedule.finish()
            ends[r] = mine
        except Exception as error:  # noqa: BLE001 - reported by the test
            errors.append(error)

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(set(group.calls)) == 1, group.calls
    assert max(sent) >= 2  # rounds while the ranks trained, not at the end only
    for r in range(1, world):
        for name in ends[0]:
            np.testing.assert_array_equal(ends[r][name], ends[0][name])
    for name, added in (("W_in", slice(1, None)), ("W_out", slice(0, 7))):  # all but M = 1
        steps_of_all = start[name][added] + sum(m[name][added] for m in moved)
        np.testing.assert_allclose(ends[0][name][added], steps_of_all, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("every", "most", "travel", "sent", "landed"), [
    (None, None, 1, [4, 9], [5, 10]),  # 0.1 s after landing; lands the step after it arrives
    (None, None, 9, [4, 12], [8]),  # not arrived 0.1 s after sending: waited for
    (None, 3, 1, [3, 6, 9, 12], [4, 7, 10]),  # at most 3 steps after the last was sent
    (5, None, 9, [5, 10], [6, 11]),  # every 5 steps; lands at the next, arrived or not
], ids=["every-0.1-s", "overdue", "at-most-3-steps", "every-5-steps"])
def test_a_round_is_sent_once_due_and_lands_once_arrived_or_overdue(every, most, travel, sent,
                                                                    landed):
    """A step takes 0.03 s; a round arrives `travel` steps after it was sent. The interval is
    counted from the last landing: the next round leaves with this rank's steps since."""
    step, log = [0], {"sent": [], "landed": []}

    def send(parts, done):
        replica.travelling = step[0]
        log["sent"].append(step[0])

    def land():
        replica.travelling = None
        log["landed"].append(step[0])

    replica = SimpleNamespace(rounds=0, travelling=None, send=send, land=land,
                              ready=lambda: step[0] - replica.travelling >= travel)
    schedule = Schedule(replica, [], [], every=every, interval=0.1, most=most, full_every=None,
                        clock=lambda: 0.03 * step[0])
    for step[0] in range(13):
        schedule.before(SimpleNamespace(epoch=0))
    assert log == {"sent": sent, "landed": landed}


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
