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


@pytest.fixture(scope="module")
def batch():
    return L.canvases("train", 32, seed=11)


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
    loss = step(x=images, y=labels, t=target, lr=L.LR, **params, **state)
    np.testing.assert_allclose(loss, _numpy_loss(scores, box, labels, target), rtol=1e-5)


def test_training_steps_lower_the_loss_on_one_batch(batch):
    images, labels, target = batch
    params = L.init_params(np.random.default_rng(0))
    step, _, state = L.build()
    losses = [float(step(x=images, y=labels, t=target, lr=L.LR, **params, **state))
              for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0]


def test_evaluate_scores_perfect_predictions_as_perfect(batch):
    images, labels, target = batch

    def oracle(x, **_):  # 32 images: evaluated in one call
        assert x is images or np.array_equal(x, images)
        return np.eye(10, dtype=np.float32)[labels], target

    metrics = L.evaluate(oracle, {}, batch)
    assert metrics == {"accuracy": 1.0, "mean_iou": pytest.approx(1.0), "iou50": 1.0}


def test_learning_rate_drops_tenfold_after_each_decay_fraction():
    rates = [L.learning_rate(epoch, 20) for epoch in range(1, 21)]
    drops = [round(f * 20) for f in L.DECAY_AT]
    assert rates[:drops[0]] == [L.LR] * drops[0]
    assert rates[drops[0]:drops[1]] == pytest.approx([L.LR / 10] * (drops[1] - drops[0]))
    assert rates[drops[1]:] == pytest.approx([L.LR / 100] * (20 - drops[1]))


def test_steps_at_two_learning_rates_share_adams_state(batch):
    """From the same parameters and Adam state (build's), a step at LR / 10 moves the
    parameters a tenth as far as one at LR, and each advances the state's step count."""
    images, labels, target = batch
    train_step, _, state = L.build()
    start = L.init_params(np.random.default_rng(0))
    moves = []
    for lr in (L.LR, L.LR / 10):
        params = {k: v.copy() for k, v in start.items()}
        trial = {k: v.copy() for k, v in state.items()}
        train_step(x=images, y=labels, t=target, lr=lr, **params, **trial)
        moves.append(params["f1w"] - start["f1w"])
        assert trial["adam.step"] == 1
    np.testing.assert_allclose(moves[1], moves[0] / 10, rtol=1e-3, atol=1e-9)
