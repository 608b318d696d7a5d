"""The four word2vec graphs (examples/word2vec/model.py): their gradients, their compiled steps,
word2vec.c's update rules, sparse updates, and training that lowers the loss. No gensim."""

from __future__ import annotations

import numpy as np
import pytest

import graphdl as gd
from examples.word2vec import parallel
from examples.word2vec.batches import Batch
from examples.word2vec.model import Shape, declare
from examples.word2vec.train import Data, train
from examples.word2vec.vocab import Vocab, encode_lines, huffman

KINDS = [(kind, loss) for kind in ("sg", "cbow") for loss in ("ns", "hs")]
COUNTS = np.array([40, 30, 20, 12, 9, 6, 4])  # a tiny vocabulary, most frequent first


def tiny_model(kind, loss, batch=4, dtype="float64", window=2, negative=2,
               cbow_update="word2vec"):
    shape = Shape(len(COUNTS), 3, batch, window=window, negative=negative, dtype=dtype)
    return declare(kind, loss, shape, huffman(COUNTS), cbow_update)


def random_batch(rng, model, distinct_negatives=False):
    """A batch of the model's shape; CBOW rows keep at least one context word."""
    s, V = model.shape, model.shape.vocab
    centers = rng.integers(0, V, s.batch)
    if model.kind == "sg":
        contexts, mask = rng.integers(0, V, s.batch), None
    else:
        contexts = rng.integers(0, V, (s.batch, 2 * s.window))
        mask = (rng.random((s.batch, 2 * s.window)) < 0.6).astype(np.float32)
        mask[:, 0] = 1
    predicted = contexts if model.kind == "sg" else centers
    def pick(word):
        if distinct_negatives:
            return rng.permutation(np.setdiff1d(np.arange(V), [word]))[: s.negative]
        return rng.integers(0, V, s.negative)

    negatives = np.stack([pick(word) for word in predicted])
    return Batch(centers, contexts, mask, negatives, 0.3, s.batch)


def random_tables(rng, model):
    """Tables away from word2vec.c's zero W_out, so every gradient term is exercised."""
    tables = model.tables(rng)
    return {k: rng.standard_normal(t.shape).astype(t.dtype) for k, t in tables.items()}


def feeds(model, batch, tables):
    return {**{k: t.copy() for k, t in tables.items()}, **model.feeds(batch)}


@pytest.mark.parametrize(("kind", "loss"), KINDS)
def test_gradient_equals_finite_differences(kind, loss, rng):
    model = tiny_model(kind, loss, cbow_update="gradient")  # word2vec.c's rule is no gradient
    fed = feeds(model, random_batch(rng, model), random_tables(rng, model))
    del fed["lr"]  # the loss does not read it
    tables = list(model.updates)
    grads = gd.evaluate(list(gd.grad(model.loss, tables)), fed)
    value = gd.compile(model.loss)
    eps = 1e-6
    for table, grad in zip(tables, grads):
        numeric = np.zeros_like(grad)
        for at in np.ndindex(grad.shape):
            up, down = {**fed, table.name: fed[table.name].copy()}, dict(fed)
            up[table.name][at] += eps
            down[table.name] = fed[table.name].copy()
            down[table.name][at] -= eps
            numeric[at] = (value(up) - value(down)) / (2 * eps)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8, err_msg=table.name)


@pytest.mark.parametrize(("kind", "loss"), KINDS)
def test_compiled_step_equals_the_interpreter(kind, loss, rng):
    model = tiny_model(kind, loss, batch=16, dtype="float32", window=3, negative=4)
    fed = feeds(model, random_batch(rng, model), random_tables(rng, model))
    targets = list(model.updates)
    want_loss, *want = gd.evaluate([model.loss, *model.updates.values()], fed)
    got_loss = model.compile()(fed)  # writes the new tables into fed
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5)
    for table, new in zip(targets, want):
        np.testing.assert_allclose(fed[table.name], new, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("kind", "loss"), KINDS)
def test_generated_step_updates_only_the_addressed_rows(kind, loss):
    model = tiny_model(kind, loss, batch=8, dtype="float32")
    source = model.compile().source
    assert "_scatter_update(W_in" in source and "_scatter_update(W_out" in source
    assert "_scatter_add" not in source and "numpy.zeros((7, 3)" not in source
    assert "numpy.zeros((6, 3)" not in source  # HS's inner-node table


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def word2vec_c_step(model, batch, tables):
    """word2vec.c's update of one row (batch of 1), transcribed from its training loop: for
    each output row o with label y, g = (y - σ(h·o))·lr; the input error gathers g·o, o
    moves by g·h. CBOW: h is the context mean; word2vec.c adds the error to each context row
    unscaled, the true gradient (cbow_update="gradient") divides it by the context size."""
    W_in, W_out = tables["W_in"].copy(), tables["W_out"].copy()
    if model.kind == "sg":
        inputs, weight = batch.centers[:1], 1.0
        predicted = batch.contexts[0]
    else:
        inputs = batch.contexts[0][batch.mask[0] > 0]
        weight, predicted = 1.0, batch.centers[0]
        if model.cbow_update == "gradient":
            weight = 1.0 / len(inputs)
    h = W_in[inputs].mean(axis=0)
    if model.loss_kind == "ns":
        rows = np.concatenate([[predicted], batch.negatives[0]])
        labels = np.array([1.0] + [0.0] * len(batch.negatives[0]))
    else:
        tree, depth = model.huffman, model.huffman.lengths[predicted]
        rows, labels = tree.points[predicted, :depth], 1 - tree.codes[predicted, :depth]
    g = (labels - sigmoid(W_out[rows] @ h)) * batch.lr
    error = g @ W_out[rows]
    W_out[rows] += g[:, None] * h
    np.add.at(W_in, inputs, weight * error)
    return W_in, W_out


