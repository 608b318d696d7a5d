"""The NumPy side of the single-shot grid detector (examples/detection.py): targets on the grid,
decoding, non-maximum suppression and COCO evaluation through pycocotools.

Boxes are (x, y, w, h) in pixels, (x, y) the top-left corner: COCO's bbox format.

The grid: an S x S grid of cells over a square canvas; an object belongs to the cell holding its
box centre, which predicts

    channel 0        objectness logit (1 where an object's centre lies, else 0)
    channels 1, 2    the centre's offset inside the cell, in cell units: cx / cell - column
    channels 3, 4    log(w / prior), log(h / prior)
    channels 5...    one logit per class

so a network's output is (N, 5 + classes, S, S). A cell holds one object: where two centres
fall into one cell, the larger box (by area; the first of equal ones) is the target and the
other is not learned (`Targets.dropped` counts them).

Decoding scores every (cell, class) pair as sigmoid(objectness) * softmax(class logits)_class,
as YOLO does, keeps those of at least `score_threshold`, runs non-maximum suppression per class
(a box suppresses only boxes of its own class) and keeps the `max_detections` best.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import numpy as np

BOX_CHANNELS = 5  # objectness, two offsets, two log-sizes
MAX_LOG_SIZE = 4.0  # decoded log-sizes are clipped here: no overflow on an untrained network


@dataclass(frozen=True)
class Grid:
    """An S x S grid (`cells` per side) over a `size` x `size` canvas; `prior` is the box side
    (pixels) that a log-size of 0 stands for."""

    cells: int = 8
    size: int = 64
    prior: float = 16.0

    @property
    def cell(self):
        return self.size / self.cells


@dataclass(frozen=True)
class Targets:
    """A batch's training targets on the grid: `objects` (N, S, S) float32 1/0, `boxes`
    (N, 4, S, S) float32 (offsets and log-sizes; 0 in empty cells), `classes` (N, S, S, C)
    float32 one-hot rows (zero rows in empty cells), `dropped`: objects that lost their cell to
    a larger one."""

    objects: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    dropped: int


def encode(grid, boxes, labels, classes):
    """The `Targets` of a batch: `boxes` and `labels` are lists (one entry per image) of (k, 4)
    boxes and (k,) integer labels in [0, classes)."""
    if len(boxes) != len(labels):
        raise ValueError(f"encode: {len(boxes)} images of boxes but {len(labels)} of labels")
    s = grid.cells
    objects = np.zeros((len(boxes), s, s), np.float32)
    coords = np.zeros((len(boxes), 4, s, s), np.float32)
    onehot = np.zeros((len(boxes), s, s, classes), np.float32)
    dropped = 0
    for i, (b, lab) in enumerate(zip(boxes, labels)):
        b, lab = _checked(b, lab, classes, f"image {i}")
        for j in np.argsort(-(b[:, 2] * b[:, 3]), kind="stable"):  # larger boxes claim first
            row, col, offsets = _cell_of(grid, b[j])
            if objects[i, row, col]:
                dropped += 1
                continue
            objects[i, row, col] = 1
            coords[i, :, row, col] = offsets
            onehot[i, row, col, lab[j]] = 1
    return Targets(objects, coords, onehot, dropped)


def _checked(boxes, labels, classes, where):
    """One image's boxes as float64 (k, 4) with positive sizes, its labels as int (k,)."""
    boxes, labels = np.asarray(boxes, np.float64), np.asarray(labels)
    if boxes.size == 0:  # an image without objects: [] as well as an empty (0, 4)
        boxes, labels = boxes.reshape(0, 4), labels.astype(np.int64)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or labels.shape != (len(boxes),):
        raise ValueError(f"encode: {where} needs boxes of shape (k, 4) and labels of shape (k,), "
                         f"got {boxes.shape} and {labels.shape}")
    if labels.dtype.kind not in "iu" or np.any((labels < 0) | (labels >= classes)):
        raise ValueError(f"encode: {where} has labels {labels} outside the integers "
                         f"[0, {classes})")
    if np.any(boxes[:, 2:] <= 0):
        raise ValueError(f"encode: {where} has a box without positive width and height: {boxes}")
    return boxes, labels


def _cell_of(grid, box):
    """(row, column, [tx, ty, tw, th]) of one box: the cell holding its centre (a centre on the
    canvas's far edge belongs to the last cell) and its offsets and log-sizes."""
    x, y, w, h = box
    cx, cy = (x + w / 2) / grid.cell, (y + h / 2) / grid.cell
    col = int(np.clip(np.floor(cx), 0, grid.cells - 1))
    row = int(np.clip(np.floor(cy), 0, grid.cells - 1))
    return row, col, [cx - col, cy - row, np.log(w / grid.prior), np.log(h / grid.prior)]


def decode(grid, outputs, score_threshold=0.01, iou_threshold=0.5, max_detections=100):
    """A network's outputs (N, 5 + classes, S, S) -> one (boxes (k, 4), scores (k,), labels
    (k,)) per image, best first: every (cell, class) scored sigmoid(objectness) * class
    probability, those below `score_threshold` dropped, NMS per class, at most
    `max_detections` kept. Boxes are clipped to the canvas."""
    outputs = np.asarray(outputs, np.float64)
    s = grid.cells
    if outputs.ndim != 4 or outputs.shape[1] <= BOX_CHANNELS or outputs.shape[2:] != (s, s):
        raise ValueError(f"decode: outputs must be (N, {BOX_CHANNELS} + classes, {s}, {s}), got "
                         f"{outputs.shape}")
    return [_decode_one(grid, out, score_threshold, iou_threshold, max_detections)
            for out in outputs]


