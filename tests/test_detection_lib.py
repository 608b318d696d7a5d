"""The detector's NumPy side (examples/detection_lib.py): NMS on hand-checked cases, the grid
encoding round trip, and pycocotools' mAP on predictions whose value is known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from examples import detection_lib as D

GRID = D.Grid(cells=8, size=64, prior=16.0)


# --- IoU and NMS -------------------------------------------------------------------------------

def test_iou_of_hand_checked_pairs():
    box = [0, 0, 4, 2]
    others = [[0, 0, 4, 2], [2, 0, 4, 2], [4, 0, 4, 2], [10, 10, 1, 1], [1, 1, 2, 1]]
    # identical; overlap 2x2 of union 12; touching edges; disjoint; contained (2 of 8)
    np.testing.assert_allclose(D.iou(box, others), [1, 4 / 12, 0, 0, 2 / 8])


def test_iou_of_two_empty_boxes_is_zero_not_nan():
    assert D.iou([3, 3, 0, 0], [[3, 3, 0, 0]]).tolist() == [0.0]


def test_nms_keeps_the_best_of_identical_boxes():
    boxes = [[5, 5, 10, 10]] * 3
    assert D.nms(boxes, [0.2, 0.9, 0.5], 0.5).tolist() == [1]


def test_nms_keeps_every_disjoint_box_best_first():
    boxes = [[0, 0, 4, 4], [10, 0, 4, 4], [0, 10, 4, 4]]
    assert D.nms(boxes, [0.3, 0.8, 0.5], 0.0).tolist() == [1, 2, 0]


def test_nms_keeps_a_box_whose_iou_equals_the_threshold():
    # overlap 2 (x 1..3) of union 4: IoU exactly 0.5
    boxes = [[0, 0, 3, 1], [1, 0, 3, 1]]
    assert D.iou(boxes[0], boxes[1:]).tolist() == [0.5]
    assert D.nms(boxes, [0.9, 0.8], 0.5).tolist() == [0, 1]
    assert D.nms(boxes, [0.9, 0.8], np.nextafter(0.5, 0)).tolist() == [0]


def test_nms_breaks_score_ties_by_index():
    boxes = [[0, 0, 4, 4], [0, 0, 4, 4], [20, 20, 4, 4], [20, 20, 4, 4]]
    assert D.nms(boxes, [0.5, 0.5, 0.5, 0.5], 0.5).tolist() == [0, 2]


def test_nms_suppression_is_greedy_not_transitive():
    # 0 suppresses 1 (IoU 0.6); 2 overlaps 1 (IoU 0.6) but not 0 (1/7), so it survives
    boxes = [[0, 0, 4, 1], [1, 0, 4, 1], [2, 0, 4, 1]]
    assert D.nms(boxes, [0.9, 0.8, 0.7], 0.5).tolist() == [0, 2]


def test_nms_of_no_boxes():
    assert D.nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_nms_refuses_nan_scores_and_bad_thresholds():
    with pytest.raises(ValueError, match="NaN"):
        D.nms([[0, 0, 1, 1]], [np.nan], 0.5)
    with pytest.raises(ValueError, match="iou_threshold"):
        D.nms([[0, 0, 1, 1]], [1.0], 1.5)
    with pytest.raises(ValueError, match=r"\(k, 4\)"):
        D.nms([[0, 0, 1]], [1.0], 0.5)


def test_nms_per_class_suppresses_only_within_a_class():
    boxes = [[0, 0, 4, 4]] * 3
    keep = D.nms_per_class(boxes, [0.9, 0.8, 0.7], [1, 2, 1], 0.5)
    assert keep.tolist() == [0, 1]


# --- grid encoding and decoding ----------------------------------------------------------------

def _perfect_outputs(targets):
    """Network outputs that say exactly the targets: confident logits, the true offsets."""
    objectness = np.where(targets.objects > 0, 30.0, -30.0)[:, None]
    classes = 30.0 * np.moveaxis(targets.classes, -1, 1)
    return np.concatenate([objectness, targets.boxes, classes], axis=1)


def test_encode_puts_each_object_in_the_cell_of_its_centre():
    t = D.encode(GRID, [np.array([[20.0, 4.0, 8.0, 16.0]])], [np.array([3])], classes=5)
    # centre (24, 12): column 3, row 1; offsets 0 and 0.5 cell; sizes 8 and 16 against 16
    assert np.argwhere(t.objects[0]).tolist() == [[1, 3]]
    np.testing.assert_allclose(t.boxes[0, :, 1, 3], [0.0, 0.5, np.log(0.5), 0.0], atol=1e-7)
    assert t.classes[0, 1, 3].tolist() == [0, 0, 0, 1, 0]
    empty = t.objects[0] == 0
    assert t.classes.sum() == 1 and not t.boxes[0][:, empty].any()


def test_encode_gives_a_shared_cell_to_the_larger_box():
    boxes = np.array([[0.0, 0.0, 6.0, 6.0], [0.0, 0.0, 7.0, 7.0]])  # both centres in cell (0, 0)
    t = D.encode(GRID, [boxes], [np.array([1, 2])], classes=3)
    assert t.dropped == 1 and t.objects.sum() == 1
    assert t.classes[0, 0, 0].tolist() == [0, 0, 1]
    np.testing.assert_allclose(t.boxes[0, 2:, 0, 0], np.log(7 / 16))


def test_encode_refuses_labels_outside_the_classes():
    with pytest.raises(ValueError, match=r"image 0 has labels \[4\] outside"):
        D.encode(GRID, [np.array([[0.0, 0.0, 5.0, 5.0]])], [np.array([4])], classes=4)


def test_encode_decode_round_trip(rng):
    boxes, labels = [], []
    for _ in range(6):  # 1-4 objects per image, centres in distinct cells
        k = rng.integers(1, 5)
        cells = rng.choice(64, size=k, replace=False)
        centre = (np.stack(np.divmod(cells, 8), 1)[:, ::-1] + rng.uniform(0, 1, (k, 2))) * 8
        half = np.minimum(rng.uniform(3, 15, (k, 2)), np.minimum(centre, 64 - centre))
        boxes.append(np.concatenate([centre - half, 2 * half], 1))  # on the canvas: no clipping
        labels.append(rng.integers(0, 10, k))
    targets = D.encode(GRID, boxes, labels, classes=10)
    assert targets.dropped == 0
    detections = D.decode(GRID, _perfect_outputs(targets), score_threshold=0.5)
    for (got, scores, got_labels), want, want_labels in zip(detections, boxes, labels):
        order = np.lexsort(want.T[::-1])
        mine = np.lexsort(got.T[::-1])
        np.testing.assert_allclose(got[mine], want[order], atol=1e-4)
        assert got_labels[mine].tolist() == want_labels[order].tolist()
        assert np.all(scores > 0.99)


def test_decode_scores_every_class_of_a_cell_and_clips_boxes_to_the_canvas():
    out = np.full((1, 5 + 2, 8, 8), -30.0)
    out[0, :5, 0, 0] = [30.0, 0.0, 0.0, np.log(2.0), np.log(2.0)]  # 32x32 around (0, 0)
    out[0, 5:, 0, 0] = [np.log(3.0), 0.0]  # class probabilities 0.75 and 0.25
    boxes, scores, labels = D.decode(GRID, out, score_threshold=0.1)[0]
    np.testing.assert_allclose(scores, [0.75, 0.25])
    assert labels.tolist() == [0, 1]
    np.testing.assert_allclose(boxes, [[0, 0, 16, 16]] * 2)


def test_decode_of_huge_log_sizes_does_not_overflow():
    out = np.zeros((1, 6, 8, 8))
    out[0, 3:5] = 1e4
    with np.errstate(over="raise"):
        boxes = D.decode(GRID, out)[0][0]
    assert np.all(np.isfinite(boxes)) and boxes[:, 2:].max() <= 64


# --- COCO evaluation by pycocotools ------------------------------------------------------------

TRUE_BOXES = [np.array([[10.0, 10.0, 20.0, 20.0], [40.0, 5.0, 10.0, 15.0]]),
              np.array([[0.0, 30.0, 25.0, 12.0]])]
TRUE_LABELS = [np.array([0, 1]), np.array([1])]


def _evaluate(detections):
    pytest.importorskip("pycocotools")
    return D.evaluate(TRUE_BOXES, TRUE_LABELS, detections, classes=3, size=64)


def test_coco_map_of_perfect_predictions_is_one():
    detections = [(b, np.full(len(b), 0.9), lab) for b, lab in zip(TRUE_BOXES, TRUE_LABELS)]
    assert _evaluate(detections) == {"mAP@0.5": 1.0, "mAP@[.5:.95]": 1.0}


def test_coco_map_of_boxes_shifted_by_a_tenth_of_their_width():
    # IoU of a box and itself shifted by w/10: 0.9 / 1.1 = 0.818..., a hit at the thresholds
    # 0.50 ... 0.80 (7 of 10) and a miss above
    shifted = [b + np.array([0.1, 0, 0, 0]) * b[:, 2:3] for b in TRUE_BOXES]
    detections = [(b, np.full(len(b), 0.9), lab) for b, lab in zip(shifted, TRUE_LABELS)]
    maps = _evaluate(detections)
    assert maps["mAP@0.5"] == 1.0
    assert maps["mAP@[.5:.95]"] == pytest.approx(0.7)


def test_coco_map_with_a_better_scored_false_positive_is_a_half_for_its_class():
    # class 0: one true box; a wrong box scored above the right one -> precision 1/2 at every
    # recall, AP 0.5; class 1 is perfect: mean (0.5 + 1) / 2
    wrong = np.array([[50.0, 50.0, 10.0, 10.0]])
    detections = [(np.concatenate([wrong, TRUE_BOXES[0]]), np.array([0.95, 0.9, 0.9]),
                   np.array([0, 0, 1])),
                  (TRUE_BOXES[1], np.array([0.9]), TRUE_LABELS[1])]
    maps = _evaluate(detections)
    assert maps == {"mAP@0.5": pytest.approx(0.75), "mAP@[.5:.95]": pytest.approx(0.75)}


def test_coco_map_of_no_detections_is_zero():
    empty = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))
    assert _evaluate([empty, empty]) == {"mAP@0.5": 0.0, "mAP@[.5:.95]": 0.0}


def test_coco_ground_truth_numbers_annotations_and_shifts_categories():
    gt = D.coco_ground_truth(TRUE_BOXES, TRUE_LABELS, classes=3, size=64)
    assert [a["id"] for a in gt["annotations"]] == [1, 2, 3]
    assert [a["category_id"] for a in gt["annotations"]] == [1, 2, 2]
    assert gt["annotations"][2]["area"] == 25.0 * 12.0
