"""The classification + localization example (examples/localization.py): its compiled loss
against the same loss written in NumPy from the two heads' outputs, and training steps that
lower it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
L = pytest.importorskip("localization")  # examples/localization.py (imports boxes_data, data)
import boxes_data  # examples/boxes_data.py, on the path above


@pytest.fixture(scope="module")
def batch():
    return L.targets(boxes_data.canvases("train", 32, seed=11))


def _numpy_loss(scores, box, labels, target):
    scores, box = scores.astype(np.float64), box.astype(np.float64)
    logp = scores - scores.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    d = np.abs(box - target)
    smooth = np.where(d < L.BETA, 0.5 * d * d / L.BETA, d - 0.5 * L.BETA)
    return -logp[np.arange(len(labels)), labels].mean() + L.BOX_WEIGHT * smooth.mean()


def test_localization_loss_is_cross_entropy_plus_weighted_smooth_l1(batch):
    images, labels, target = batch
    params = L.init_params(np.random.default_rng(0))
    step, predict, state = L.build()
    scores, box = predict(x=images, **params)
    loss = step(x=images, y=labels, t=target, **params, **state)
    np.testing.assert_allclose(loss, _numpy_loss(scores, box, labels, target), rtol=1e-5)


def test_training_steps_lower_the_loss_on_one_batch(batch):
    images, labels, target = batch
    params = L.init_params(np.random.default_rng(0))
    step, _, state = L.build()
    losses = [float(step(x=images, y=labels, t=target, **params, **state)) for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0]


def test_evaluate_scores_perfect_predictions_as_perfect(batch):
    images, labels, target = batch

    def oracle(x, **_):  # 32 images: evaluated in one call
        assert x is images or np.array_equal(x, images)
        return np.eye(10, dtype=np.float32)[labels], target

    metrics = L.evaluate(oracle, {}, batch)
    assert metrics == {"accuracy": 1.0, "mean_iou": pytest.approx(1.0), "iou50": 1.0}
