"""Looking at trained vectors: gensim's own evaluations (analogies of questions-words.txt,
correlation with wordsim353.tsv, both from gensim's test data), nearest neighbours, the
king − man + woman analogy, a 2-D PCA picture, and the word2vec text format."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from .. import smoke

PLOT_PAIRS = (("germany", "berlin"), ("france", "paris"), ("italy", "rome"), ("spain", "madrid"),
              ("russia", "moscow"), ("japan", "tokyo"), ("china", "beijing"),
              ("greece", "athens"), ("egypt", "cairo"), ("england", "london"),
              ("king", "queen"), ("man", "woman"))
PROBES = ("king", "france", "god", "water", "good", "three")


def has_gensim() -> bool:
    return importlib.util.find_spec("gensim") is not None


def save_word2vec_text(path: Path, words: list[str], vectors: np.ndarray) -> None:
    """The word2vec text format: a "count dim" header, then one "word x1 x2 ..." line per word."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="ascii") as out:
        out.write(f"{len(words)} {vectors.shape[1]}\n")
        out.writelines(f"{word} {' '.join(f'{x:.6g}' for x in row)}\n"
                       for word, row in zip(words, vectors))


class Neighbours:
    """most_similar over unit-normalised vectors: gensim's KeyedVectors where gensim is
    installed, else a cosine search in NumPy with the same conventions (the query words are
    excluded, positive words add, negative words subtract, each unit-normalised first)."""

    def __init__(self, words: list[str], vectors: np.ndarray):
        self.words, self.index = words, {w: i for i, w in enumerate(words)}
        self.kv = None
        if has_gensim():
            from gensim.models import KeyedVectors

            self.kv = KeyedVectors(vectors.shape[1])
            self.kv.add_vectors(words, vectors)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.unit = vectors / np.maximum(norms, 1e-12)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def most_similar(self, positive, negative=(), topn: int = 5) -> list[tuple[str, float]]:
        if self.kv is not None:
            return self.kv.most_similar(positive=list(positive), negative=list(negative),
                                        topn=topn)
        query = sum(self.unit[self.index[w]] for w in positive)
        query = query - sum((self.unit[self.index[w]] for w in negative), np.zeros_like(query))
        scores = self.unit @ (query / np.linalg.norm(query))
        scores[[self.index[w] for w in (*positive, *negative)]] = -np.inf
        best = np.argsort(-scores)[:topn]
        return [(self.words[i], float(scores[i])) for i in best]


def print_neighbours(nb: Neighbours) -> None:
    if all(w in nb for w in ("king", "man", "woman")):
        found = nb.most_similar(["king", "woman"], ["man"], topn=5)
        print("king - man + woman:", _listing(found))
    for word in PROBES:
        if word in nb:
            print(f"most similar to {word!r}:", _listing(nb.most_similar([word], topn=5)))


def _listing(found) -> str:
    return ", ".join(f"{w} {s:.3f}" for w, s in found) + smoke.tag()


def gensim_scores(nb: Neighbours) -> dict[str, float] | None:
    """gensim's evaluate_word_analogies (questions-words.txt, the 300,000 most frequent
    words, case-insensitive) and evaluate_word_pairs (wordsim353.tsv); None without gensim."""
    if nb.kv is None:
        return None
    from gensim.test.utils import datapath

    analogy, sections = nb.kv.evaluate_word_analogies(datapath("questions-words.txt"))
    total = next(s for s in sections if s["section"] == "Total accuracy")
    pearson, spearman, oov = nb.kv.evaluate_word_pairs(datapath("wordsim353.tsv"))
    return {"analogy": float(analogy), "analogy_questions": len(total["correct"])
            + len(total["incorrect"]), "pearson": float(pearson[0]),
            "spearman": float(spearman.statistic), "pairs_oov_percent": float(oov)}


def print_scores(scores: dict[str, float] | None) -> None:
    if scores is None:
        print("gensim is not installed: analogy and word-pair evaluations skipped")
        return
    print(f"analogies (questions-words.txt): {scores['analogy']:.2%} of "
          f"{scores['analogy_questions']} questions in vocabulary{smoke.tag()}")
    print(f"word pairs (wordsim353.tsv): Pearson {scores['pearson']:.3f}, Spearman "
          f"{scores['spearman']:.3f}, {scores['pairs_oov_percent']:.1f}% of pairs "
          f"out of vocabulary{smoke.tag()}")


def pca_plot(nb: Neighbours, path: Path) -> Path | None:
    """Countries, capitals and king/queen/man/woman projected on their first two principal
    components, each pair joined by an arrow; None without matplotlib or with too few words."""
    if importlib.util.find_spec("matplotlib") is None:
        print("matplotlib is not installed: no PCA plot")
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = [p for p in PLOT_PAIRS if p[0] in nb and p[1] in nb]
    if len(pairs) < 2:
        print("too few of the plot's words are in the vocabulary: no PCA plot")
        return None
    words = [w for pair in pairs for w in pair]
    points = nb.unit[[nb.index[w] for w in words]]
    centred = points - points.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ axes[:2].T
    fig, ax = plt.subplots(figsize=(8, 6))
    ax.scatter(xy[:, 0], xy[:, 1], s=12)
    for k, word in enumerate(words):
        ax.annotate(word, xy[k], textcoords="offset points", xytext=(4, 3))
    for k in range(0, len(words), 2):
        ax.annotate("", xy[k + 1], xy[k], arrowprops={"arrowstyle": "->", "alpha": 0.4})
    ax.set_title("word2vec: first two principal components")
    smoke.stamp(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
