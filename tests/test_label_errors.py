"""Labels of the losses: float class indices are refused with a hint, and both shapes shown."""

from __future__ import annotations

import re

import numpy as np
import pytest

import graphdl as gd
from graphdl.ir import format_shape

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
            "hinge_loss: class labels 'y' must have the shape of matmul('X', 'W1') without its "
            "class axis, (?,); they have shape (?, 3); matmul('X', 'W1') has shape (?, 10)")):
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


def _torch_refuses(loss, logits, labels):
    """PyTorch's counterpart refuses these labels too (the issue's yardstick)."""
    import torch
    import torch.nn.functional as F

    fn = F.cross_entropy if loss is gd.softmax_cross_entropy else F.multi_margin_loss
    if loss is gd.hinge_loss and labels.dtype.kind == "f":  # no probability targets there
        return
    with pytest.raises((RuntimeError, ValueError)):
        fn(torch.tensor(logits), torch.tensor(labels))


@pytest.mark.parametrize("shape", [(4, 1), (1, 3), (1, 1), (3,)])
@pytest.mark.parametrize("loss", LOSSES)
def test_float_labels_that_would_broadcast_are_refused(loss, shape):
    """(N, 1) float labels against (N, C) logits broadcast the column over the classes: for
    zero logits and ones the loss was 3 log 3, a number where PyTorch refuses."""
    logits = gd.input("logits", (4, 3), "float64")
    labels = gd.input("labels", shape, "float64")
    with pytest.raises(gd.GraphError) as info:
        loss(logits, labels)
    message = str(info.value)
    assert message.startswith(loss.__name__)
    assert f"'labels' have shape {format_shape(shape)}" in message
    assert "(4,)" in message and "(4, 3)" in message and "'logits'" in message
    _torch_refuses(loss, np.zeros((4, 3)), np.ones(shape))


@pytest.mark.parametrize("loss", LOSSES)
def test_a_column_of_labels_is_refused_with_unknown_batch(loss):
    logits = gd.input("logits", (None, 3), "float64")
    with pytest.raises(gd.GraphError, match=re.escape(
            "labels must be integer class indices of shape (?,) or one-hot rows of shape (?, 3); "
            "labels 'labels' have shape (?, 1)")):
        loss(logits, gd.input("labels", (None, 1), "float64"))


def _batch_mismatch(loss):
    return (f"{loss.__name__}: class labels 'y' must have the shape of 'logits' without its "
            f"class axis, (4,); they have shape (5,); 'logits' has shape (4, 3)")


@pytest.mark.parametrize("loss", LOSSES)
def test_a_label_batch_unlike_the_logits_batch_is_refused_at_the_loss(loss):
    """It was reported from inside the decomposition: `where: cannot broadcast
    equal(expand_dims#25, ...)`."""
    logits = gd.input("logits", (4, 3), "float64")
    with pytest.raises(gd.GraphError, match=re.escape(_batch_mismatch(loss))):
        loss(logits, gd.input("y", (5,), "int64"))
    _torch_refuses(loss, np.zeros((4, 3)), np.zeros(5, np.int64))


@pytest.mark.parametrize("loss", LOSSES)
def test_a_label_batch_unlike_the_logits_batch_is_refused_at_call_time(loss):
    """With the batch unknown (None) until call time, the call says the same."""
    logits = gd.input("logits", (None, 3), "float64")
    y = gd.input("y", (None,), "int64")
    value = loss(logits, y)
    feeds = {"logits": np.zeros((4, 3)), "y": np.zeros(5, np.int64)}
    with pytest.raises(gd.GraphError, match=re.escape(_batch_mismatch(loss))):
        gd.evaluate(value, feeds)
    with pytest.raises(gd.GraphError, match=re.escape(_batch_mismatch(loss))):
        gd.compile(value)(feeds)
    feeds["y"] = np.array([0, 2, 1, 0])
    assert np.isfinite(gd.evaluate(value, feeds))


def test_one_hot_rows_with_another_batch_are_refused_at_the_loss():
    logits = gd.input("logits", (4, 3), "float64")
    with pytest.raises(gd.GraphError, match=re.escape(
            "one-hot rows of shape (4, 3); labels 'onehot' have shape (5, 3)")):
        gd.softmax_cross_entropy(logits, gd.input("onehot", (5, 3), "float64"))


@pytest.mark.parametrize("shape", [(4, 1), (3,), (1, 3)])
def test_mse_refuses_targets_that_would_broadcast(shape):
    """PyTorch's mse_loss warns that such a target 'will likely lead to incorrect results due
    to broadcasting'; smooth_l1 and binary_cross_entropy_with_logits refuse it, mse now too.
    One number for every element (0-d) is still a target."""
    prediction = gd.input("prediction", (4, 3), "float64")
    assert gd.evaluate(gd.mse(prediction, 1.0), prediction=np.ones((4, 3))) == 0.0
    with pytest.raises(gd.GraphError, match=re.escape(
            f"mse: prediction 'prediction' has shape (4, 3) but target 'target' has shape "
            f"{format_shape(shape)}; they must be equal")):
        gd.mse(prediction, gd.input("target", shape, "float64"))