def _decode_one(grid, out, score_threshold, iou_threshold, max_detections):
    cells = out.reshape(out.shape[0], -1)  # (channels, S*S), cell index = row * S + column
    scores = _sigmoid(cells[0])[:, None] * _softmax(cells[BOX_CHANNELS:].T)  # (S*S, classes)
    cell, label = np.nonzero(scores >= score_threshold)
    boxes = _boxes(grid, cells[1:BOX_CHANNELS, cell], cell)
    keep = nms_per_class(boxes, scores[cell, label], label, iou_threshold)[:max_detections]
    return boxes[keep], scores[cell, label][keep], label[keep]


def _boxes(grid, coords, cell):
    """(4, k) offsets and log-sizes of cells `cell` -> (k, 4) boxes clipped to the canvas."""
    row, col = np.divmod(cell, grid.cells)
    cx, cy = (col + coords[0]) * grid.cell, (row + coords[1]) * grid.cell
    w, h = grid.prior * np.exp(np.minimum(coords[2:], MAX_LOG_SIZE))
    x0, y0 = np.clip(cx - w / 2, 0, grid.size), np.clip(cy - h / 2, 0, grid.size)
    x1, y1 = np.clip(cx + w / 2, 0, grid.size), np.clip(cy + h / 2, 0, grid.size)
    return np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)


def _sigmoid(x):
    return np.exp(-np.logaddexp(0, -x))


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def iou(box, boxes):
    """Intersection over union of one (x, y, w, h) box with each of `boxes` (k, 4); 0 where
    both are empty."""
    box, boxes = np.asarray(box, np.float64), np.asarray(boxes, np.float64).reshape(-1, 4)
    wide = np.minimum(box[0] + box[2], boxes[:, 0] + boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])
    high = np.minimum(box[1] + box[3], boxes[:, 1] + boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])
    inter = np.maximum(wide, 0) * np.maximum(high, 0)
    union = box[2] * box[3] + boxes[:, 2] * boxes[:, 3] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def nms(boxes, scores, iou_threshold):
    """Greedy non-maximum suppression, class-agnostic: the indices of the kept boxes, highest
    score first. The best remaining box is kept and every box whose IoU with it is greater than
    `iou_threshold` is dropped (IoU exactly at the threshold is kept, as torchvision); of equal
    scores the lower index comes first."""
    boxes, scores = np.asarray(boxes, np.float64), np.asarray(scores, np.float64)
    if boxes.shape != (len(scores), 4) or scores.ndim != 1:
        raise ValueError(f"nms: boxes must be (k, 4) and scores (k,), got {boxes.shape} and "
                         f"{scores.shape}")
    if np.isnan(scores).any():
        raise ValueError("nms: scores contain NaN, which has no order")
    if not 0 <= iou_threshold <= 1:
        raise ValueError(f"nms: iou_threshold must be in [0, 1], got {iou_threshold!r}")
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best, order = order[0], order[1:]
        keep.append(best)
        order = order[iou(boxes[best], boxes[order]) <= iou_threshold]
    return np.array(keep, np.int64)


def nms_per_class(boxes, scores, labels, iou_threshold):
    """`nms` within each class (a box suppresses only boxes of its own label): the indices of
    the kept boxes, highest score first, equal scores by index."""
    boxes, scores, labels = np.asarray(boxes), np.asarray(scores), np.asarray(labels)
    kept = [np.flatnonzero(labels == c)[nms(boxes[labels == c], scores[labels == c],
                                            iou_threshold)]
            for c in np.unique(labels)]
    keep = np.sort(np.concatenate(kept)) if kept else np.zeros(0, np.int64)
    return keep[np.argsort(-scores[keep], kind="stable")]


def coco_ground_truth(boxes, labels, classes, size):
    """The COCO-format dataset of the true boxes: image ids 0..N-1, category id = label + 1
    (COCO's ids start at 1), area = w * h, nothing crowd."""
    annotations = []
    for i, (bs, cs) in enumerate(zip(boxes, labels)):
        for b, c in zip(np.asarray(bs, np.float64).reshape(-1, 4), cs):
            annotations.append({"id": len(annotations) + 1, "image_id": i,
                                "category_id": int(c) + 1, "bbox": b.tolist(),
                                "area": float(b[2] * b[3]), "iscrowd": 0})
    return {"images": [{"id": i, "width": size, "height": size} for i in range(len(boxes))],
            "annotations": annotations,
            "categories": [{"id": c + 1, "name": str(c)} for c in range(classes)]}


def coco_detections(detections):
    """`decode`'s per-image (boxes, scores, labels) as COCO result dicts."""
    return [{"image_id": i, "category_id": int(c) + 1, "bbox": [float(v) for v in b],
             "score": float(s)}
            for i, (bs, ss, cs) in enumerate(detections) for b, s, c in zip(bs, ss, cs)]


def evaluate(boxes, labels, detections, classes, size):
    """COCO box mAP by pycocotools: {"mAP@0.5": ..., "mAP@[.5:.95]": ...} of `detections`
    (per image, as `decode` gives them) against the true `boxes` and `labels`. Classes without a
    true box are left out of the mean (COCOeval's rule); no detection at all scores 0."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(detections) != len(boxes):
        raise ValueError(f"evaluate: {len(detections)} images of detections for {len(boxes)} "
                         f"images of true boxes")
    results = coco_detections(detections)
    if not results:
        return {"mAP@0.5": 0.0, "mAP@[.5:.95]": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        truth = COCO()
        truth.dataset = coco_ground_truth(boxes, labels, classes, size)
        truth.createIndex()
        run = COCOeval(truth, truth.loadRes(results), "bbox")
        run.evaluate()
        run.accumulate()
        run.summarize()
    return {"mAP@0.5": float(run.stats[1]), "mAP@[.5:.95]": float(run.stats[0])}
