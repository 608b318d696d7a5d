"""The four word2vec models as graphdl graphs: skip-gram or CBOW, each with negative sampling
(NS) or hierarchical softmax (HS), one minibatch SGD step each.

The input vector of a row: skip-gram, v = W_in[center]; CBOW, h = Σ mask·W_in[context] / Σ mask
(the mean of the context rows inside the window). The predicted word: skip-gram, the context
word (`batches` pairs each center with each context word); CBOW, the center.

Losses, summed over the batch (so each row moves by `lr` times its own gradient, the step
word2vec.c takes per word; the mean would divide the rate by the batch size):
- NS: −log σ(v·u_target) − Σ_k log σ(−v·u_neg_k), u rows of W_out (V, D).
- HS: word2vec.c walks the Huffman path of the predicted word; at depth d it computes
  f = v·syn1[point_d] and adds g = (1 − code_d − σ(f))·lr times syn1[point_d] to v's gradient
  and g·v to syn1[point_d]. 1 − code − σ(f) is d/df of
  (1 − code)·log σ(f) + code·log σ(−f) = log σ((1 − 2·code)·f) for code ∈ {0, 1},
  so word2vec.c's step is gradient descent on
  −Σ_d mask_d · log σ((1 − 2·code_d) · v·W_out[point_d]),  W_out (V − 1, D) the inner nodes.
  (word2vec.c and gensim skip the depths where |f| ≥ 6, sigmoid's table edge; this graph does
  not: log σ is computed stably everywhere.)

A minibatch step computes every row's update from the same tables and adds them up, where
word2vec.c updates one pair at a time from the tables the previous pair left. Rows that
address one table row add up: harmless for NS's output rows at 1,024 rows a step, but HS's
root is on every row's path and moves by the sum of all of them. At 1,024 rows that
overshoots: the scores overflowed within 5 epochs on the full corpus (skip-gram and CBOW).
HS steps fewer rows at a time instead (`BATCH`) and stays the plain gradient of the summed
loss. CBOW rows each update up to 2·window context rows, and a frequent word sits in the
contexts of many rows of a step: the fewer rows, the closer to word2vec.c's sequential
updates. Measured on the full corpus, 5 epochs, analogies: CBOW HS 10.09 % at 256 rows,
10.38 % at 128, 10.70 % at 64 (gensim 11.36 %); CBOW NS 11.32 % at 1,024, 11.70 % at 256
(gensim 12.19 %); skip-gram HS 14.87 % at 256 (gensim 14.95 %).

CBOW's update comes in two forms (`cbow_update`). word2vec.c and gensim (cbow_mean=1) average
the context rows forwards but add the unscaled error to every context row: that is not the
gradient of the loss, whose share for each row is the error divided by Σ mask. "word2vec" (the
default) declares word2vec.c's rule as a graph: h = stop_gradient(mean) + (total −
stop_gradient(total)), which is the mean forwards (total − total is exactly 0) and sends each
context row the whole error backwards. "gradient" uses the mean itself: the true gradient,
which the finite-difference tests check, with steps on W_in 1/(context size) of word2vec.c's
(measured on the full corpus, 5 epochs: 5.6 % analogies where gensim gets 12.2 %).

Every update is `W - lr * dW` with dW a sum of `take`'s gradients, so both backends touch only
the rows the batch addresses: NumPy's `_scatter_update` (where a gradient is an outer product,
such as W_out's (σ(score) − label) times the input vector, it gets the two factors and sums each
row's share as a sparse matrix times the vectors), CUDA's atomic adds into the table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import graphdl as gd

from .batches import Batch, batches, expected_rows, prefetched
from .vocab import Encoded, Huffman

MODELS = ("sg", "cbow")
LOSSES = ("ns", "hs")
CBOW_UPDATES = ("word2vec", "gradient")
# Rows a step takes on the full corpus (see the docstring), by (model, loss).
BATCH = {("sg", "ns"): 1024, ("sg", "hs"): 256, ("cbow", "ns"): 256, ("cbow", "hs"): 64}


@dataclass(frozen=True)
class Shape:
    """What fixes a model's graph: the table and batch sizes."""

    vocab: int
    dim: int
    batch: int
    window: int = 5  # CBOW: rows hold 2*window context slots
    negative: int = 5  # NS: negatives per row
    depth: int = 0  # HS: the deepest Huffman path
    dtype: str = "float32"


