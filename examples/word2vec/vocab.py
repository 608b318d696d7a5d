"""Vocabulary, frequent-word subsampling, the negative-sampling noise table and the Huffman tree
of hierarchical softmax, as word2vec.c and gensim build them.

Word ids: the vocabulary is sorted by count, descending; equal counts keep the order of first
appearance in the corpus (gensim 4.4 puts the later-seen word first: a documented difference).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Encoded:
    """A corpus as one flat id array; line i is ids[offsets[i]:offsets[i + 1]]."""

    ids: np.ndarray  # int64
    offsets: np.ndarray  # int64, len = lines + 1


def encode_lines(lines: Iterable[list[str]]) -> tuple[list[str], Encoded]:
    """Every distinct word (in order of first appearance) and the corpus as indices into it."""
    index: dict[str, int] = {}
    ids: list[int] = []
    lengths = [0]
    for words in lines:
        ids.extend([index.setdefault(w, len(index)) for w in words])
        lengths.append(len(words))
    return list(index), Encoded(np.array(ids, dtype=np.int64), np.cumsum(lengths))


@dataclass(frozen=True)
class Vocab:
    words: list[str]
    counts: np.ndarray  # int64, descending
    remap: np.ndarray  # first-appearance id -> vocabulary id, -1 below min_count

    @classmethod
    def build(cls, words: list[str], corpus: Encoded, min_count: int = 5) -> Vocab:
        if min_count < 1:
            raise ValueError(f"min_count must be at least 1, got {min_count}")
        raw_counts = np.bincount(corpus.ids, minlength=len(words))
        kept = np.flatnonzero(raw_counts >= min_count)
        order = kept[np.argsort(-raw_counts[kept], kind="stable")]
        remap = np.full(len(words), -1, dtype=np.int64)
        remap[order] = np.arange(len(order))
        return cls([words[i] for i in order], raw_counts[order], remap)

    def __len__(self) -> int:
        return len(self.words)

    def restrict(self, corpus: Encoded) -> Encoded:
        """The corpus in vocabulary ids, words below min_count removed (lines may shrink)."""
        ids = self.remap[corpus.ids]
        kept = ids >= 0
        lines = len(corpus.offsets) - 1
        line_of = np.repeat(np.arange(lines), np.diff(corpus.offsets))
        lengths = np.bincount(line_of[kept], minlength=lines)
        return Encoded(ids[kept], np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))


def keep_probability(counts: np.ndarray, sample: float = 1e-3) -> np.ndarray:
    """gensim's subsampling: a word seen v times in a corpus of N (vocabulary) words is kept
    with probability (sqrt(v / t) + 1) * t / v, capped at 1, where t = sample * N."""
    counts = np.asarray(counts, dtype=np.float64)
    if sample <= 0:
        return np.ones_like(counts)
    threshold = sample * counts.sum()
    return np.minimum(1.0, (np.sqrt(counts / threshold) + 1) * threshold / counts)


class NoiseTable:
    """The unigram^power distribution of negative sampling as an alias table (Walker, Vose):
    draw a word i uniformly, keep it with probability keep[i], else take alias[i]. O(1) per
    draw, two small arrays (a cumulative table needs a binary search per draw, which was most
    of the time of drawing a batch)."""

    def __init__(self, counts: np.ndarray, power: float = 0.75):
        weights = np.asarray(counts, dtype=np.float64) ** power
        scaled = weights * len(weights) / weights.sum()  # mean 1
        self.keep, self.alias = np.ones(len(weights)), np.arange(len(weights))
        small = [i for i, w in enumerate(scaled) if w < 1]
        large = [i for i, w in enumerate(scaled) if w >= 1]
        while small and large:  # pair one under-full slot with an over-full word
            s, g = small.pop(), large[-1]
            self.keep[s], self.alias[s] = scaled[s], g
            scaled[g] -= 1 - scaled[s]
            if scaled[g] < 1:
                small.append(large.pop())
        # left over: rounding leaves words at ~1 on either list; they keep their slot whole

    def probabilities(self) -> np.ndarray:
        """The distribution the table draws from: (keep[i] + Σ over slots aliased to i of
        1 − keep) / V."""
        size = len(self.keep)
        given = np.bincount(self.alias, weights=1 - self.keep, minlength=size)
        return (self.keep + given) / size

    def draw(self, rng: np.random.Generator, shape, exclude: np.ndarray | None = None):
        """Word ids of the given shape; where `exclude` (broadcast against shape) is given, a
        draw equal to it is drawn again, as word2vec skips a negative equal to its target."""
        out = self._draw(rng, shape)
        if exclude is None:
            return out
        if len(self.keep) < 2:
            raise ValueError("negative sampling needs at least 2 words in the vocabulary")
        exclude = np.broadcast_to(exclude, out.shape)
        clash = np.flatnonzero(out == exclude)
        while len(clash):
            out.flat[clash] = self._draw(rng, len(clash))
            clash = clash[out.flat[clash] == exclude.flat[clash]]
        return out

    def _draw(self, rng, shape):
        """One uniform number per draw: its integer part (times V) picks the slot, its
        fraction decides between the slot's word and its alias (float64 keeps 53 - log2(V)
        bits for the fraction)."""
        where = rng.random(shape) * len(self.keep)
        slot = where.astype(np.int64)
        return np.where(where - slot < self.keep[slot], slot, self.alias[slot])


@dataclass(frozen=True)
class Huffman:
    """Each word's path from the root of the Huffman tree, padded to the deepest word's length
    for a masked hierarchical softmax: at depth d < lengths[w], inner node points[w, d] sends the
    walk to the child with bit codes[w, d]. word2vec trains sigmoid(h . syn1[point]) towards
    1 - code. Padded entries are 0 (a valid index) with mask 0."""

    codes: np.ndarray  # (V, D) float32, 0/1
    points: np.ndarray  # (V, D) int64, inner-node ids 0..V-2 (V-2 is the root)
    lengths: np.ndarray  # (V,) int64
    mask: np.ndarray  # (V, D) float32, 1 where d < lengths[w]


def _merge(counts: list[int]) -> tuple[list[int], list[int]]:
    """Every node's parent and bit: nodes 0..V-1 are the words, V + i the i-th merge. As in
    word2vec.c, each merge joins the two smallest nodes from two queues, the words from the
    least frequent up (of equal counts the larger id first) and the merged nodes in the order
    made; a tie goes to the merged node, and the second node taken gets bit 1."""
    size = len(counts)
    words = sorted(range(size), key=lambda w: (counts[w], -w))
    weight = counts + [0] * (size - 1)
    parent = [0] * (2 * size - 1)
    bit = [0] * (2 * size - 1)
    next_word, next_inner = 0, size

    def pop(made):
        nonlocal next_word, next_inner
        if next_word < size and (
            next_inner == made or weight[words[next_word]] < weight[next_inner]
        ):
            next_word += 1
            return words[next_word - 1]
        next_inner += 1
        return next_inner - 1

    for made in range(size, 2 * size - 1):
        first, second = pop(made), pop(made)
        weight[made] = weight[first] + weight[second]
        parent[first] = parent[second] = made
        bit[second] = 1
    return parent, bit


def huffman(counts: np.ndarray) -> Huffman:
    size = len(counts)
    if size < 2:
        raise ValueError(f"hierarchical softmax needs at least 2 words, got {size}")
    parent, bit = (np.array(a, dtype=np.int64) for a in _merge([int(c) for c in counts]))
    root = 2 * size - 2
    # Climb from every word to the root at once, one level per step.
    node, steps = np.arange(size), []
    while (node != root).any():
        climbing = node != root
        steps.append((climbing, bit[node], parent[node] - size))
        node = np.where(climbing, parent[node], root)
    lengths = sum(climbing for climbing, _, _ in steps)
    depth = len(steps)
    codes = np.zeros((size, depth), dtype=np.float32)
    points = np.zeros((size, depth), dtype=np.int64)
    for up, (climbing, bits, inner) in enumerate(steps):
        words = np.flatnonzero(climbing)
        codes[words, lengths[words] - 1 - up] = bits[words]
        points[words, lengths[words] - 1 - up] = inner[words]
    mask = (np.arange(depth) < lengths[:, None]).astype(np.float32)
    return Huffman(codes, points, lengths, mask)
