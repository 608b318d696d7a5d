"""Looking at trained vectors: gensim's own evaluations (analogies of questions-words.txt,
correlation with wordsim353.tsv, both from gensim's test data), nearest neighbours, the
king − man + woman analogy, a 2-D PCA picture, and the word2vec text format."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from .. import smoke

# the PCA picture's panels: each group of pairs on its own first two principal components
PLOT_GROUPS = (
    ("country → capital", (("germany", "berlin"), ("france", "paris"), ("italy", "rome"),
                           ("spain", "madrid"), ("russia", "moscow"), ("japan", "tokyo"),
                           ("china", "beijing"), ("greece", "athens"), ("egypt", "cairo"),
                           ("england", "london"))),
    ("male → female", (("man", "woman"), ("king", "queen"), ("boy", "girl"),
                       ("father", "mother"), ("son", "daughter"), ("brother", "sister"),
                       ("uncle", "aunt"), ("husband", "wife"), ("prince", "princess"))))
# where a point's label may go: offset (points), alignment; the first that overlaps least wins
LABEL_SPOTS = ((4, 3, "left", "bottom"), (4, -3, "left", "top"), (-4, 3, "right", "bottom"),
               (-4, -3, "right", "top"), (0, 5, "center", "bottom"), (0, -5, "center", "top"),
               (6, 0, "left", "center"), (-6, 0, "right", "center"))
POINT_PIXELS = 3  # half the side of the square a scatter point keeps free of labels
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
    """`pca_figure` saved to `path`; None without matplotlib or without the words."""
    if importlib.util.find_spec("matplotlib") is None:
        print("matplotlib is not installed: no PCA plot")
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = pca_figure(nb)
    if fig is None:
        print("too few of the plot's words are in the vocabulary: no PCA plot")
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def pca_figure(nb: Neighbours):
    """Countries → capitals and male → female words, each group projected on its own first two
    principal components (as in Mikolov et al.'s pictures), each pair joined by an arrow, a
    panel per group with at least two pairs in the vocabulary; None if no group has."""
    import matplotlib.pyplot as plt

    groups = [(title, [p for p in pairs if p[0] in nb and p[1] in nb])
              for title, pairs in PLOT_GROUPS]
    groups = [(title, pairs) for title, pairs in groups if len(pairs) >= 2]
    if not groups:
        return None
    fig, axes = plt.subplots(1, len(groups), figsize=(6.5 * len(groups), 6), squeeze=False)
    for ax, (title, pairs) in zip(axes[0], groups):
        pair_panel(ax, nb, title, pairs)
    fig.suptitle("word2vec: each group on its own first two principal components")
    smoke.stamp(fig)
    return fig


def pair_panel(ax, nb: Neighbours, title: str, pairs: list[tuple[str, str]]) -> None:
    """One group's words on their first two principal components, an arrow per pair."""
    words = [w for pair in pairs for w in pair]
    points = nb.unit[[nb.index[w] for w in words]]
    centred = points - points.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ axes[:2].T
    ax.scatter(xy[:, 0], xy[:, 1], s=12)
    for k in range(0, len(words), 2):
        ax.annotate("", xy[k + 1], xy[k], arrowprops={"arrowstyle": "->", "alpha": 0.4})
    ax.set_title(title)
    place_labels(ax, xy, words)


def place_labels(ax, xy: np.ndarray, words: list[str]) -> list:
    """Label each point beside it, in the first of LABEL_SPOTS that overlaps least with the
    points and the labels placed so far (greedy, in pixels); returns the labels."""
    ax.autoscale_view()  # the data limits fix where the points land in pixels
    renderer = ax.figure.canvas.get_renderer()
    centres = ax.transData.transform(xy)
    taken = [(x - POINT_PIXELS, y - POINT_PIXELS, x + POINT_PIXELS, y + POINT_PIXELS)
             for x, y in centres]
    labels = []
    for point, word in zip(xy, words):
        best = None
        for dx, dy, ha, va in LABEL_SPOTS:
            label = ax.annotate(word, point, textcoords="offset points", xytext=(dx, dy),
                                ha=ha, va=va)
            box = label.get_window_extent(renderer).extents
            cost = sum(_overlap(box, other) for other in taken)
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, label, box)
            else:
                label.remove()
            if cost == 0:
                break
        taken.append(best[2])
        labels.append(best[1])
    return labels


def _overlap(a, b) -> float:
    """The area two (x0, y0, x1, y1) boxes share."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