@dataclass(frozen=True)
class Model:
    """A declared model: its summed loss, its SGD updates, and how to feed it a batch."""

    kind: str  # sg or cbow
    loss_kind: str  # ns or hs
    shape: Shape
    loss: gd.Node
    updates: dict
    huffman: Huffman | None
    cbow_update: str = "word2vec"  # CBOW: word2vec.c's rule or the true gradient

    def tables(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """word2vec.c's initialisation: W_in uniform in [-0.5/dim, 0.5/dim), W_out zeros."""
        s = self.shape
        rows_out = s.vocab - 1 if self.loss_kind == "hs" else s.vocab
        w_in = (rng.random((s.vocab, s.dim)) - 0.5) / s.dim
        return {"W_in": w_in.astype(s.dtype), "W_out": np.zeros((rows_out, s.dim), s.dtype)}

    def feeds(self, batch: Batch) -> dict[str, np.ndarray]:
        """The per-batch inputs (everything but the tables) for a full-sized batch."""
        if len(batch.centers) != self.shape.batch:
            raise ValueError(f"the model is compiled for batches of {self.shape.batch} rows, "
                             f"got {len(batch.centers)}")
        fed = {"lr": np.asarray(batch.lr, self.shape.dtype)}
        if self.kind == "sg":
            fed["center"], target = batch.centers, batch.contexts
        else:
            fed["context"], fed["mask"] = batch.contexts, batch.mask.astype(self.shape.dtype)
            target = batch.centers
        if self.loss_kind == "ns":
            fed["target"], fed["negatives"] = target, batch.negatives
        else:
            h = self.huffman
            fed["points"] = h.points[target]
            fed["codes"] = h.codes[target].astype(self.shape.dtype)
            fed["path_mask"] = h.mask[target].astype(self.shape.dtype)
        return fed

    def compile(self, **options):
        return gd.compile(self.loss, updates=self.updates, **options)

    @property
    def mode(self) -> str:
        """Its rows' kind for `batches`: skip-gram's pairs or CBOW's windows."""
        return "skipgram" if self.kind == "sg" else "cbow"

    def expected_rows(self, corpus: Encoded, counts: np.ndarray, window: int,
                      sample: float) -> np.ndarray:
        """Each corpus position's rows per epoch in expectation (`batches.expected_rows`)."""
        return expected_rows(corpus, counts, self.mode, window, sample)

    def stream(self, corpus: Encoded, counts: np.ndarray, *, epochs: int, window: int,
               sample: float, negative: int, seed: int):
        """The batches this model steps on (`batches.batches` in its mode, of its batch size;
        negatives for NS only), drawn from `seed`."""
        return batches(corpus, counts, self.mode,
                       window=window, batch_size=self.shape.batch,
                       negative=negative if self.loss_kind == "ns" else 0, epochs=epochs,
                       sample=sample, seed=seed)

    def run(self, step, tables: dict, stream, report=None,
            before=None) -> tuple[int, np.ndarray, int]:
        """The compiled `step` over the full batches of `stream` (their feeds made on a
        background thread), updating `tables` in place: (center words trained on, each step's
        loss per row, rows of the short batches dropped). `report(words, loss per row)` after
        each step; `before(batch)` before each batch, on this thread (`distributed` combines
        the tables there)."""
        words, dropped, losses = 0, 0, []
        full = self.shape.batch
        for batch, fed in prefetched((b, self.feeds(b) if len(b.centers) == full else None)
                                     for b in stream):
            if before is not None:
                before(batch)
            if fed is None:
                dropped += len(batch.centers)
                continue
            losses.append(float(step({**tables, **fed})) / full)
            words += batch.words
            if report is not None:
                report(batch.words, losses[-1])
        return words, np.array(losses), dropped


def _input_vectors(kind: str, W_in, s: Shape, cbow_update: str):
    """(B, D): the center's row (skip-gram) or the masked mean of the context rows (CBOW),
    differentiated as `cbow_update` says (see the module's docstring)."""
    if kind == "sg":
        return gd.take(W_in, gd.input("center", (s.batch,), "int64"), axis=0)
    context = gd.input("context", (s.batch, 2 * s.window), "int64")
    mask = gd.input("mask", (s.batch, 2 * s.window), s.dtype)
    rows = gd.take(W_in, context, axis=0)  # (B, 2w, D)
    total = gd.sum(rows * gd.expand_dims(mask, 2), axis=1)
    mean = total / gd.sum(mask, axis=1, keepdims=True)
    if cbow_update == "gradient":
        return mean
    return gd.stop_gradient(mean) + (total - gd.stop_gradient(total))


def _ns_loss(v, W_out, s: Shape):
    target = gd.input("target", (s.batch,), "int64")
    negatives = gd.input("negatives", (s.batch, s.negative), "int64")
    positive = gd.sum(v * gd.take(W_out, target, axis=0), axis=1)
    negative = gd.sum(gd.expand_dims(v, 1) * gd.take(W_out, negatives, axis=0), axis=2)
    return -(gd.sum(gd.log_sigmoid(positive)) + gd.sum(gd.log_sigmoid(-negative)))


def _hs_loss(v, W_out, s: Shape):
    points = gd.input("points", (s.batch, s.depth), "int64")
    codes = gd.input("codes", (s.batch, s.depth), s.dtype)
    path_mask = gd.input("path_mask", (s.batch, s.depth), s.dtype)
    f = gd.sum(gd.expand_dims(v, 1) * gd.take(W_out, points, axis=0), axis=2)  # (B, depth)
    return -gd.sum(path_mask * gd.log_sigmoid((1 - 2 * codes) * f))


def declare(kind: str, loss_kind: str, shape: Shape, huffman: Huffman | None = None,
            cbow_update: str = "word2vec") -> Model:
    """The model `kind` (sg, cbow) with `loss_kind` (ns, hs) for batches of `shape`; HS needs
    the vocabulary's Huffman tree (its depth replaces shape.depth). `cbow_update`: word2vec
    (word2vec.c's rule) or gradient (the true gradient of the mean)."""
    if kind not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {kind!r}")
    if loss_kind not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss_kind!r}")
    if cbow_update not in CBOW_UPDATES:
        raise ValueError(f"cbow_update must be one of {CBOW_UPDATES}, got {cbow_update!r}")
    if loss_kind == "hs":
        if huffman is None:
            raise ValueError("hierarchical softmax (loss 'hs') needs the vocabulary's huffman")
        shape = Shape(**{**shape.__dict__, "depth": huffman.points.shape[1]})
    elif shape.negative < 1:
        raise ValueError(f"negative sampling needs negative >= 1, got {shape.negative}")
    rows_out = shape.vocab - 1 if loss_kind == "hs" else shape.vocab
    W_in = gd.input("W_in", (shape.vocab, shape.dim), shape.dtype)
    W_out = gd.input("W_out", (rows_out, shape.dim), shape.dtype)
    lr = gd.input("lr", (), shape.dtype)
    v = _input_vectors(kind, W_in, shape, cbow_update)
    loss = (_ns_loss if loss_kind == "ns" else _hs_loss)(v, W_out, shape)
    d_in, d_out = gd.grad(loss, [W_in, W_out])
    updates = {W_in: W_in - lr * d_in, W_out: W_out - lr * d_out}
    return Model(kind, loss_kind, shape, loss, updates, huffman if loss_kind == "hs" else None,
                 cbow_update)
