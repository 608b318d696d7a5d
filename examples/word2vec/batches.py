"""Training pairs and batches for skip-gram and CBOW, vectorized over chunks of lines.

Per epoch and chunk, as word2vec.c: words are subsampled, then every kept center word draws
b in [0, window) and sees window - b words on each side within its own line. Skip-gram yields
(center, context) pairs; CBOW yields one row per center with its context padded to 2*window
(padding id 0, mask 0; centers with no context are skipped, as word2vec.c does); a batch
that straddles two epochs belongs to the epoch of its first row. Negatives are
drawn for the predicted word (skip-gram: the context; CBOW: the center) and never equal it.
The learning rate decays linearly from `lr` to `min_lr` over epochs * corpus words (counted
before subsampling); a batch carries the rate at its first center word and the number of center
words its rows come from (a center split between two batches counts in both). Batches are
full-sized except the last one. Everything is drawn from one numpy Generator seeded by `seed`.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .vocab import Encoded, NoiseTable, keep_probability


def linear_lr(words_done, total_words: int, lr: float = 0.025, min_lr: float = 0.0001):
    """lr after `words_done` of `total_words`: lr at 0, min_lr at the end, linear between."""
    progress = np.minimum(np.asarray(words_done, dtype=np.float64) / total_words, 1.0)
    return lr - (lr - min_lr) * progress


def context_window(line_of: np.ndarray, window: int, rng: np.random.Generator):
    """For words in a flat stream labelled by line: (N, 2*window) positions of each word's
    context, offsets -window..-1 then 1..window, and the mask of those inside its reduced
    window and its line. Masked-out positions are 0."""
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    size = len(line_of)
    reach = window - rng.integers(0, window, size)  # window - b, b drawn per center word
    offsets = np.concatenate([np.arange(-window, 0), np.arange(1, window + 1)])
    where = np.arange(size)[:, None] + offsets
    inside = (where >= 0) & (where < size)
    where = np.where(inside, where, 0)
    mask = inside & (line_of[where] == line_of[:, None]) & (np.abs(offsets) <= reach[:, None])
    return np.where(mask, where, 0), mask


def expected_rows(corpus: Encoded, counts: np.ndarray, mode: str, window: int,
                  sample: float) -> np.ndarray:
    """Each corpus position's expected rows per epoch (over subsampling and the reduced
    window), to cut the corpus into shares of equal work (`parallel.shares`): equal words are
    not equal rows where lines are short or frequent words, which subsampling drops, are
    common. A kept word with k kept words beside it on one side of its line pairs with
    E[min(reach, k)] of them (reach uniform in 1..window), k taken as its expectation: the
    sum of those words' keep probabilities. CBOW makes one row of a kept word with a context."""
    keep = keep_probability(counts, sample)[corpus.ids]
    lengths = np.diff(corpus.offsets)
    first = corpus.offsets[:-1][lengths > 0]
    kept_before = np.cumsum(keep) - keep
    left = kept_before - np.repeat(kept_before[first], lengths[lengths > 0])
    right = np.repeat(np.add.reduceat(keep, first), lengths[lengths > 0]) - left - keep
    if mode == "cbow":
        return keep * np.minimum(1.0, left + right)
    sides = np.arange(window + 1)
    paired = np.minimum.outer(sides, np.arange(1, window + 1)).mean(axis=1)  # E[min(reach, k)]
    return keep * (np.interp(left, sides, paired) + np.interp(right, sides, paired))


@dataclass(frozen=True)
class Batch:
    centers: np.ndarray  # (B,) int64
    contexts: np.ndarray  # skip-gram (B,) int64; CBOW (B, 2*window) int64, padded with 0
    mask: np.ndarray | None  # CBOW (B, 2*window) float32; None for skip-gram
    negatives: np.ndarray | None  # (B, negative) int64, or None when negative == 0
    lr: float
    words: int  # center words (corpus positions) the rows come from: gensim's effective words
    epoch: int = 0  # the epoch of its first row


