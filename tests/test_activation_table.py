"""gd.activation_table: the lecture's table of activation functions, its values computed by
graphdl and checked against PyTorch, its SymPy forms, its SVG and PNG."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest
import sympy
import torch

import graphdl as gd
from graphdl.views.activation_draw import DERIVATIVE, FUNCTION
from graphdl.views.activation_table import X

TORCH = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu,
         "gelu": torch.nn.functional.gelu, "softplus": torch.nn.functional.softplus}


def torch_values(name, x):
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = TORCH[name](t)
    (dy,) = torch.autograd.grad(y.sum(), t)
    return y.detach().numpy(), dy.numpy()


def bent(x):  # a user op: smooth, not among graphdl's
    return (sympy.sqrt(x ** 2 + 1) - 1) / 2 + x


def test_defaults_are_the_lectures_and_the_values_are_pytorchs():
    table = gd.activation_table()
    assert [r.name for r in table.rows] == ["sigmoid", "tanh", "relu"]
    for row in table.rows:
        assert row.x[0] == -4 and row.x[-1] == 4 and 0 in row.x
        y, dy = torch_values(row.name, row.x)
        np.testing.assert_allclose(row.y, y, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(row.dy, dy, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("op", ["gelu", gd.softplus, gd.relu])
def test_named_ops_by_name_function_or_op(op):
    (row,) = gd.activation_table(op, range=(-3, 5)).rows
    assert row.x[0] == -3 and row.x[-1] == 5
    y, dy = torch_values(row.name, row.x)
    np.testing.assert_allclose(row.y, y, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(row.dy, dy, rtol=1e-9, atol=1e-15)


def test_simplified_forms_are_sympys_derivative():
    rows = {r.name: r for r in gd.activation_table("sigmoid", "tanh", "softplus", "relu").rows}
    for name in ("sigmoid", "tanh", "softplus"):
        r = rows[name]
        assert sympy.simplify((r.simplified - r.derivative).rewrite(sympy.exp)) == 0
    relu = rows["relu"]  # the step: SymPy's derivative everywhere but at 0, graphdl's there
    for v in (sympy.Rational(-7, 2), sympy.Rational(-1, 3), sympy.Rational(1, 5), 3):
        assert relu.simplified.subs(X, v) == relu.derivative.subs(X, v)
    _, dy0 = torch_values("relu", np.array([0.0]))
    assert relu.at_zero == dy0[0] == float(relu.simplified.subs(X, 0))
    assert f"graphdl gives {dy0[0]:g}" in " ".join(relu.derivative_lines())
    assert "simplified: σ′ = σ(1 − σ)" in rows["sigmoid"].derivative_lines()
    assert "simplified: tanh′ = 1 − tanh²" in rows["tanh"].derivative_lines()


def test_a_user_op_and_its_derivative_from_sympy():
    (row,) = gd.activation_table(gd.elementwise_op("bent", bent)).rows
    assert row.name == "bent"
    assert sympy.simplify(row.formula - bent(X)) == 0
    np.testing.assert_allclose(row.y, (np.sqrt(row.x ** 2 + 1) - 1) / 2 + row.x, rtol=1e-12)
    np.testing.assert_allclose(row.dy, 1 + row.x / (2 * np.sqrt(row.x ** 2 + 1)), rtol=1e-12)
    assert sympy.simplify(row.derivative - sympy.diff(bent(X), X)) == 0
    assert row.simplified is None and row.at_zero is None  # smooth, no lecture's form


def test_a_lecture_form_is_kept_only_where_it_is_the_ops_derivative():
    (row,) = gd.activation_table(gd.elementwise_op("tanh", lambda x: x ** 3)).rows
    assert row.simplified is None and not any("simplified" in s for s in row.derivative_lines())


@pytest.mark.parametrize("op, why", [
    (gd.softmax, "softmax is not elementwise"),
    (gd.cumsum, "cumsum is not elementwise"),
    (gd.sum, "sum is not elementwise"),
    (gd.maximum, "maximum is not an elementwise function of one argument"),
    ("no_such_op", "graphdl has no op named 'no_such_op'"),
])
def test_not_elementwise_is_refused_naming_the_op(op, why):
    with pytest.raises(gd.GraphError, match=why):
        gd.activation_table(op)


def curves(svg):
    """The plotted polylines of an SVG table, in order, as (n, 2) arrays, with their colors."""
    found = re.findall(r'<polyline points="([^"]+)" fill="none" stroke="([^"]+)" '
                       r'stroke-width="2.2"/>', svg)
    return [(np.array([[float(v) for v in p.split(",")] for p in pts.split()]), color)
            for pts, color in found]


def test_the_svg_draws_the_computed_values():
    table = gd.activation_table("sigmoid", "tanh", "relu", "gelu")
    svg = table.svg()
    assert svg.startswith("<svg") and table._repr_html_() == svg
    drawn = curves(svg)
    assert [c for _, c in drawn] == [FUNCTION, DERIVATIVE] * 4
    for (f_px, _), (df_px, _), row in zip(drawn[::2], drawn[1::2], table.rows):
        for px, values in ((f_px, row.y), (df_px, row.dy)):
            assert len(px) == len(row.x)
            for pixels, data in ((px[:, 0], row.x), (px[:, 1], values)):
                # pixels an affine image of the data: the curve is these values
                fit = np.polyval(np.polyfit(data, pixels, 1), data)
                assert np.abs(fit - pixels).max() < 0.01
            assert np.all(np.diff(px[:, 1]) * np.diff(values) <= 0)  # y grows upwards
    assert "sigmoid(x) = 1/(1 + exp(-x))" in svg and "<circle" in svg  # relu′(0): the dot


def test_a_curve_is_broken_where_the_op_is_undefined():
    (row,) = gd.activation_table(gd.log).rows
    (f, _), (df, _) = curves(gd.activation_table(gd.log).svg())
    assert len(f) == len(df) == np.count_nonzero(row.x > 0)  # log: NaN for x < 0, -inf at 0
    assert np.isnan(row.dy[row.x < 0]).all()


def test_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = gd.activation_table("sigmoid", "relu").png(tmp_path / "table.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = (int.from_bytes(data[k:k + 4], "big") for k in (16, 20))
    svg = gd.activation_table("sigmoid", "relu").svg()
    assert f'width="{width}" height="{height}"' in svg  # the same picture


def test_png_without_matplotlib_says_so_and_svg_still_works(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # as if not installed
    table = gd.activation_table("relu")
    with pytest.raises(ImportError, match=r"needs matplotlib.*\.svg\(\) needs nothing"):
        table.png(tmp_path / "table.png")
    assert table.svg().startswith("<svg")
