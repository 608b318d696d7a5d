"""Synthetic box data for the localization and detection examples (NumPy only).

Fashion-MNIST items (examples/data.py; scikit-learn's 8x8 digits where Fashion-MNIST is absent)
are rescaled to random sizes and pasted on noisy, cluttered canvases:

    c = canvases("train", 10_000, objects=(1, 1), seed=0)
    c.images   # float32 (n, 1, 64, 64) in [0, 1]
    c.boxes    # list of n int64 (k, 4) arrays: (x, y, w, h) in pixels, (x, y) the top-left
    c.labels   # list of n int64 (k,) arrays: the items' classes (0..9)
    c.sources  # list of n int64 (k,) arrays: the items' indices in the split

How a canvas is made (the same for every split; train canvases use only Fashion-MNIST's train
items, test canvases only its test items):
- background: uniform noise in [0, NOISE) per pixel, and CLUTTER fragments (FRAGMENT x FRAGMENT
  crops of other items of the split, dimmed), all pasted before the items;
- each item: its whole frame (28x28) resized bilinearly to a random side in `sizes` (the aspect
  is kept), multiplied by a random contrast, pixels below VISIBLE set to 0, and pasted with the
  whole frame inside the canvas; its box is the bounding box of its remaining nonzero pixels;
- pasting is a pixelwise maximum, so an item's pixels are never hidden, only brightened where
  something else overlaps them;
- with several items, no item's box may cover more than `max_overlap` of another's area
  (intersection / the smaller box's area); a position is redrawn up to TRIES times, then the
  item is left out, so an image can hold fewer items than drawn (rare: see `canvases`).

Random streams: the items (classes, sizes, contrasts, positions) and the clutter come from two
streams of one `numpy.random.SeedSequence((seed, split))`, so `clutter=False` gives the same
items and boxes on a clean background, and the same arguments give the same arrays.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import data
import numpy as np
import smoke

SPLITS = ("train", "test")
CLASS_NAMES = ("T-shirt", "trouser", "pullover", "dress", "coat",
               "sandal", "shirt", "sneaker", "bag", "boot")
NOISE = 0.1  # background noise: uniform in [0, NOISE)
CLUTTER = (2, 6)  # fragments per canvas, inclusive
FRAGMENT = 8  # fragment side, smaller than any item, so a fragment is not an item
FRAGMENT_CONTRAST = (0.2, 0.5)
CONTRAST = (0.6, 1.0)
VISIBLE = 0.1  # an item's pixels below this are set to 0: the box is its visible ink
TRIES = 100


class Canvases(NamedTuple):
    images: np.ndarray
    boxes: list
    labels: list
    sources: list


def canvases(split, n, objects=(1, 1), size=64, seed=0, sizes=(16, 40), max_overlap=0.25,
             clutter=True):
    """`n` canvases of `size` x `size` pixels from the items of `split` ("train" or "test"),
    each with between objects[0] and objects[1] items (inclusive) whose frames are rescaled to
    a side drawn uniformly in `sizes` (inclusive). Returns `Canvases(images, boxes, labels,
    sources)` (see the module's docstring). 60,000 canvases take a few seconds.

    With objects[1] > 1 an item that finds no place within `max_overlap` after TRIES draws is
    left out: for 1-4 items on 64 px with max_overlap 0.25, 5.7 % of the items with sizes
    (16, 40), 0.3 % with sizes (16, 32)."""
    _check(split, n, objects, size, sizes, max_overlap)
    items, classes = _items(split)
    item_rng, clutter_rng = (np.random.default_rng(s) for s in
                             np.random.SeedSequence((seed, SPLITS.index(split))).spawn(2))
    canvas = np.zeros((n, size, size), np.float32)
    if clutter:
        _background(canvas, items, clutter_rng)
    counts = item_rng.integers(objects[0], objects[1] + 1, n)
    boxes = np.zeros((n, objects[1], 4), np.int64)
    placed = np.zeros((n, objects[1]), bool)
    sources = item_rng.integers(0, len(items), (n, objects[1]))
    for j in range(objects[1]):
        rows = np.flatnonzero(counts > j)
        frames = _frames(items[sources[rows, j]], item_rng.integers(sizes[0], sizes[1] + 1,
                                                                     len(rows)), item_rng)
        for side, which, pixels, ink in frames:
            at = _place(side, ink, boxes[rows[which], :j], placed[rows[which], :j], size,
                        max_overlap, item_rng)
            ok = at[:, 0] >= 0
            img, at = rows[which][ok], at[ok]
            _paste(canvas, img, at, pixels[ok], side)
            boxes[img, j] = np.column_stack([at + ink[ok, :2], ink[ok, 2:]])
            placed[img, j] = True
    return Canvases(canvas[:, None], [b[p] for b, p in zip(boxes, placed, strict=True)],
                    [classes[s[p]] for s, p in zip(sources, placed, strict=True)],
                    [s[p] for s, p in zip(sources, placed, strict=True)])


def iou(a, b):
    """Intersection over union of (x, y, w, h) boxes, broadcast over the leading axes:
    `iou(pred, true)` pairs them, `iou(p[:, None], t[None])` gives the matrix."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    inter = _overlap(a[..., 0], a[..., 2], b[..., 0], b[..., 2]) * _overlap(
        a[..., 1], a[..., 3], b[..., 1], b[..., 3])
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def save_grid(path, images, true, pred, columns=6):
    """A PNG of `images` (n, 1, H, W) with boxes drawn: `true` and `pred` are per image
    (boxes (k, 4), labels (k,)) pairs; true boxes green with their class below, predicted boxes
    red with their class above."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2 * columns, 2.1 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, t, p in zip(axes.flat, images, true, pred, strict=False):
        ax.imshow(image[0], cmap="gray", vmin=0, vmax=1)
        for (bxs, lbls), colour, where in ((t, "lime", "below"), (p, "red", "above")):
            for (x, y, w, h), label in zip(bxs, lbls, strict=True):
                ax.add_patch(plt.Rectangle((x - 0.5, y - 0.5), w, h, fill=False, lw=1.2,
                                           edgecolor=colour))
                ty, va = (y + h, "top") if where == "below" else (y - 1, "bottom")
                ax.text(x, ty, CLASS_NAMES[label], color=colour, fontsize=6, va=va)
    fig.suptitle("green: true box and class; red: predicted", fontsize=9)
    fig.tight_layout()
    smoke.stamp(fig)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _check(split, n, objects, size, sizes, max_overlap):
    if split not in SPLITS:
        raise ValueError(f"canvases: split must be 'train' or 'test', got {split!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"canvases: n must be a positive integer, got {n!r}")
    lo, hi = objects
    if not 1 <= lo <= hi:
        raise ValueError(f"canvases: objects must be (min, max) with 1 <= min <= max, "
                         f"got {objects!r}")
    if not 1 <= sizes[0] <= sizes[1] <= size:
        raise ValueError(f"canvases: sizes must be (min, max) item sides with 1 <= min <= max "
                         f"<= size={size}, got {sizes!r}")
    if not 0 <= max_overlap <= 1:
        raise ValueError(f"canvases: max_overlap must be in [0, 1], got {max_overlap!r}")


@functools.cache
def _items(split):
    """The split's item frames (N, S, S) float32 in [0, 1] and classes (N,) int64."""
    x_train, y_train, x_test, y_test = data.load_fashion_mnist(verbose=False)
    x, y = (x_train, y_train) if split == "train" else (x_test, y_test)
    side = round(np.sqrt(x.shape[1]))
    return x.reshape(-1, side, side), y


