"""SymPy scalar functions for primitives SymPy lacks or writes unstably.

Each carries its mathematical definition (`rewrite(sympy.exp)`, used for `sympy.diff` checks and
closed forms), its derivative (`fdiff`) and its `spellings` (`graphdl.spellings`): in generated
code the numerically stable primitive (the runtime's `_sigmoid`, the CUDA printer's device
`gd_sigmoid`), in the narration the lecture's name. `StopGradient` is found in closed forms only
(`gd.symbolic`), as are the constants `exact` gives.
"""

from fractions import Fraction
from typing import ClassVar

import sympy


class Sigmoid(sympy.Function):
    """σ(x) = 1 / (1 + e^-x)."""

    spellings: ClassVar = {
        "numpy": "_sigmoid({0})", "cuda": "gd_sigmoid({0})",  # from e^-|x|: no overflow
        "text": "σ({0})", "latex": r"\sigma\left({0}\right)",
    }

    def fdiff(self, argindex=1):
        s = Sigmoid(self.args[0])
        return s * (1 - s)

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return 1 / (1 + sympy.exp(-x))


class Softplus(sympy.Function):
    """softplus(x) = log(1 + e^x)."""

    spellings: ClassVar = {"numpy": "_softplus({0})", "cuda": "gd_softplus({0})"}

    def fdiff(self, argindex=1):
        return Sigmoid(self.args[0])

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return sympy.log(1 + sympy.exp(x))


class Relu(sympy.Function):
    """max(x, 0); its derivative at 0 is taken as 0, as in PyTorch."""

    spellings: ClassVar = {
        "numpy": "numpy.maximum({0}, 0)", "cuda": "gd_max({0}, ({dtype:ctype})0)",
        "text": "relu({0})", "latex": r"\operatorname{{relu}}\left({0}\right)",
    }

    def fdiff(self, argindex=1):
        return sympy.Heaviside(self.args[0], 0)

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return sympy.Max(x, 0)


class Where(sympy.Function):
    """where(c, a, b): a where c holds, else b."""

    spellings: ClassVar = {
        "numpy": "_where({0}, {1}, {2})",  # the runtime's numpy.where, faster
        "cuda": "(({0}) ? ({1}) : ({2}))",
        "text": "where({0}, {1}, {2})",
        "latex": r"\operatorname{{where}}\left({0}, {1}, {2}\right)",
    }

    @classmethod
    def eval(cls, c, a, b):
        if c in (sympy.true, sympy.false):  # a known condition: the branch it picks
            return a if c is sympy.true else b
        return None

    def fdiff(self, argindex=1):
        c, _, _ = self.args
        return {1: sympy.S.Zero, 2: Where(c, 1, 0), 3: Where(c, 0, 1)}[argindex]

    def _eval_derivative(self, s):
        # The chain rule over every argument would differentiate the condition, a relation
        # SymPy cannot differentiate; it is piecewise constant, so only the branches count.
        c, a, b = self.args
        return Where(c, a.diff(s), b.diff(s))


class Cast(sympy.Function):
    """cast(x, dtype): x converted to the dtype named by the second (symbol) argument."""

    spellings: ClassVar = {"numpy": "numpy.asarray({0}, dtype=numpy.{1})",
                           "cuda": "(({1:ctype})({0}))"}

    def fdiff(self, argindex=1):
        return sympy.S.One


class StopGradient(sympy.Function):
    """The identity whose derivative is zero."""

    def fdiff(self, argindex=1):
        return sympy.S.Zero


def exact(value):
    """A constant as SymPy holds it in closed forms: integers and simple fractions (½) exactly,
    other values as floats."""
    v = float(value)
    if v.is_integer():
        return sympy.Integer(int(v))
    f = Fraction(v).limit_denominator(64)
    return sympy.Rational(f.numerator, f.denominator) if float(f) == v else sympy.Float(v)