# Call-time shape checks of float labels and of the operands of elementwise losses: with a
# dimension unknown (None) at declaration, the fed shapes are checked at the call, with the
# message the declaration gives for those shapes (not from inside the decomposition: `mul:
# cannot broadcast 'oh' (shape (5, 3)) and 'log_softmax' (shape (4, 3))`).
SHAPE_CHECKED = {  # loss -> (first operand's name, second's): the second is checked
    gd.softmax_cross_entropy: ("logits", "labels"),
    gd.hinge_loss: ("logits", "labels"),
    gd.mse: ("prediction", "target"),
    gd.smooth_l1: ("pred", "target"),
    gd.binary_cross_entropy_with_logits: ("logits", "targets"),
}
RUNS = {
    "interpreter": lambda outs: lambda feeds: gd.evaluate(outs, feeds),
    "numpy": lambda outs: gd.compile(outs),
    "numpy-O0": lambda outs: gd.compile(outs, optimize=False),
    "cuda-cpu": lambda outs: gd.compile(outs, backend="cuda", device="cpu"),
    "cuda-cpu-O0": lambda outs: gd.compile(outs, backend="cuda", device="cpu", optimize=False),
}


def _declared_message(loss, shapes):
    """What declaring `loss` on inputs of these (concrete) shapes says."""
    operands = [gd.input(name, shape, "float64") for name, shape in zip(SHAPE_CHECKED[loss],
                                                                       shapes)]
    with pytest.raises(gd.GraphError) as info:
        loss(*operands)
    return str(info.value)


@pytest.mark.parametrize("run", list(RUNS))
@pytest.mark.parametrize("loss", list(SHAPE_CHECKED), ids=lambda f: f.__name__)
def test_operands_of_another_batch_are_refused_at_call_time_as_at_declaration(loss, run):
    first, second = SHAPE_CHECKED[loss]
    operands = [gd.input(name, (None, 3), "float64") for name in (first, second)]
    value = loss(*operands)
    outs = [value, *gd.grad(value, operands)]
    fn = RUNS[run](outs)
    feeds = {first: np.zeros((4, 3)), second: np.zeros((5, 3))}
    with pytest.raises(gd.GraphError) as info:
        fn(feeds)
    message = str(info.value)
    assert message == _declared_message(loss, [(4, 3), (5, 3)])
    assert message.startswith(f"{loss.__name__}: ")
    assert f"'{first}' ha" in message and f"'{second}' ha" in message
    assert "(4, 3)" in message and "(5, 3)" in message
    feeds[second] = np.full((4, 3), 0.5)
    assert all(np.isfinite(v).all() for v in fn(feeds))


def test_float_labels_of_another_batch_name_both_accepted_forms_at_call_time():
    logits = gd.input("logits", (None, 3), "float64")
    value = gd.softmax_cross_entropy(logits, gd.input("oh", (None, 3), "float64"))
    with pytest.raises(gd.GraphError, match=re.escape(
            "softmax_cross_entropy: labels must be integer class indices of shape (4,) or "
            "one-hot rows of shape (4, 3); labels 'oh' have shape (5, 3) and dtype float64; "
            "scores 'logits' have shape (4, 3)")):
        gd.evaluate(value, logits=np.zeros((4, 3)), oh=np.zeros((5, 3)))


def _checked_loss(loss, batch, prefix=""):
    return loss(*(gd.input(prefix + name, (batch, 3), "float64") for name in SHAPE_CHECKED[loss]))


@pytest.mark.parametrize("loss", list(SHAPE_CHECKED), ids=lambda f: f.__name__)
def test_the_call_time_check_leaves_no_statement_in_optimized_code(loss):
    """Once the fed shapes are bound the check has passed: the optimizer removes it. Without
    the optimizer it stays, an alias."""
    value = _checked_loss(loss, None)
    outs = [value, *gd.grad(value, list(value.inputs))]
    feeds = {name: np.full((4, 3), 0.5) for name in SHAPE_CHECKED[loss]}
    for fn in (gd.compile(outs), gd.compile(outs, backend="cuda", device="cpu")):
        fn(feeds)
        assert "check_shape" not in fn.source
    unoptimized = gd.compile(outs, optimize=False)
    unoptimized(feeds)
    assert "check_shape = " in unoptimized.source


@pytest.mark.parametrize("loss", list(SHAPE_CHECKED), ids=lambda f: f.__name__)
def test_a_loss_of_unknown_batch_is_drawn_and_explained_as_one_of_known_batch(loss):
    """The check is no gate, and the gates it guards name (and differentiate by) what it
    checks."""
    feeds = {f"drawn_{name}": np.linspace(-1, 1, 12).reshape(4, 3) / k  # hinge margins > 0
             for k, name in enumerate(SHAPE_CHECKED[loss], 4)}
    texts, gates = [], []
    for batch in (None, 4):  # inputs of their own: gates are in creation order, and no node
        value = _checked_loss(loss, batch, "drawn_")  # of another test's graph comes first
        texts.append(str(gd.explain(value, feeds)).replace("(?", "(4"))
        gates.append([g.label for g in gd.draw(value, feeds, collapse=()).circuit.gates])
    assert texts[0] == texts[1] and gates[0] == gates[1]
    assert "check_shape" not in texts[0] and "node " not in texts[0]


def test_one_hot_takes_an_array_of_labels_as_other_label_ops_do():
    rows = gd.evaluate(gd.one_hot(np.array([[0, 1, 2], [3, 0, 1]]), 4, dtype="float64"))
    np.testing.assert_array_equal(rows, np.eye(4)[[[0, 1, 2], [3, 0, 1]]])
    with pytest.raises(gd.GraphError, match="must be integers"):
        gd.one_hot(np.array([0.5, 1.0]), 4)