def _frames(frames, sides, rng):
    """Per distinct side: (side, which of `frames`, their resized and contrast-scaled pixels
    (m, side, side) with sub-VISIBLE pixels zeroed, their ink boxes (m, 4) within the frame)."""
    contrast = rng.uniform(*CONTRAST, len(frames)).astype(np.float32)
    for side in np.unique(sides):
        which = np.flatnonzero(sides == side)
        m = _resize_matrix(frames.shape[1], side)
        pixels = m @ frames[which] @ m.T * contrast[which, None, None]
        pixels[pixels < VISIBLE] = 0
        yield side, which, pixels, _ink(pixels)


@functools.cache
def _resize_matrix(source, side):
    """Bilinear resampling from `source` to `side` samples, sample centres aligned (as
    PIL's and torch's align_corners=False), as a (side, source) matrix; rows sum to 1."""
    centre = np.clip((np.arange(side) + 0.5) * source / side - 0.5, 0, source - 1)
    low = np.floor(centre).astype(int)
    high = np.minimum(low + 1, source - 1)
    m = np.zeros((side, source), np.float32)
    np.add.at(m, (np.arange(side), low), 1 - (centre - low))
    np.add.at(m, (np.arange(side), high), centre - low)
    return m


def _ink(pixels):
    """The bounding boxes (x, y, w, h) of the nonzero pixels of each (H, W) image."""
    cols, rows = pixels.any(axis=1), pixels.any(axis=2)
    if not rows.any(axis=1).all():
        raise RuntimeError("an item has no pixel above VISIBLE after resizing")
    x0, y0 = cols.argmax(axis=1), rows.argmax(axis=1)
    x1 = cols.shape[1] - cols[:, ::-1].argmax(axis=1)
    y1 = rows.shape[1] - rows[:, ::-1].argmax(axis=1)
    return np.column_stack([x0, y0, x1 - x0, y1 - y0])


