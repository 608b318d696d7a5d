"""The synthetic box canvases of examples/boxes_data.py: exact boxes, the overlap limit,
determinism, items drawn from their own split only."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
bd = pytest.importorskip("boxes_data")  # examples/boxes_data.py (imports examples/data.py)
import data  # examples/data.py, on the path above


def _bounding_box(image):
    ys, xs = np.nonzero(image)
    return [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]


@pytest.mark.parametrize("split", bd.SPLITS)
def test_box_is_the_bounding_box_of_the_pasted_nonzero_pixels(split):
    c = bd.canvases(split, 200, clutter=False, seed=3)
    for image, box in zip(c.images, c.boxes, strict=True):
        assert box.shape == (1, 4) and box.dtype == np.int64
        assert box[0].tolist() == _bounding_box(image[0])


def test_several_items_each_box_edge_touches_ink_and_nothing_lies_outside_the_boxes():
    c = bd.canvases("train", 200, objects=(1, 4), clutter=False, seed=1)
    for image, boxes in zip(c.images[:, 0], c.boxes, strict=True):
        inside = np.zeros(image.shape, bool)
        for x, y, w, h in boxes:
            inside[y:y + h, x:x + w] = True
            window = image[y:y + h, x:x + w]
            assert window[0].any() and window[-1].any()
            assert window[:, 0].any() and window[:, -1].any()
        assert not image[~inside].any()


def test_clutter_only_adds_to_the_same_items():
    clean = bd.canvases("test", 100, objects=(1, 3), clutter=False, seed=5)
    noisy = bd.canvases("test", 100, objects=(1, 3), seed=5)
    assert (noisy.images >= clean.images).all()
    assert (noisy.images > clean.images).mean() > 0.5  # the noise is everywhere
    for field in ("boxes", "labels", "sources"):
        for a, b in zip(getattr(clean, field), getattr(noisy, field), strict=True):
            np.testing.assert_array_equal(a, b)


def test_overlap_limit_holds_between_every_pair_of_boxes():
    limit = 0.1
    c = bd.canvases("train", 500, objects=(2, 4), seed=2, max_overlap=limit)
    worst = 0.0
    for boxes in c.boxes:
        for i in range(len(boxes)):
            for j in range(i):
                (ax, ay, aw, ah), (bx, by, bw, bh) = boxes[i], boxes[j]
                iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
                ih = max(0, min(ay + ah, by + bh) - max(ay, by))
                worst = max(worst, iw * ih / min(aw * ah, bw * bh))
    assert 0 < worst <= limit
    # Few items are left out for want of room: of the 2.95 items drawn per canvas on average,
    # 2.57 are kept with Fashion-MNIST's items and 2.50 with the digits fallback (whose 8x8
    # frames are inked to the edge, so their boxes are larger); at least 80 % must be kept.
    assert np.mean([len(b) for b in c.boxes]) > 0.8 * 3


def test_canvases_are_deterministic_per_seed():
    a = bd.canvases("train", 50, objects=(1, 4), seed=7)
    b = bd.canvases("train", 50, objects=(1, 4), seed=7)
    other = bd.canvases("train", 50, objects=(1, 4), seed=8)
    np.testing.assert_array_equal(a.images, b.images)
    for x, y in zip(a.boxes, b.boxes, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.images, other.images)


def test_items_come_from_their_own_split_and_labels_follow_the_sources():
    x_train, y_train, x_test, y_test = data.load_fashion_mnist(verbose=False)
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        frames, classes = bd._items(split)
        np.testing.assert_array_equal(frames.reshape(len(frames), -1), x)
        np.testing.assert_array_equal(classes, y)
        c = bd.canvases(split, 300, objects=(1, 4), seed=0)
        sources = np.concatenate(c.sources)
        assert sources.max() < len(x)
        np.testing.assert_array_equal(np.concatenate(c.labels), y[sources])


def test_pasted_pixels_are_the_resized_source_item():
    """Ties each canvas to its source item (and so to its split): at the frame's own side the
    resampling is the identity, so the box holds the source item times one contrast. The
    frame's side is the loaded data's: 28 for Fashion-MNIST, 8 for the digits fallback."""
    frames, _ = bd._items("test")
    side = frames.shape[1]
    c = bd.canvases("test", 40, clutter=False, seed=4, sizes=(side, side))
    for image, (x, y, w, h), source in zip(c.images[:, 0], np.concatenate(c.boxes),
                                           np.concatenate(c.sources), strict=True):
        item = frames[source]  # same side: resampling is the identity
        ratio = image[y:y + h, x:x + w].max() / item.max()
        assert bd.CONTRAST[0] - 1e-6 <= ratio <= bd.CONTRAST[1] + 1e-6
        kept = item * ratio >= bd.VISIBLE
        y0, x0 = np.nonzero(kept)[0].min(), np.nonzero(kept)[1].min()
        np.testing.assert_allclose(image[y:y + h, x:x + w],
                                   np.where(kept, item * ratio, 0)[y0:y0 + h, x0:x0 + w],
                                   rtol=1e-5, atol=1e-6)


def test_resize_matrix_rows_sum_to_one_and_halving_averages_pairs():
    m = bd._resize_matrix(28, 14)
    np.testing.assert_allclose(m.sum(axis=1), 1, rtol=1e-6)
    expected = np.zeros((14, 28), np.float32)
    expected[np.arange(14), 2 * np.arange(14)] = 0.5
    expected[np.arange(14), 2 * np.arange(14) + 1] = 0.5
    np.testing.assert_allclose(m, expected)


def test_iou_on_hand_checked_boxes():
    a = np.array([[0, 0, 4, 4], [0, 0, 4, 4], [0, 0, 4, 4]])
    b = np.array([[0, 0, 4, 4], [2, 0, 4, 4], [10, 10, 2, 2]])
    np.testing.assert_allclose(bd.iou(a, b), [1, 8 / 24, 0])
    assert bd.iou(a[:, None], b[None]).shape == (3, 3)


@pytest.mark.parametrize("kwargs, message", [
    ({"split": "val"}, "split must be 'train' or 'test'"),
    ({"n": 0}, "n must be a positive integer"),
    ({"objects": (2, 1)}, "objects must be"),
    ({"sizes": (16, 80)}, "sizes must be"),
    ({"max_overlap": 1.5}, "max_overlap must be"),
])
def test_bad_arguments_are_refused_by_name(kwargs, message):
    args = {"split": "train", "n": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        bd.canvases(**args)
