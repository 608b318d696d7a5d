"""gd.descent_plot: its paths are torch.optim's steps on the same loss, its arrows the gradient
at their points, its contours lie on their levels (marching squares), and it refuses what is not
a loss of two scalars."""

from __future__ import annotations

import functools
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch

import graphdl as gd
from graphdl.views.descent_render import contour

OPTIMIZERS = {  # label -> (gd.optim / torch.optim name, options of both)
    "sgd": ("sgd", {"lr": 0.02}),
    "momentum": ("sgd", {"lr": 0.01, "momentum": 0.9}),
    "nesterov": ("sgd", {"lr": 0.01, "momentum": 0.8, "nesterov": True}),
    "adam": ("adam", {"lr": 0.1, "betas": (0.8, 0.99)}),
}
START = (-1.2, 1.4)


def banana(x, y):
    """A mild Rosenbrock valley: written once, for graphdl nodes and torch tensors alike."""
    return (1 - x) ** 2 + 5 * (y - x * x) ** 2


def scalars(dtype="float64"):
    return gd.input("x", (), dtype), gd.input("y", (), dtype)


def bowl_plot(**options):
    x, y = scalars()
    loss = 0.5 * (x * x + 10 * y * y)
    return gd.descent_plot(loss, [x, y], steps=15, start=(-2.0, 1.0), **options), (x, y, loss)


def torch_path(kind, options, steps, loss_of=banana):
    point = torch.tensor(START, dtype=torch.float64, requires_grad=True)
    opt = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[kind]([point], **options)
    path = [point.detach().clone()]
    for _ in range(steps):
        opt.zero_grad()
        loss_of(point[0], point[1]).backward()
        opt.step()
        path.append(point.detach().clone())
    return torch.stack(path).numpy()


def test_each_path_is_torch_optims_steps_on_the_same_loss():
    x, y = scalars()
    optimizers = {label: functools.partial(getattr(gd.optim, kind), **options)
                  for label, (kind, options) in OPTIMIZERS.items()}
    plot = gd.descent_plot(banana(x, y), [x, y], optimizers, steps=25, start=START)
    assert list(plot.paths) == list(OPTIMIZERS)
    for label, (kind, options) in OPTIMIZERS.items():
        want = torch_path(kind, options, 25)
        np.testing.assert_allclose(plot.paths[label], want, rtol=1e-12, atol=1e-12,
                                   err_msg=label)
        np.testing.assert_allclose(plot.losses[label], banana(want[:, 0], want[:, 1]),
                                   rtol=1e-12, err_msg=label)


def test_an_optimizer_built_by_hand_and_other_inputs_fed_by_values():
    """Least squares of a line w·t + b through three points: the data is an input, fed as
    values; the optimizer is given built (with its own state names)."""
    w, b = scalars()
    t, target = gd.input("t", (3,), "float64"), gd.input("target", (3,), "float64")
    loss = gd.mean((w * t + b - target) ** 2)
    data = {"t": np.array([0.0, 1.0, 2.0]), "target": np.array([1.0, 2.5, 2.0])}
    opt = gd.optim.sgd(loss, [w, b], lr=0.1, momentum=0.5)
    plot = gd.descent_plot(loss, [w, b], {"by hand": opt}, steps=10, start=START, values=data)

    def torch_loss(wv, bv):
        return ((wv * torch.tensor(data["t"]) + bv - torch.tensor(data["target"])) ** 2).mean()

    want = torch_path("sgd", {"lr": 0.1, "momentum": 0.5}, 10, torch_loss)
    np.testing.assert_allclose(plot.paths["by hand"], want, rtol=1e-12, atol=1e-12)


def test_float32_parameters_step_in_float32():
    x, y = scalars("float32")
    plot = gd.descent_plot(banana(x, y), [x, y], {"sgd": functools.partial(gd.optim.sgd,
                                                                            lr=0.02)},
                           steps=10, start=START)
    point = torch.tensor(START, dtype=torch.float32, requires_grad=True)
    opt = torch.optim.SGD([point], lr=0.02)
    for _ in range(10):
        opt.zero_grad()
        banana(point[0], point[1]).backward()
        opt.step()
    np.testing.assert_allclose(plot.paths["sgd"][-1], point.detach().numpy(), rtol=2e-6)


