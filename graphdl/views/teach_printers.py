"""SymPy expressions as the narration prints them: a compact line of text (x·y, σ(x)·(1 - σ(x))),
LaTeX and MathML, in the names the narration uses (σ, relu, where; a step function as `1 if x > 0
else 0`: the "text", "latex" and "mathml" spellings of `graphdl.spellings`); and numbers plugged
into them without SymPy evaluating the result."""

from __future__ import annotations

import re

import sympy
from sympy.printing.latex import LatexPrinter
from sympy.printing.mathml import MathMLPresentationPrinter
from sympy.printing.str import StrPrinter

from graphdl.spellings import SpelledPrinter
from graphdl.views.numbers import fmt

_SUP = {"2": "²", "3": "³"}
_TOKENS = re.compile(r"\{(\d+)\}|(\d+)|([A-Za-z]+)|(\S)")  # an argument, number, word, symbol


class _TextPrinter(SpelledPrinter, StrPrinter):
    target = "text"


class _LatexPrinter(SpelledPrinter, LatexPrinter):
    target = "latex"

    def _spell(self, spelled, expr, exp=None):  # exp: the function raised to a power, σ(x)²
        return super()._spell(spelled, expr) + (f"^{{{exp}}}" if exp else "")


class _MathMLPrinter(SpelledPrinter, MathMLPresentationPrinter):
    target = "mathml"

    def doprint(self, expr):  # SymPy's prints the top level with Printer._print, past the table
        return self._print(expr).toxml().encode("ascii", "xmlcharrefreplace").decode()

    def _print_Derivative(self, e):
        """∂/∂x (SymPy's mixes ⅆ and ∂) applied to the operand, parenthesized unless it reads
        as one thing: a symbol, a number, a function applied, a power."""
        frac = self.dom.createElement("mfrac")
        frac.appendChild(self._partial())
        frac.appendChild(self._partial(*e.variables))
        row = self.dom.createElement("mrow")
        row.appendChild(frac)
        f = e.expr
        whole = f.is_Atom or isinstance(f, sympy.Function) or f.is_Pow and f.exp.is_positive
        row.appendChild(self._print(f) if whole else self._parenthesized(f))
        return row

    def _partial(self, *symbols):
        row = self.dom.createElement("mrow")
        for sym in (None, *symbols):
            if sym is None:
                sym = self.dom.createElement("mo")
                sym.appendChild(self.dom.createTextNode("\u2202"))
            else:
                sym = self._print(sym)
            row.appendChild(sym)
        return row

    def _parenthesized(self, expr):
        row = self.dom.createElement("mrow")
        for part in (self._l_paren(), self._print(expr), self._r_paren()):
            row.appendChild(part)
        return row

    def _spell(self, spelled, expr):
        """A row of the spelling's tokens: each argument printed, a number as <mn>, a word as
        spaced <mtext>, any other character as <mo>."""
        row = self.dom.createElement("mrow")
        for arg, number, word, symbol in _TOKENS.findall(spelled):
            if arg:
                row.appendChild(self._print(expr.args[int(arg)]))
                continue
            tag, text = (("mn", number) if number else ("mtext", f"\u00a0{word}\u00a0") if word
                         else ("mo", symbol))
            element = self.dom.createElement(tag)
            element.appendChild(self.dom.createTextNode(text))
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


def as_mathml(e, display=False):
    """`e` as MathML; `display`: its fractions full size as in a displayed formula (an inline
    formula's shrink to a script size beside the text)."""
    tag = '<math displaystyle="true">' if display else "<math>"
    return tag + _MathMLPrinter().doprint(e) + "</math>"


def rule_mathml(expr, var, d):
    """The local rule ∂/∂var (expr) = d, as a displayed formula."""
    return as_mathml(sympy.Eq(sympy.Derivative(expr, var), d, evaluate=False), display=True)


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
