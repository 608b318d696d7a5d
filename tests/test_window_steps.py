"""Convolution and pooling told window by window (`Explanation.windows`): the numbers of each
frame against graphdl's evaluation, PyTorch and gd.grad; the stepper's frames; the strip."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import graphdl as gd
from graphdl.views import window_steps

LECTURE_GRID = [[1, 5, 4, 3], [2, 6, 4, 0], [3, 1, 7, 9], [2, 8, 6, 5]]  # the slide's 4×4


def lecture_pool(kind):
    x = gd.input("x", (1, 1, 4, 4), "float64")
    return x, getattr(gd, kind)(x, 2).named("m"), {"x": np.array(LECTURE_GRID, float)[None, None]}


def weighted_loss(y, seed):
    """sum(y · G), G an input of random weights: each output cell's upstream gradient differs."""
    g = gd.input("G", y.shape, "float64")
    values = np.random.default_rng(seed).integers(-3, 4, y.shape).astype(float)
    return gd.sum(y * g).named("f"), {"G": values}


def frame_outputs(ws):
    out = np.full(ws.y.shape, np.nan)
    for pos in ws.positions:
        out[pos.index] = pos.output
    return out


def routed_sums(ws):
    acc = np.zeros(ws.x.shape)
    for pos in ws.positions:
        for cell, v in pos.routes:
            acc[(pos.index[0], *cell)] += v
    return acc


