"""Labels of the losses: float class indices are refused with a hint, and both shapes shown."""

from __future__ import annotations

import re

import numpy as np
import pytest

import graphdl as gd

LOSSES = [gd.softmax_cross_entropy, gd.hinge_loss]


def scores():
    x = gd.input("X", (None, 784))
    return x @ gd.input("W1", (784, 10))


@pytest.mark.parametrize("loss", LOSSES)
def test_float_class_indices_say_they_need_an_integer_dtype_and_show_both_shapes(loss):
    labels = gd.input("yy", shape=(None,))  # float32, the default dtype
    with pytest.raises(gd.GraphError) as info:
        loss(scores(), labels)
    message = str(info.value)
    assert message.startswith(loss.__name__)
    assert "'yy' have shape (?,) and dtype float32" in message
    assert "matmul('X', 'W1') have shape (?, 10)" in message
    assert "Class indices need an integer dtype" in message
    assert "gd.input('yy', (None,), 'int64')" in message


def test_the_suggested_integer_declaration_works():
    labels = gd.input("yy", (None,), "int64")
    loss = gd.softmax_cross_entropy(scores(), labels)
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((3, 784)), rng.standard_normal((784, 10)) * 0.01
    value = gd.evaluate(loss, {"X": x, "W1": w, "yy": np.array([1, 2, 3])})
    logits = x.astype(np.float32) @ w.astype(np.float32)
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    assert np.isclose(value, -log_p[np.arange(3), [1, 2, 3]].mean(), rtol=1e-4)


def test_float_indices_computed_in_the_graph_suggest_a_cast():
    labels = gd.input("z", (None,)) * 1.0
    with pytest.raises(gd.GraphError, match=re.escape("gd.cast(labels, 'int64')")) as info:
        gd.softmax_cross_entropy(scores(), labels)
    assert "gd.input(" not in str(info.value)


@pytest.mark.parametrize("shape", [(None, 5), (None, 2, 10)])
def test_one_hot_rows_of_the_wrong_shape_name_both_accepted_forms(shape):
    labels = gd.input("onehot", shape)
    expected = ("labels must be integer class indices of shape (?,) or one-hot rows of shape "
                "(?, 10); labels 'onehot' have shape ")
    with pytest.raises(gd.GraphError, match=re.escape(expected)):
        gd.softmax_cross_entropy(scores(), labels)


def test_integer_labels_with_a_class_axis_show_the_expected_shape():
    labels = gd.input("y", (None, 3), "int64")
    with pytest.raises(gd.GraphError, match=re.escape(
            "without its class axis, (?,); labels 'y' have shape (?, 3) and dtype int64")):
        gd.hinge_loss(scores(), labels)


def test_one_hot_float_rows_are_still_accepted():
    labels = gd.input("onehot", (None, 10))
    loss = gd.softmax_cross_entropy(scores(), labels)
    assert loss.shape == () and loss.dtype == np.float32


def test_integer_logits_are_refused_naming_them():
    logits = gd.input("l", (4, 3), "int32")
    labels = gd.input("y", (4,), "int64")
    with pytest.raises(gd.GraphError, match=r"softmax_cross_entropy expects floating-point "
                                            r"input, got 'l'"):
        gd.softmax_cross_entropy(logits, labels)
