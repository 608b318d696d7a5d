"""The detection example's compiled loss (examples/detection.py) against the same loss written
in NumPy from the network's outputs, and a few training steps that lower it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
E = pytest.importorskip("detection")  # examples/detection.py (imports boxes_data, data)


def _numpy_loss(out, t):
    """The example's loss from the head's outputs (N, 5 + C, S, S), in float64."""
    out = out.astype(np.float64)
    logit, z = out[:, 0], t.objects
    objectness = np.sum(np.maximum(logit, 0) - logit * z + np.log1p(np.exp(-np.abs(logit))))
    d = np.abs(out[:, 1:5] * z[:, None] - t.boxes)
    box = np.sum(np.where(d < 1, 0.5 * d * d, d - 0.5))
    logits = np.moveaxis(out[:, 5:], 1, -1)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    cls = -np.sum(t.classes * logp)
    return (objectness + E.BOX_WEIGHT * box + cls) / z.sum()


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(0)
    train, _, targets = E.datasets({"train": 64, "test": 1})
    return train, targets, E.init_params(rng), rng


def test_detection_loss_equals_the_numpy_formula(small):
    train, targets, params, _ = small
    step, predict, state, _ = E.build()
    params = {k: v.copy() for k, v in params.items()}
    idx = np.arange(16)
    batch = {k: v[idx] for k, v in E.feeds(targets).items()}
    out = predict(x=train.images[idx], **params)
    loss = step(x=train.images[idx], **batch, **params, **state)
    want = _numpy_loss(out, E.D.Targets(batch["objects"], batch["boxes"], batch["classes"], 0))
    assert float(loss) == pytest.approx(want, rel=1e-5)


def test_detection_training_lowers_the_loss(small):
    train, targets, params, rng = small
    step, _, state, _ = E.build()
    params = {k: v.copy() for k, v in params.items()}
    losses = E.train(lambda **f: step(**f, **params, **state), train, targets, 40, rng,
                     report=40)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