def _chunk_rows(corpus, keep, mode, window, rng, first_line, last_line):
    """One chunk's rows: (centers, contexts, mask or None, positions of the centers)."""
    start, stop = corpus.offsets[first_line], corpus.offsets[last_line]
    ids = corpus.ids[start:stop]
    line_of = np.repeat(
        np.arange(last_line - first_line), np.diff(corpus.offsets[first_line : last_line + 1])
    )
    kept = np.flatnonzero(rng.random(len(ids)) < keep[ids])
    where, mask = context_window(line_of[kept], window, rng)
    centers, contexts, positions = ids[kept], ids[kept][where], start + kept
    if mode == "skipgram":
        row, _ = np.nonzero(mask)
        return centers[row], contexts[mask], None, positions[row]
    rows = mask.any(axis=1)
    return centers[rows], contexts[rows], mask[rows].astype(np.float32), positions[rows]


def _rows(corpus, keep, mode, window, epochs, chunk_words, rng):
    """Rows of every chunk of every epoch, positions counted over all epochs."""
    cuts = np.arange(chunk_words, corpus.offsets[-1], chunk_words)
    lines = len(corpus.offsets) - 1
    bounds = np.unique(np.concatenate([[0], np.searchsorted(corpus.offsets, cuts), [lines]]))
    for epoch in range(epochs):
        for first, last in itertools.pairwise(bounds):
            *row, positions = _chunk_rows(corpus, keep, mode, window, rng, first, last)
            yield *row, positions + epoch * len(corpus.ids)


def _join(parts):
    return tuple(None if p[0] is None else np.concatenate(p) for p in zip(*parts))


def _slice(row, start, stop):
    return tuple(None if a is None else a[start:stop] for a in row)


def _rebatch(rows, batch_size: int):
    """Regroup a stream of row tuples into exactly batch_size rows (the last may be shorter)."""
    pending, count = [], 0
    for part in rows:
        pending.append(part)
        count += len(part[0])
        if count >= batch_size:
            joined = _join(pending)
            full = count - count % batch_size
            for start in range(0, full, batch_size):
                yield _slice(joined, start, start + batch_size)
            pending, count = [_slice(joined, full, count)], count - full
    if count:
        yield _join(pending)


def batches(corpus: Encoded, counts: np.ndarray, mode: str, *, window: int = 5,
            batch_size: int = 1024, negative: int = 5, epochs: int = 1, sample: float = 1e-3,
            lr: float = 0.025, min_lr: float = 0.0001, seed: int = 0,
            chunk_words: int = 100_000) -> Iterator[Batch]:
    """Training batches over `corpus` (vocabulary ids, see `Vocab.restrict`) whose words have
    the vocabulary `counts`."""
    if mode not in ("skipgram", "cbow"):
        raise ValueError(f"mode must be 'skipgram' or 'cbow', got {mode!r}")
    if len(corpus.ids) and corpus.ids.max() >= len(counts):
        raise ValueError(f"corpus ids go up to {corpus.ids.max()}, past the {len(counts)} counts")
    rng = np.random.default_rng(seed)
    keep = keep_probability(counts, sample)
    noise = NoiseTable(counts) if negative else None
    total = epochs * len(corpus.ids)
    rows = _rows(corpus, keep, mode, window, epochs, chunk_words, rng)
    for centers, contexts, mask, positions in _rebatch(rows, batch_size):
        predicted = contexts if mode == "skipgram" else centers
        negatives = None
        if noise is not None:
            negatives = noise.draw(rng, (len(centers), negative), exclude=predicted[:, None])
        rate = float(linear_lr(positions[0], total, lr, min_lr))
        words = 1 + np.count_nonzero(np.diff(positions))  # a center's rows are adjacent
        epoch = int(positions[0] // len(corpus.ids))
        yield Batch(centers, contexts, mask, negatives, rate, int(words), epoch)


def prefetched(items: Iterable, depth: int = 8) -> Iterator:
    """`items`, drawn by a background thread up to `depth` ahead. NumPy releases the GIL in
    its loops, so drawing the next batches overlaps the training step on a second core.
    An exception in the thread is raised here, at the item it stopped at. Consume to the end:
    a thread left blocked on a full queue stays until the process exits (it is a daemon)."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    end = object()

    def produce():
        try:
            for item in items:
                ready.put(item)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, raised there
            ready.put(_Failed(error))
        ready.put(end)

    threading.Thread(target=produce, daemon=True, name="word2vec batches").start()
    while (item := ready.get()) is not end:
        if isinstance(item, _Failed):
            raise item.error
        yield item


@dataclass(frozen=True)
class _Failed:
    error: BaseException
