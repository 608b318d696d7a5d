"""The spelling table (`graphdl.spellings`): every printer spells a construct from it, on every
target the construct lists, and a new function needs one table entry, not a method per printer."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import sympy

from graphdl.codegen.cuda_backend.printer import CudaPrinter
from graphdl.codegen.numpy_backend.printers import GraphdlNumPyPrinter
from graphdl.ops import scalar
from graphdl.spellings import SPELLINGS
from graphdl.views.teach_printers import as_latex, as_mathml, as_text

x, y = sympy.symbols("x y", real=True)
PRINTERS = {
    "numpy": lambda e: GraphdlNumPyPrinter().doprint(e),
    "cuda": lambda e: CudaPrinter(np.dtype("float32"), {x: "v0", y: "v1"}).doprint(e),
    "text": as_text,
    "latex": as_latex,
    "mathml": as_mathml,
}
SAMPLES = {
    sympy.Max: sympy.Max(x, y), sympy.Min: sympy.Min(x, y), sympy.Abs: sympy.Abs(x),
    sympy.Mod: sympy.Mod(x, y),
    sympy.erf: sympy.erf(x), sympy.erfc: sympy.erfc(x),
    sympy.Heaviside: sympy.Heaviside(x, 0),
    sympy.Piecewise: sympy.Piecewise((x, x > 0), (y, True)),
    sympy.Eq: sympy.Eq(x, y), sympy.Ne: sympy.Ne(x, y),
    scalar.Sigmoid: scalar.Sigmoid(x), scalar.Softplus: scalar.Softplus(x),
    scalar.Relu: scalar.Relu(x), scalar.Where: scalar.Where(x > y, x, y),
    scalar.Cast: scalar.Cast(x, sympy.Symbol("float64")),
    **{c: c(x) if c.nargs == {1} else c(x, y) for c in (
        scalar.LogicalAnd, scalar.LogicalOr, scalar.LogicalXor, scalar.LogicalNot,
        scalar.BitwiseAnd, scalar.BitwiseOr, scalar.BitwiseXor, scalar.BitwiseNot,
        scalar.LeftShift, scalar.RightShift)},
}
TABLES = {**SPELLINGS, **{c: c.spellings for c in vars(scalar).values()
                          if isinstance(c, type) and "spellings" in vars(c)}}


def test_every_spelled_construct_has_a_sample():
    assert set(SAMPLES) == set(TABLES)


@pytest.mark.parametrize(("construct", "target"),
                         [(c, t) for c, table in TABLES.items() for t in table])
def test_each_printer_spells_a_construct_from_the_table(construct, target, monkeypatch):
    monkeypatch.setitem(TABLES[construct], target, "spelled")
    want = "<math><mrow><mtext>&#160;spelled&#160;</mtext></mrow></math>"
    assert PRINTERS[target](SAMPLES[construct]) == (want if target == "mathml" else "spelled")


def test_a_new_function_is_one_table_entry():
    class Swish(sympy.Function):
        spellings: ClassVar = {
            "numpy": "_swish({0})", "cuda": "gd_swish({0}, ({dtype:ctype})1)",
            "text": "swish({0})", "latex": r"\operatorname{{swish}}\left({0}\right)",
            "mathml": "swish {0}",
        }

    e = Swish(x + 1) * 2
    assert PRINTERS["numpy"](e) == "2*_swish(x + 1)"
    assert PRINTERS["cuda"](e) == "2.0F*gd_swish(v0 + 1.0F, (float)1)"
    assert PRINTERS["text"](e) == "2·swish(1 + x)"
    assert PRINTERS["latex"](Swish(x) ** 2) == r"\operatorname{swish}\left(x\right)^{2}"
    assert PRINTERS["mathml"](Swish(x)) == (
        "<math><mrow><mtext>&#160;swish&#160;</mtext><mi>x</mi></mrow></math>")


def test_helpers_fold_nest_and_pick_the_step_relation():
    assert (PRINTERS["numpy"](sympy.Max(x, y, sympy.Symbol("z")))
            == "numpy.maximum(numpy.maximum(x, y), z)")
    assert (PRINTERS["cuda"](sympy.Piecewise((x, x > 0), (y, y > 0)))
            == "((v0 > 0.0F) ? (v0) : (((v1 > 0.0F) ? (v1) : (__int_as_float(0x7fc00000)))))")
    assert as_text(sympy.Heaviside(x, 1)) == "(1 if x ≥ 0 else 0)"
    assert as_text(sympy.Heaviside(x)) == "Heaviside(x)"  # H(0) = 1/2: SymPy's own
    assert as_text(scalar.Softplus(x)) == "Softplus(x)"  # a target the construct does not list
