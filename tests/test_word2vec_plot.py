"""word2vec's PCA picture: each group of pairs on its own principal plane, labels placed beside
their points without covering each other or the points where there is room."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from examples.word2vec import evaluate

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
plt = pytest.importorskip("matplotlib.pyplot")


def test_labels_of_close_points_do_not_cover_each_other_or_the_points():
    """Points closer than a label, stacked and side by side (germany above china, moscow beside
    tokyo in the full run's picture before): each one's first spot would overlap another."""
    fig, ax = plt.subplots(figsize=(4, 3))
    xy = np.array([[0.0, 0.0], [0.0, 0.02], [0.3, 0.5], [0.33, 0.5], [1.0, 1.0]])
    words = ["germany", "china", "moscow", "tokyo", "far"]
    ax.scatter(xy[:, 0], xy[:, 1])
    labels = evaluate.place_labels(ax, xy, words)
    assert [label.get_text() for label in labels] == words
    renderer = fig.canvas.get_renderer()
    boxes = [label.get_window_extent(renderer).extents for label in labels]
    for a, b in itertools.combinations(boxes, 2):
        assert evaluate._overlap(a, b) == 0, (a, b)
    half = evaluate.POINT_PIXELS
    for box, (x, y) in itertools.product(boxes, ax.transData.transform(xy)):
        assert evaluate._overlap(box, (x - half, y - half, x + half, y + half)) == 0
    moved = [label.get_text() for label in labels
             if tuple(label.xyann) != evaluate.LABEL_SPOTS[0][:2]]
    assert moved and "far" not in moved  # the crowded ones moved; the lone one kept its spot
    plt.close(fig)


def test_overlap_is_the_shared_area():
    assert evaluate._overlap((0, 0, 2, 2), (1, 1, 3, 3)) == 1
    assert evaluate._overlap((0, 0, 1, 1), (1, 0, 2, 1)) == 0  # touching edges share nothing
    assert evaluate._overlap((0, 0, 4, 4), (1, 1, 2, 3)) == 2


def test_each_group_is_drawn_on_its_own_principal_plane(tmp_path):
    """A panel per group; its points are its own words' centred unit vectors on their first two
    principal directions (up to each axis's sign); a group with fewer than two pairs in the
    vocabulary is left out."""
    rng = np.random.default_rng(0)
    words = sorted({w for _, pairs in evaluate.PLOT_GROUPS for pair in pairs for w in pair})
    nb = evaluate.Neighbours(words, rng.standard_normal((len(words), 8)))
    fig = evaluate.pca_figure(nb)
    assert [ax.get_title() for ax in fig.axes] == [title for title, _ in evaluate.PLOT_GROUPS]
    for ax, (_, pairs) in zip(fig.axes, evaluate.PLOT_GROUPS):
        points = nb.unit[[nb.index[w] for pair in pairs for w in pair]]
        centred = points - points.mean(axis=0)
        plane = np.linalg.svd(centred, full_matrices=False)[2][:2]
        np.testing.assert_allclose(np.abs(ax.collections[0].get_offsets()),
                                   np.abs(centred @ plane.T), atol=1e-12)
        assert sorted(t.get_text() for t in ax.texts if t.get_text()) == sorted(
            w for pair in pairs for w in pair)
    plt.close(fig)

    few = evaluate.Neighbours(["man", "woman", "king", "queen", "germany", "berlin"],
                              rng.standard_normal((6, 8)))
    fig = evaluate.pca_figure(few)
    assert [ax.get_title() for ax in fig.axes] == ["male → female"]
    plt.close(fig)
    assert evaluate.pca_figure(evaluate.Neighbours(["man", "woman"], np.eye(2))) is None

    assert evaluate.pca_plot(nb, tmp_path / "pca.png") == tmp_path / "pca.png"
    assert plt.imread(tmp_path / "pca.png").shape[1] > plt.imread(tmp_path / "pca.png").shape[0]
    assert evaluate.pca_plot(evaluate.Neighbours(["man"], np.ones((1, 2))), tmp_path / "no.png") \
        is None and not (tmp_path / "no.png").exists()