@pytest.mark.parametrize(("kind", "loss", "cbow_update"),
                         [(*k, "word2vec") for k in KINDS] + [("cbow", "ns", "gradient"),
                                                               ("cbow", "hs", "gradient")])
def test_one_row_step_is_word2vec_c_update(kind, loss, cbow_update, rng):
    """The losses' derivation: the SGD step on one row equals word2vec.c's per-word rule
    (negatives distinct, as word2vec.c's sequential updates would otherwise differ); CBOW's
    true gradient, the same with the input error divided by the context size."""
    model = tiny_model(kind, loss, batch=1, cbow_update=cbow_update)
    batch = random_batch(rng, model, distinct_negatives=True)
    tables = random_tables(rng, model)
    want_in, want_out = word2vec_c_step(model, batch, tables)
    fed = feeds(model, batch, tables)
    model.compile()(fed)
    np.testing.assert_allclose(fed["W_in"], want_in, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fed["W_out"], want_out, rtol=1e-12, atol=1e-12)


def topic_corpus(rng, lines=300, length=12):
    """Two topics of eight words; each line draws from one topic: contexts are predictable."""
    topics = [[f"a{k}" for k in range(8)], [f"b{k}" for k in range(8)]]
    text = [list(rng.choice(topics[rng.integers(2)], length)) for _ in range(lines)]
    words, encoded = encode_lines(text)
    vocab = Vocab.build(words, encoded, min_count=1)
    return Data(vocab, vocab.restrict(encoded))


@pytest.mark.parametrize(("kind", "loss"), KINDS)
def test_training_lowers_the_loss(kind, loss, rng):
    data = topic_corpus(rng)
    shape = Shape(len(data.vocab), 8, 32, window=2, negative=3, dtype="float32")
    model = declare(kind, loss, shape, huffman(data.vocab.counts))
    result = train(model, data, epochs=4, window=2, sample=0, negative=3, seed=1,
                   progress=False)
    assert len(result.losses) >= 200
    first, last = result.losses[:20].mean(), result.losses[-20:].mean()
    assert last < 0.85 * first, (first, last)
    W_in = result.tables["W_in"]
    unit = W_in / np.linalg.norm(W_in, axis=1, keepdims=True)
    topic = np.array([w[0] == "a" for w in data.vocab.words])
    same = (unit[topic] @ unit[topic].T).mean()
    across = (unit[topic] @ unit[~topic].T).mean()
    assert same > across + 0.3, (same, across)  # the two topics are told apart


def test_a_batch_of_another_size_is_refused(rng):
    model = tiny_model("sg", "ns", batch=4)
    other = random_batch(rng, tiny_model("sg", "ns", batch=3))
    with pytest.raises(ValueError, match="batches of 4 rows, got 3"):
        model.feeds(other)


def test_hierarchical_softmax_without_a_tree_is_refused():
    with pytest.raises(ValueError, match="needs the vocabulary's huffman"):
        declare("sg", "hs", Shape(7, 3, 4))


def test_two_worker_processes_train_the_shared_tables(rng):
    """examples/word2vec/parallel.py: two processes, one table in shared memory, each on its
    share of the lines; the topics are told apart as by one process."""
    data = topic_corpus(rng)
    shape = Shape(len(data.vocab), 8, 32, window=2, negative=3, dtype="float32")
    model = declare("sg", "ns", shape)
    result = train(model, data, epochs=4, window=2, sample=0, negative=3, seed=1,
                   progress=False, workers=2)
    one = train(model, data, epochs=4, window=2, sample=0, negative=3, seed=1, progress=False)
    # Every line is trained on once: a share lost or trained twice would move the count by
    # half. It moves a little as it is: the processes draw their own windows, cut their own
    # batches (a center split by a batch boundary counts in both) and drop their own last one.
    assert abs(result.words - one.words) <= 0.02 * one.words
    assert len(result.losses) >= 200
    unit = result.tables["W_in"] / np.linalg.norm(result.tables["W_in"], axis=1, keepdims=True)
    topic = np.array([w[0] == "a" for w in data.vocab.words])
    same = (unit[topic] @ unit[topic].T).mean()
    across = (unit[topic] @ unit[~topic].T).mean()
    assert same > across + 0.3, (same, across)


def test_shares_cut_the_corpus_at_line_boundaries(rng):
    data = topic_corpus(rng, lines=31)
    parts = parallel.shares(data.corpus, 3)
    assert np.array_equal(np.concatenate([p.ids for p in parts]), data.corpus.ids)
    assert sum(len(p.offsets) - 1 for p in parts) == 31
    assert all(p.offsets[0] == 0 and p.offsets[-1] == len(p.ids) for p in parts)
    assert max(len(p.ids) for p in parts) - min(len(p.ids) for p in parts) <= 12


def test_a_worker_killed_outright_fails_the_training_instead_of_hanging_it():
    """A process that dies without a result (killed by a signal: exit code -9) never reports;
    the parent raises, naming the exit code, and stops the others."""

    class Process:
        def __init__(self, exitcode):
            self.exitcode, self.killed = exitcode, False

        def kill(self):
            self.killed = True

    running, killed = Process(None), Process(-9)
    parallel._refuse_silent_deaths([running, Process(0)])  # running and finished ones: wait
    with pytest.raises(RuntimeError, match=r"died without reporting \(exit code -9\)"):
        parallel._refuse_silent_deaths([running, killed])
    assert running.killed