def _place(side, ink, earlier, placed, size, max_overlap, rng):
    """Positions (m, 2) of frames of `side` pixels inside the canvas whose ink boxes overlap no
    placed earlier box of their image by more than `max_overlap`; -1 where none was found."""
    at = np.full((len(ink), 2), -1)
    todo = np.arange(len(ink))
    for _ in range(TRIES):
        trial = rng.integers(0, size - side + 1, (len(todo), 2))
        box = np.column_stack([trial + ink[todo, :2], ink[todo, 2:]])
        fits = ~(placed[todo] & (_covered(box[:, None], earlier[todo]) > max_overlap)).any(1)
        at[todo[fits]] = trial[fits]
        todo = todo[~fits]
        if not len(todo):
            break
    return at


def _covered(a, b):
    """Intersection of (x, y, w, h) boxes over the smaller one's area (broadcast)."""
    inter = _overlap(a[..., 0], a[..., 2], b[..., 0], b[..., 2]) * _overlap(
        a[..., 1], a[..., 3], b[..., 1], b[..., 3])
    return inter / np.maximum(np.minimum(a[..., 2] * a[..., 3], b[..., 2] * b[..., 3]), 1)


def _overlap(start_a, length_a, start_b, length_b):
    return np.maximum(0, np.minimum(start_a + length_a, start_b + length_b)
                      - np.maximum(start_a, start_b))


def _paste(canvas, images, at, pixels, side):
    """canvas[image, y:y+side, x:x+side] = max(itself, pixels), one item per image."""
    r = np.arange(side)
    ys = at[:, 1, None, None] + r[None, :, None]
    xs = at[:, 0, None, None] + r[None, None, :]
    region = (images[:, None, None], ys, xs)
    canvas[region] = np.maximum(canvas[region], pixels)


def _background(canvas, items, rng):
    """Noise and dimmed item fragments, written into `canvas` (n, size, size) in place."""
    n, size, _ = canvas.shape
    canvas[:] = rng.random(canvas.shape, np.float32) * np.float32(NOISE)
    counts = rng.integers(CLUTTER[0], CLUTTER[1] + 1, n)
    r = np.arange(FRAGMENT)
    for j in range(CLUTTER[1]):
        rows = np.flatnonzero(counts > j)
        source = rng.integers(0, len(items), len(rows))
        corner = rng.integers(0, items.shape[1] - FRAGMENT + 1, (len(rows), 2))
        fragment = items[source[:, None, None], corner[:, 1, None, None] + r[None, :, None],
                         corner[:, 0, None, None] + r[None, None, :]]
        dim = rng.uniform(*FRAGMENT_CONTRAST, len(rows)).astype(np.float32)
        _paste(canvas, rows, rng.integers(0, size - FRAGMENT + 1, (len(rows), 2)),
               fragment * dim[:, None, None], FRAGMENT)
    np.clip(canvas, 0, 1, out=canvas)