def test_arrows_are_the_gradient_at_their_points_and_the_grid_the_loss():
    plot, (x, y, loss) = bowl_plot(arrows=7, grid=21)
    assert plot.arrow_points.shape == (49, 2)
    xs, ys = np.unique(plot.arrow_points[:, 0]), np.unique(plot.arrow_points[:, 1])
    np.testing.assert_allclose(xs, np.linspace(plot.xs[0], plot.xs[-1], 7))
    np.testing.assert_allclose(ys, np.linspace(plot.ys[0], plot.ys[-1], 7))
    gradient = gd.grad(loss, [x, y])
    for (a, b), got in zip(plot.arrow_points, plot.arrow_gradients, strict=True):
        want = [float(g) for g in gd.evaluate(gradient, x=a, y=b)]  # the interpreter
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)
    grid_x, grid_y = np.meshgrid(plot.xs, plot.ys)
    np.testing.assert_allclose(plot.surface, 0.5 * (grid_x**2 + 10 * grid_y**2), rtol=1e-13)


def test_contour_levels_lie_inside_the_values_and_contours_on_their_levels():
    plot, _ = bowl_plot(grid=61, levels=8)
    lowest, highest = plot.surface.min(), plot.surface.max()
    assert len(plot.levels) == 8 and lowest < plot.levels.min() and plot.levels.max() < highest
    step = max(np.diff(plot.xs).max(), np.diff(plot.ys).max())
    tolerance = 10 * step**2 / 8  # linear interpolation along an edge of curvature <= 10
    for level, segments in zip(plot.levels, plot.contours, strict=True):
        ends = segments.reshape(-1, 2)
        assert len(ends), level
        err = np.abs(0.5 * (ends[:, 0] ** 2 + 10 * ends[:, 1] ** 2) - level)
        assert err.max() <= tolerance, (level, err.max(), tolerance)
        on_grid_line = (np.isclose(ends[:, :1], plot.xs).any(axis=1)
                        | np.isclose(ends[:, 1:], plot.ys).any(axis=1))
        assert on_grid_line.all()  # every end on a cell edge


@pytest.mark.parametrize("spacing", ["linear", "log"])
def test_a_flat_loss_has_one_level_its_value(spacing):
    x, y = scalars()
    plot = gd.descent_plot(x * 0.0 + y * 0.0 + 1.0, [x, y], steps=3, start=(0.5, 0.5),
                           xlim=(0, 1), ylim=(0, 1), spacing=spacing)
    np.testing.assert_array_equal(plot.levels, [1.0])
    assert "<svg" in plot.svg()


def test_a_closed_contour_chains_into_a_loop():
    """A level whose ellipse lies inside the box: every end is shared by exactly two segments."""
    xs = ys = np.linspace(-2.0, 2.0, 41)
    grid_x, grid_y = np.meshgrid(xs, ys)
    segments = contour(xs, ys, grid_x**2 + 3 * grid_y**2, 1.7)
    _, counts = np.unique(segments.reshape(-1, 2).round(12), axis=0, return_counts=True)
    assert len(segments) > 20 and (counts == 2).all()


@pytest.mark.parametrize(("level", "want"), [
    # the centre (0.5) above the level, as the corners a, c: the lines cut off b and d
    (0.4, [[(0.6, 0.0), (1.0, 0.4)], [(0.4, 1.0), (0.0, 0.6)]]),
    # the centre below: the lines cut off a and c
    (0.6, [[(0.0, 0.4), (0.4, 0.0)], [(1.0, 0.6), (0.6, 1.0)]]),
])
def test_a_saddle_cell_is_split_as_its_centre_says(level, want):
    z = np.array([[1.0, 0.0], [0.0, 1.0]])  # z[j, i]: a = (0, 0) and c = (1, 1) high
    got = contour(np.array([0.0, 1.0]), np.array([0.0, 1.0]), z, level)
    np.testing.assert_allclose(got, want, atol=1e-15)


def test_the_default_box_holds_every_path_at_one_scale():
    plot, _ = bowl_plot()
    for path in plot.paths.values():
        assert (plot.xs[0] < path[:, 0]).all() and (path[:, 0] < plot.xs[-1]).all()
        assert (plot.ys[0] < path[:, 1]).all() and (path[:, 1] < plot.ys[-1]).all()
    width, height = plot.xs[-1] - plot.xs[0], plot.ys[-1] - plot.ys[0]
    assert max(width, height) / min(width, height) <= 2.0 + 1e-12
    assert list(plot.paths) == ["sgd", "momentum", "adam"]  # the defaults


