"""SymPy expressions as the narration prints them: a compact line of text (x·y, σ(x)·(1 - σ(x))),
LaTeX and MathML, in the names the narration uses (σ, relu, where; a step function as `1 if x > 0
else 0`); and numbers plugged into them without SymPy evaluating the result."""

from __future__ import annotations

import re

import sympy
from sympy.printing.latex import LatexPrinter
from sympy.printing.mathml import MathMLPresentationPrinter
from sympy.printing.str import StrPrinter

from graphdl.views.numbers import fmt

_SUP = {"2": "²", "3": "³"}


def _step_condition(e):
    """`>` or `≥` for a step function H(x, h0) that is 0 or 1 at 0 (relu's derivative is
    H(x, 0)), None for another value at 0."""
    at_zero = e.args[1] if len(e.args) > 1 else None
    return {sympy.S.Zero: ">", sympy.S.One: "≥"}.get(at_zero)


class _TextPrinter(StrPrinter):
    """SymPy's text form, in the names the narration uses: σ, relu, where, ==, ≠, and a step
    function as `1 if x > 0 else 0`."""

    def _print_Sigmoid(self, e):
        return f"σ({self._print(e.args[0])})"

    def _print_Relu(self, e):
        return f"relu({self._print(e.args[0])})"

    def _print_Where(self, e):
        return f"where({', '.join(self._print(a) for a in e.args)})"

    def _print_Heaviside(self, e):
        cond = _step_condition(e)
        if cond is None:
            return super()._print_Heaviside(e)
        return f"(1 if {self._print(e.args[0])} {cond} 0 else 0)"

    def _print_Equality(self, e):
        return f"{self._print(e.lhs)} == {self._print(e.rhs)}"

    def _print_Unequality(self, e):
        return f"{self._print(e.lhs)} ≠ {self._print(e.rhs)}"


class _LatexPrinter(LatexPrinter):
    def _print_Sigmoid(self, e, exp=None):
        return self._named(r"\sigma", e, exp)

    def _print_Relu(self, e, exp=None):
        return self._named(r"\operatorname{relu}", e, exp)

    def _print_Where(self, e, exp=None):
        return self._named(r"\operatorname{where}", e, exp)

    def _named(self, name, e, exp):
        args = ", ".join(self._print(a) for a in e.args)
        return rf"{name}\left({args}\right)" + (f"^{{{exp}}}" if exp else "")

    def _print_Heaviside(self, e, exp=None):
        cond = _step_condition(e)
        if cond is None:
            return super()._print_Heaviside(e, exp)
        rel = {">": ">", "≥": r"\geq"}[cond]
        return (rf"\left(1 \text{{ if }} {self._print(e.args[0])} {rel} 0 \text{{ else }} "
                r"0\right)")


class _MathMLPrinter(MathMLPresentationPrinter):
    def _print_Heaviside(self, e):
        cond = _step_condition(e)
        if cond is None:
            return self._print_Function(e)
        row = self.dom.createElement("mrow")
        parts = [("mo", "("), ("mn", "1"), ("mtext", "\u00a0if\u00a0"), e.args[0], ("mo", cond),
                 ("mn", "0"), ("mtext", "\u00a0else\u00a0"), ("mn", "0"), ("mo", ")")]
        for part in parts:
            if isinstance(part, tuple):
                element = self.dom.createElement(part[0])
                element.appendChild(self.dom.createTextNode(part[1]))
            else:
                element = self._print(part)
            row.appendChild(element)
        return row


def as_text(e):
    """A compact one-line form: x·y, -1/x², σ(x)·(1 - σ(x))."""
    s = _TextPrinter({"order": "none"}).doprint(e)
    s = re.sub(r"\(\((-[0-9.e+-]+)\)\)", r"(\1)", s)  # exp((-1)) -> exp(-1)
    s = s.replace("**", "^").replace("*", "·")
    for k, v in _SUP.items():
        s = s.replace(f"^{k}", v)
    return s


def as_latex(e):
    return _LatexPrinter().doprint(e)


def as_mathml(e):
    return "<math>" + _MathMLPrinter().doprint(e) + "</math>"


def tex_name(handle):
    """A handle in LaTeX: one letter with digits as a subscripted symbol (w0 -> w_{0}, as SymPy
    prints the inputs), anything longer upright (sigmoid, In_h1 -> \\mathrm{In\\_h1})."""
    m = re.fullmatch(r"([A-Za-z])(\d*)", handle)
    if m:
        return m[1] + (f"_{{{m[2]}}}" if m[2] else "")
    return r"\mathrm{" + re.sub(r"([_#$%&{}])", r"\\\1", handle) + "}"


def repeats(text, number):
    """Whether `text` only repeats `number` ("(-2)" for -2): nothing to show."""
    return text in (number, f"({number})")


def plug(expr, mapping):
    """`expr` with symbols replaced, keeping the printed order of the operands."""
    with sympy.evaluate(False):
        return expr.xreplace(mapping)


def numsym(value, digits):
    """A symbol printed as the number: plugging numbers in without SymPy evaluating them."""
    s = fmt(value, digits, significant=True)
    return sympy.Symbol(f"({s})" if s.startswith("-") else s)