def check_windows(f, y, x, values, torch_forward):
    """The explanation of `f` has one window per output cell of `y`; its outputs are graphdl's
    evaluation of `y` and PyTorch's; its told sum/max/average is that output; its routes summed
    per cell are gd.grad's gradient of `x` and PyTorch's."""
    ex = gd.explain(f, values)
    (ws,) = ex.windows
    assert ws.node is y and len(ws.positions) == int(np.prod(y.shape)) and not ws.note
    y_val, dx = gd.evaluate([y, *gd.grad(f, [x])], values)
    assert np.array_equal(frame_outputs(ws), y_val)
    tx = torch.tensor(values[x.name], requires_grad=True)
    ty = torch_forward(tx)
    np.testing.assert_allclose(frame_outputs(ws), ty.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose([p.total for p in ws.positions], y_val.ravel(), rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(routed_sums(ws), dx, rtol=1e-12, atol=1e-12)
    (ty * torch.tensor(values.get("G", 1.0))).sum().backward()
    np.testing.assert_allclose(routed_sums(ws), tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    assert ws.checked is True
    return ws


@pytest.mark.parametrize("kind", ["max_pool2d", "avg_pool2d"])
def test_the_lectures_pooling_example_window_by_window(kind):
    x, m, values = lecture_pool(kind)
    f = gd.sum(m).named("s")
    ws = check_windows(f, m, x, values, lambda t: getattr(F, kind)(t, 2))
    expected = [[6, 4], [8, 9]] if kind == "max_pool2d" else [[3, 2], [3, 6]]  # the slide's
    assert np.floor(frame_outputs(ws)[0, 0]).tolist() == expected
    assert [len(p.cells) for p in ws.positions] == [4] * 4
    text = str(ws)
    if kind == "max_pool2d":
        assert "m[0,0,0,0] = max(1, 5, 2, 6) = 6" in text
        assert [len(p.routes) for p in ws.positions] == [1] * 4  # the arg-max only
    else:
        assert "m[0,0,0,1] = (4 + 3 + 4 + 0) / 4 = 2.75" in text
        assert all(v == 0.25 for p in ws.positions for _, v in p.routes)  # g / k², g = 1


def test_max_pooling_routes_each_gradient_to_the_cell_graphdls_gradient_picks_among_ties():
    x = gd.input("x", (1, 1, 4, 4), "float64")
    m = gd.max_pool2d(x, 2, stride=1)  # overlapping windows
    grid = np.array([[3, 3, 1, 0], [3, 2, 5, 5], [0, 1, 5, 5], [4, 4, 2, 2]], float)[None, None]
    ex = gd.explain(gd.sum(m), {"x": grid})
    (ws,) = ex.windows
    _, idx = F.max_pool2d(torch.tensor(grid), 2, stride=1, return_indices=True)
    for pos in ws.positions:
        # graphdl's own gradient of this one output cell: nonzero at exactly one input cell
        mask = np.zeros(m.shape)
        mask[pos.index] = 1.0
        (dx,) = gd.evaluate(gd.grad(gd.sum(m * gd.constant(mask)), [x]), {"x": grid})
        picked = list(zip(*np.nonzero(dx)))
        ((cell, v),) = pos.routes
        assert picked == [(0, *cell)] and v == 1.0
        assert cell[1] * 4 + cell[2] == int(idx[pos.index])  # PyTorch's tie-break too


@pytest.mark.parametrize("stride", [1, 2])
def test_a_5x5_convolution_with_a_3x3_kernel_and_padding_1(stride):
    img = gd.input("img", (1, 1, 5, 5), "float64")
    k = gd.input("k", (1, 1, 3, 3), "float64")
    y = gd.conv2d(img, k, stride=stride, padding=1).named("c")
    f, values = weighted_loss(y, stride)
    rng = np.random.default_rng(10 + stride)
    values |= {"img": rng.integers(-3, 4, (1, 1, 5, 5)).astype(float),
               "k": rng.integers(-2, 3, (1, 1, 3, 3)).astype(float)}
    w = torch.tensor(values["k"])
    ws = check_windows(f, y, img, values,
                           lambda t: F.conv2d(t, w, stride=stride, padding=1))
    assert y.shape[2:] == ((5, 5) if stride == 1 else (3, 3))
    corner = ws.positions[0]  # the window at (0, 0) reaches into the padding
    assert sum(not ws.inside(c) for c in corner.cells) == 5 and len(corner.routes) == 4
    g = values["G"][corner.index]
    assert [v for _, v in corner.routes] == [wt * g for c, wt in zip(corner.cells, corner.weights)
                                            if ws.inside(c)]  # weight times gradient
    assert "(padding cells get nothing)" in str(ws)


def test_several_channels_a_batch_and_groups():
    x = gd.input("x", (2, 2, 4, 4), "float64")
    w = gd.input("w", (4, 1, 2, 2), "float64")
    y = gd.conv2d(x, w, stride=2, groups=2)
    f, values = weighted_loss(y, 3)
    rng = np.random.default_rng(4)
    values |= {"x": rng.standard_normal((2, 2, 4, 4)), "w": rng.standard_normal((4, 1, 2, 2))}
    tw = torch.tensor(values["w"])
    ws = check_windows(f, y, x, values, lambda t: F.conv2d(t, tw, stride=2, groups=2))
    assert {p.cells[0][0] for p in ws.positions if p.index[1] in (2, 3)} == {1}  # group 2


@pytest.mark.parametrize("count_include_pad", [True, False])
def test_average_pooling_with_padding_divides_as_pytorch(count_include_pad):
    x = gd.input("x", (1, 1, 5, 5), "float64")
    y = gd.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=count_include_pad)
    f, values = weighted_loss(y, 5)
    values["x"] = np.random.default_rng(6).standard_normal((1, 1, 5, 5))
    ws = check_windows(f, y, x, values, lambda t: F.avg_pool2d(
        t, 3, stride=2, padding=1, count_include_pad=count_include_pad))
    corner = ws.positions[0]
    assert corner.divisor == (9 if count_include_pad else 4)
    assert all(v == values["G"][corner.index] / corner.divisor for _, v in corner.routes)


def test_max_pooling_with_padding_never_routes_to_the_padding():
    x = gd.input("x", (1, 1, 5, 5), "float64")
    y = gd.max_pool2d(x, 3, stride=2, padding=1)
    f, values = weighted_loss(y, 7)
    values["x"] = -np.abs(np.random.default_rng(8).standard_normal((1, 1, 5, 5)))
    ws = check_windows(f, y, x, values,
                          lambda t: F.max_pool2d(t, 3, stride=2, padding=1))
    assert all(ws.inside(cell) for p in ws.positions for cell, _ in p.routes)
    assert "−∞" in str(ws) or "-inf" in str(ws)


@pytest.mark.parametrize("kind, options", [
    ("conv2d", {"dilation": 2, "padding": 1}),
    ("max_pool2d", {"stride": 2, "dilation": 2, "padding": 1}),
    ("max_pool2d", {"stride": 2, "ceil_mode": True}),
    ("avg_pool2d", {"stride": 2, "ceil_mode": True, "padding": 1, "count_include_pad": False}),
])
def test_dilated_and_ceil_mode_windows(kind, options):
    x = gd.input("x", (1, 1, 7, 7), "float64")
    values = {"x": np.random.default_rng(11).standard_normal((1, 1, 7, 7))}
    args, torch_args = [], []
    if kind == "conv2d":
        k = gd.input("k", (1, 1, 3, 3), "float64")
        values["k"] = np.random.default_rng(12).standard_normal((1, 1, 3, 3))
        args, torch_args = [k], [torch.tensor(values["k"])]
    else:
        args = torch_args = [3 if "dilation" in options else 2]
    y = getattr(gd, kind)(x, *args, **options)
    f, values_g = weighted_loss(y, 13)
    check_windows(f, y, x, values | values_g,
                  lambda t: getattr(F, kind)(t, *torch_args, **options))


def test_without_a_scalar_output_the_windows_are_told_forward_only():
    _, m, values = lecture_pool("max_pool2d")
    (ws,) = gd.explain(m, values).windows
    assert not ws.has_grad and ws.checked is None
    assert all(p.upstream is None and not p.routes for p in ws.positions)
    assert "gradient of" not in str(ws) and frame_outputs(ws).tolist() == gd.evaluate(
        m, values).tolist()


def test_big_inputs_are_refused_and_many_positions_cut_with_a_note():
    x = gd.input("x", (1, 1, 9, 9), "float64")
    ex = gd.explain(gd.sum(gd.max_pool2d(x, 3)), {"x": np.zeros((1, 1, 9, 9))})
    (ws,) = ex.windows
    assert ws.positions == [] and "8×8" in ws.note and "9×9" in str(ws)
    assert "(no windows: x is 9×9" in ex.html()  # said in the pooling gate's step
    x = gd.input("x", (1, 2, 5, 5), "float64")
    y = gd.avg_pool2d(x, 1)  # 50 output cells
    (ws,) = gd.explain(gd.sum(y), {"x": np.ones((1, 2, 5, 5))}).windows
    assert len(ws.positions) == window_steps.MAX_POSITIONS
    assert "first 40 of 50" in ws.note and ws.checked is None


def test_the_stepper_shows_the_windows_in_order_among_the_steps():
    img = gd.input("img", (1, 1, 5, 5), "float64")
    k = gd.input("k", (1, 1, 3, 3), "float64")
    y = gd.conv2d(img, k, stride=2, padding=1).named("c")
    f, values = weighted_loss(y, 9)
    values |= {"img": np.arange(25.0).reshape(1, 1, 5, 5) % 7 - 3,
               "k": np.arange(9.0).reshape(1, 1, 3, 3) % 4 - 2}
    ex = gd.explain(f, values)
    page = ex.html()
    names = re.findall(r'<section class="frame" data-name="([^"]*)"', page)
    conv_step = next(i for i, s in enumerate(ex.steps, 1) if s.gate.node is y)
    steps = [f"step{i}" for i in range(1, len(ex.steps) + 1)]
    expected = (["forward"] + [f"c-forward{i}" for i in range(1, 10)] + steps[:conv_step]
                + [f"c-backward{i}" for i in range(1, 10)] + steps[conv_step:] + ["gradients"])
    assert names == expected
    # each forward frame fills its output cell with graphdl's number, in scan order
    sections = re.findall(r'<section class="frame" data-name="c-forward\d".*?</section>', page,
                          re.DOTALL)
    (y_val,) = gd.evaluate([y], {n: values[n] for n in ("img", "k")})
    for section, v in zip(sections, y_val.ravel()):
        current = re.findall(r'<td class="w-current"[^>]*>([^<]*)</td>', section)
        assert current == [f"{v:g}".replace("-", "−")]
    # a gradient on the drawing comes with its step's frame, wherever the windows put it
    if shutil.which("dot"):
        at = {int(a) for a in re.findall(r'class="grad" data-frame="(\d+)"', page)}
        assert at <= {names.index(s) for s in steps} | {len(names) - 1}
    fragment = ex.windows[0]._repr_html_()
    assert re.findall(r'data-name="([^"]*)"', fragment) == (
        [f"c-forward{i}" for i in range(1, 10)] + [f"c-backward{i}" for i in range(1, 10)])
    assert "<script>" in fragment and "gradient computes it ✓" in fragment


@pytest.mark.skipif(not shutil.which("dot"), reason="Graphviz's dot is not installed")
def test_the_strip_draws_every_frame_with_its_numbers():
    _, m, values = lecture_pool("max_pool2d")
    (ws,) = gd.explain(gd.sum(m).named("s"), values).windows
    svg = ws.strip().svg()
    assert svg.count("window at m[") == 4 and svg.count("gradient of m[") == 4
    assert "m[0,0,1,1] = max(7, 9, 6, 5) = 9" in svg
    assert ws.strip(which="forward").svg().count("gradient of") == 0