def test_the_svg_shows_each_path_and_names_it_in_the_legend():
    plot, _ = bowl_plot(xlim=(-3, 3), ylim=(-2, 2))
    assert (plot.xs[0], plot.xs[-1], plot.ys[0], plot.ys[-1]) == (-3, 3, -2, 2)
    svg = plot.svg()
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f".//{ns}polyline")) == len(plot.paths)
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert {"sgd", "momentum", "adam", "x", "y"} <= set(texts)
    assert len(root.findall(f".//{ns}path")) == len(plot.levels)
    assert repr(plot) == "<DescentPlot of 'x', 'y': 15 steps of sgd, momentum, adam>"
    html = plot._repr_html_()
    assert html.startswith('<div class="gd-descent"><svg') and html.endswith("</svg></div>")


def test_save_writes_svg_and_png(tmp_path):
    plot, _ = bowl_plot(grid=21, arrows=0)
    assert plot.arrow_points.shape == plot.arrow_gradients.shape == (0, 2)
    plot.save(tmp_path / "d.svg")
    assert (tmp_path / "d.svg").read_text(encoding="utf-8") == plot.svg()
    with pytest.raises(gd.GraphError, match=r"\.svg or \.png"):
        plot.save(tmp_path / "d.pdf")
    pytest.importorskip("matplotlib", reason="the PNG needs matplotlib")
    plot.save(tmp_path / "d.png")
    assert (tmp_path / "d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_refuses_parameters_that_are_not_two_scalars():
    x, y = scalars()
    v, n = gd.input("v", (2,), "float64"), gd.input("n", (), "int64")
    loss = banana(x, y) + gd.sum(v * v) + gd.cast(n, "float64")
    cases = [[x], [x, y, v], [x, v], [x, n], [x, x * 2], [x, x], x]
    for params in cases:
        with pytest.raises(gd.GraphError, match="params must be two") as caught:
            gd.descent_plot(loss, params, values={"v": np.ones(2), "n": 1})
        assert "'x'" in str(caught.value)
    with pytest.raises(gd.GraphError, match=r"of shape \(2,\) float64"):
        gd.descent_plot(loss, [x, v])


def test_refuses_a_loss_that_is_not_a_float_scalar_or_needs_an_input_not_given():
    x, y = scalars()
    with pytest.raises(gd.GraphError, match="loss must be a floating-point scalar"):
        gd.descent_plot(gd.stack([x, y]), [x, y])
    data = gd.input("data", (), "float64")
    with pytest.raises(gd.GraphError, match=r"input 'data'.*values=\{'data'"):
        gd.descent_plot(banana(x, y) * data, [x, y])
    with pytest.raises(gd.GraphError, match="optimizer 'odd' must be a gd.optim optimizer"):
        gd.descent_plot(banana(x, y), [x, y], {"odd": lambda loss, params: None})
    for bad in ({"start": (1.0,)}, {"steps": -1}, {"xlim": (1, 0)}, {"spacing": "cubic"},
                {"levels": 0}):
        with pytest.raises(gd.GraphError, match="descent_plot"):
            gd.descent_plot(banana(x, y), [x, y], **bad)


def test_a_diverging_path_stops_at_its_first_overflow_and_says_so():
    x, y = scalars()
    fast = {"too fast": functools.partial(gd.optim.sgd, lr=0.1)}
    plot = gd.descent_plot(banana(x, y), [x, y], fast, steps=30, start=START)
    path = plot.paths["too fast"]
    finite = np.isfinite(path).all(axis=1)
    stop = int(np.argmin(finite))
    assert 1 < stop and not finite[stop:].any()  # NaN from the first overflow on
    with np.errstate(all="ignore"):
        want = torch_path("sgd", {"lr": 0.1}, 30)
    np.testing.assert_allclose(path[:stop], want[:stop], rtol=1e-12)
    with np.errstate(all="ignore"):
        assert not np.isfinite(banana(*want[stop]))  # the loss, or the point, overflows
    assert not np.isfinite(plot.losses["too fast"][stop:]).any()
    assert f"diverged at step {stop}" in plot.svg()


def test_without_matplotlib_a_png_is_refused_and_the_svg_still_written(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m.split(".")[0] == "matplotlib"] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    plot, _ = bowl_plot(grid=11)
    with pytest.raises(ImportError, match=r"needs matplotlib \(pip install matplotlib\)"):
        plot.save(tmp_path / "d.png")
    assert plot.save(tmp_path / "d.svg") and (tmp_path / "d.svg").stat().st_size > 0
