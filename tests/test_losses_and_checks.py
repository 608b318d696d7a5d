"""Regression tests for issue 7, items 5, 6 and 10: losses at infinite scores (against PyTorch
float64), the interpreter and gradient checks on the stable graph, and integer range checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import graphdl as gd
from graphdl.errors import InputError

inf = np.inf
F = torch.nn.functional


def three_modes(outputs, feeds):
    """The values of `outputs` from the interpreter and compiled with the optimizer on and off."""
    with np.errstate(all="ignore"):
        return {"evaluate": gd.evaluate(outputs, feeds),
                "optimized": gd.compile(outputs, optimize=True)(feeds),
                "plain": gd.compile(outputs, optimize=False)(feeds)}


def assert_matches(results, want):
    for mode, got in results.items():
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-15, err_msg=mode)


def torch_value_and_grad(fn, scores):
    t = torch.tensor(scores, requires_grad=True)
    value = fn(t)
    value.backward()
    return [value.detach().numpy(), t.grad.numpy()]


def torch_hinge(s, labels):
    """The lecture's multiclass SVM loss written in PyTorch:
    mean_i Σ_{j≠y} max(0, s_j − s_y + 1)."""
    correct = s.gather(1, labels[:, None])
    margins = torch.clamp(s - correct + 1, min=0)
    others = torch.ones_like(s, dtype=torch.bool).scatter(1, labels[:, None], False)
    return torch.where(others, margins, 0).sum(1).mean()


SCORES = np.array([[1.0, -inf, 0.5, 2.0], [0.2, 0.3, -inf, -inf], [-1.0, 0.0, 3.0, -inf]])
LABELS = np.array([0, 1, 2])


@pytest.mark.parametrize("one_hot", [False, True], ids=["int-labels", "one-hot-rows"])
def test_cross_entropy_masked_class_minus_inf_issue7_item5(one_hot):
    z = gd.input("z", SCORES.shape, "float64")
    labels = (gd.input("y", SCORES.shape, "float64") if one_hot
              else gd.input("y", LABELS.shape, "int64"))
    loss = gd.softmax_cross_entropy(z, labels)
    fed = np.eye(4)[LABELS] if one_hot else LABELS
    want = torch_value_and_grad(lambda t: F.cross_entropy(t, torch.tensor(LABELS)), SCORES)
    assert np.isfinite(want[0])
    assert_matches(three_modes([loss, gd.grad(loss, z)], {"z": SCORES, "y": fed}), want)


def test_cross_entropy_second_derivative_with_a_masked_class_issue7_item5():
    z, v = gd.input("z", SCORES.shape, "float64"), gd.input("v", SCORES.shape, "float64")
    loss = gd.softmax_cross_entropy(z, gd.input("y", (3,), "int64"))
    hvp = gd.grad(gd.sum(gd.grad(loss, z) * v), z)
    direction = np.arange(12.0).reshape(3, 4) / 7
    t = torch.tensor(SCORES, requires_grad=True)
    (g,) = torch.autograd.grad(F.cross_entropy(t, torch.tensor(LABELS)), t, create_graph=True)
    (want,) = torch.autograd.grad((g * torch.tensor(direction)).sum(), t)
    got = three_modes([hvp], {"z": SCORES, "y": LABELS, "v": direction})
    assert np.all(np.isfinite(want.numpy()))
    assert_matches(got, [want.numpy()])


@pytest.mark.parametrize("bad", [inf, -inf])
def test_hinge_loss_infinite_non_target_score_issue7_item5(bad):
    scores = np.array([[1.0, bad, 0.5], [0.2, 0.3, 0.9], [bad, 2.0, -0.5]])
    labels = np.array([0, 1, 1])
    s = gd.input("s", scores.shape, "float64")
    loss = gd.hinge_loss(s, gd.input("y", (3,), "int64"))
    want = torch_value_and_grad(lambda t: torch_hinge(t, torch.tensor(labels)), scores)
    assert not np.isnan(want[0]) and np.all(np.isfinite(want[1]))
    assert_matches(three_modes([loss, gd.grad(loss, s)], {"s": scores, "y": labels}), want)


def test_hinge_loss_zero_margin_has_no_gradient_like_torch():
    """A margin of exactly 0 (and 1e-38 - 1 + 1 in float32, summed in PyTorch's order) gets
    PyTorch's multi_margin_loss gradient, not half of it."""
    scores = np.float32([[-1, 1, -2], [1e-38, 1, 0.5]])
    labels = np.array([0, 1])
    s = gd.input("s", scores.shape, "float32")
    loss = gd.hinge_loss(s, gd.input("y", (2,), "int64"))
    t = torch.tensor(scores, requires_grad=True)
    (F.multi_margin_loss(t, torch.tensor(labels)) * 3).backward()
    for mode, got in three_modes([gd.grad(loss, s)], {"s": scores, "y": labels}).items():
        np.testing.assert_allclose(got[0], t.grad.numpy(), rtol=1e-6, err_msg=mode)


@pytest.mark.parametrize("row", [[1.0, inf, 0.0], [-inf, -inf, -inf], [1.0, -inf, 0.0],
                                 [-1e308, 1e308, 0.0]],
                         ids=["plus-inf", "all-minus-inf", "minus-inf", "huge"])
def test_logsumexp_infinite_entries_match_torch_issue7_item5(row):
    x = np.array([row, [0.5, -2.0, 1.0]])
    node = gd.input("x", x.shape, "float64")
    lse = gd.logsumexp(node, axis=1)
    want = torch_value_and_grad(lambda t: torch.logsumexp(t, 1).sum(), x)
    got = three_modes([lse, gd.grad(gd.sum(lse), node)], {"x": x})
    with np.errstate(all="ignore"):
        want[0] = torch.logsumexp(torch.tensor(x), 1).numpy()
    assert_matches(got, want)  # NaNs (torch's gradient at an inf entry) compare equal


def test_logsumexp_float32_keeps_its_dtype_and_infinities():
    x = gd.input("x", (3,), "float32")
    for mode, value in three_modes([gd.logsumexp(x)], {"x": np.float32([1, inf, 2])}).items():
        assert value[0].dtype == np.float32 and value[0] == inf, mode
    for mode, value in three_modes([gd.logsumexp(x)], {"x": np.float32([-inf] * 3)}).items():
        assert value[0] == -inf, mode


# ---------------------------------------------------------------- item 6
CIRCUITS = {"sigmoid": gd.sigmoid, "tanh": gd.tanh,
            "lecture-sigmoid": lambda x: gd.reciprocal(1 + gd.exp(-x))}


@pytest.mark.parametrize("build", CIRCUITS.values(), ids=CIRCUITS.keys())
def test_evaluate_sigmoid_float32_minus_100_is_stable(build):
    x = gd.input("x", (2,), "float32")
    y = build(x)
    outputs = [y, gd.grad(gd.sum(y), x)]
    at = np.float32([-100, 100])
    got = gd.evaluate(outputs, x=at)
    assert all(np.all(np.isfinite(g)) and g.dtype == np.float32 for g in got)
    for g, c in zip(got, gd.compile(outputs)(x=at), strict=True):
        np.testing.assert_array_equal(g, c)
    exact = gd.evaluate([build(gd.input("x", (2,), "float64")), ], x=at.astype(np.float64))
    np.testing.assert_allclose(got[0], exact[0], rtol=1e-6, atol=1e-37)


def test_evaluate_can_run_the_graph_as_declared():
    x = gd.input("x", (), "float32")
    y = gd.sigmoid(x)
    with np.errstate(all="ignore"):
        assert np.isnan(gd.evaluate(gd.grad(y, x), x=-100.0, stabilize=False))
    assert gd.evaluate(gd.grad(y, x), x=-100.0) > 0


def test_check_grad_does_not_blame_exp_at_overflow():
    x = gd.input("x", (), "float32")
    with np.errstate(all="ignore"):
        result = gd.check_grad(gd.sigmoid(x), {"x": np.float32(-100)})
    assert result.ok and result.first is None
    assert {c.node.op.name for c in result.unchecked} >= {"exp", "reciprocal"}
    assert "not checked: overflow" in result.report() and "✗" not in result.report()
    assert "not checked: overflow" in str(result)


def test_check_grad_still_blames_a_wrong_rule_next_to_an_overflow():
    x = gd.input("x", (), "float32")
    twice = gd.custom_op("twice", lambda a: a * 2, lambda inputs, out, g: [g * 3])  # wrong: 2
    with np.errstate(all="ignore"):
        result = gd.check_grad(gd.sigmoid(twice(x)), {"x": np.float32(-100)})
    assert not result.ok and result.first.node.op.name == "twice"
    assert result.unchecked


# ---------------------------------------------------------------- item 10
def modes(outputs):
    return {"evaluate": lambda feeds=None, **named: gd.evaluate(outputs, feeds, **named),
            "optimized": gd.compile(outputs, optimize=True),
            "plain": gd.compile(outputs, optimize=False)}


def test_int64_index_that_overflows_int32_input_is_refused():
    table = gd.input("table", (4, 2), "float64")
    idx = gd.input("idx", (2,), "int32")
    row = gd.take(table, idx, axis=0)
    wrapped = np.array([0, 2**32 + 1], np.int64)  # astype(int32) would read 1
    for mode, run in modes(row).items():
        with pytest.raises(InputError, match=r"'idx' is int32: value 4294967297 does not fit"):
            run({"table": np.ones((4, 2)), "idx": wrapped})
        fits = run({"table": np.arange(8.0).reshape(4, 2), "idx": np.array([3, 0], np.int64)})
        np.testing.assert_array_equal(fits, [[6, 7], [0, 1]], err_msg=mode)


def test_negative_value_into_unsigned_input_is_refused():
    u = gd.input("counts", (2,), "uint8")
    with pytest.raises(InputError, match=r"'counts' is uint8: value -1 does not fit .*\[0, 255\]"):
        gd.evaluate(u + 1, counts=[-1, 3])


LOSSES = {"cross_entropy": gd.softmax_cross_entropy, "hinge": gd.hinge_loss,
          "one_hot": lambda s, y: gd.sum(gd.one_hot(y, 3, "float64") * s)}


@pytest.mark.parametrize("label", [3, -1, 7])
@pytest.mark.parametrize("loss", LOSSES.values(), ids=LOSSES.keys())
def test_out_of_range_label_raises_naming_labels(loss, label):
    scores = gd.input("scores", (2, 3), "float64")
    value = loss(scores, gd.input("labels", (2,), "int64"))
    feeds = {"scores": np.zeros((2, 3)), "labels": np.array([0, label])}
    message = rf"class labels 'labels': index {label} is out of range \[0, 3\)"
    for run in modes([value, gd.grad(value, scores)]).values():
        with pytest.raises(IndexError, match=message):
            run(feeds)
        run({**feeds, "labels": np.array([0, 2])})  # in range: no error


def test_out_of_range_label_with_unknown_batch_raises():
    scores = gd.input("scores", (None, 3), "float64")
    loss = gd.softmax_cross_entropy(scores, gd.input("labels", (None,), "uint8"))
    for run in modes(loss).values():
        with pytest.raises(IndexError, match="class labels 'labels': index 3"):
            run(scores=np.zeros((4, 3)), labels=np.array([0, 1, 2, 3], np.uint8))


def test_take_out_of_bounds_names_indices():
    table = gd.input("table", (None, 2), "float64")
    idx = gd.input("idx", (3,), "int64")
    y = gd.take(table, idx, axis=0)
    for run in modes([y, gd.grad(gd.sum(y), table)]).values():
        for bad in (5, -6):
            with pytest.raises(IndexError, match=rf"take: indices 'idx' .*index {bad} is out of "
                                                 r"range \[-5, 5\)"):
                run(table=np.ones((5, 2)), idx=np.array([0, bad, 1]))


def test_take_out_of_bounds_constant_index_is_refused():
    table = gd.input("table", (3,), "float64")
    y = gd.take(table, gd.constant(np.array([0, 3])))
    for run in modes(y).values():
        with pytest.raises(IndexError, match=r"index 3 is out of range \[-3, 3\)"):
            run(table=np.zeros(3))


def test_take_negative_index_follows_numpy():
    """graphdl follows NumPy's indexing for take: -1 is the last row, -n the first."""
    table = gd.input("table", (4, 3), "float64")
    idx = gd.input("idx", (3,), "int64")
    y = gd.take(table, idx, axis=0)
    dtable = gd.grad(gd.sum(y * y), table)
    tv = np.arange(12.0).reshape(4, 3)
    iv = np.array([-1, -4, -1])
    want_grad = np.zeros((4, 3))
    np.add.at(want_grad, iv, 2 * tv[iv])
    for mode, run in modes([y, dtable]).items():
        got_y, got_d = run(table=tv, idx=iv)
        np.testing.assert_array_equal(got_y, np.take(tv, iv, axis=0), err_msg=mode)
        np.testing.assert_array_equal(got_d, want_grad, err_msg=mode)
