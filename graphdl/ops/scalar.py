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


def _operator(name, doc, numpy, cuda, text, latex, arity=2):
    """A logical or bitwise operator as a SymPy function: spelled per target, its derivative 0
    (a step, where it is defined at all: these ops pass no gradient)."""
    return type(name, (sympy.Function,), {
        "__doc__": doc, "__module__": __name__, "nargs": arity,
        "spellings": {"numpy": numpy, "cuda": cuda, "text": text, "latex": latex},
        "fdiff": lambda self, argindex=1: sympy.S.Zero,
    })


# Logical operators of truth values: a number is true where nonzero (NaN included).
LogicalAnd = _operator("LogicalAnd", "a and b, of truth values", "numpy.logical_and({0}, {1})",
                       "(({0}) != 0 && ({1}) != 0)", "({0} ∧ {1})",
                       r"\left({0} \wedge {1}\right)")
LogicalOr = _operator("LogicalOr", "a or b, of truth values", "numpy.logical_or({0}, {1})",
                      "(({0}) != 0 || ({1}) != 0)", "({0} ∨ {1})", r"\left({0} \vee {1}\right)")
LogicalXor = _operator("LogicalXor", "a xor b, of truth values", "numpy.logical_xor({0}, {1})",
                       "((({0}) != 0) != (({1}) != 0))", "({0} ⊕ {1})",
                       r"\left({0} \oplus {1}\right)")
LogicalNot = _operator("LogicalNot", "not a, of a truth value", "numpy.logical_not({0})",
                       "(({0}) == 0)", "¬{0}", r"\neg {0}", arity=1)
# Bitwise operators of integers and bools (two's complement); shifts of integers, PyTorch's
# and NumPy's at counts out of range (gd_shl, gd_shr: the CUDA printer's device functions).
BitwiseAnd = _operator("BitwiseAnd", "a & b, bit by bit", "numpy.bitwise_and({0}, {1})",
                       "(({0}) & ({1}))", "({0} & {1})", r"\left({0} \mathbin{{\&}} {1}\right)")
BitwiseOr = _operator("BitwiseOr", "a | b, bit by bit", "numpy.bitwise_or({0}, {1})",
                      "(({0}) | ({1}))", "({0} | {1})", r"\left({0} \mathbin{{|}} {1}\right)")
BitwiseXor = _operator("BitwiseXor", "a ^ b, bit by bit", "numpy.bitwise_xor({0}, {1})",
                       "(({0}) ^ ({1}))", "({0} ^ {1})",
                       r"\left({0} \mathbin{{\hat{{}}}} {1}\right)")
BitwiseNot = _operator("BitwiseNot", "~a, bit by bit (not, of a bool)", "numpy.invert({0})",
                       "gd_invert({0})", "~{0}", r"\mathord{{\sim}} {0}", arity=1)
LeftShift = _operator("LeftShift", "a << b; 0 where b < 0 or b ≥ a's width in bits",
                      "numpy.left_shift({0}, {1})", "gd_shl<{dtype:ctype}>({0}, {1})",
                      "({0} << {1})", r"\left({0} \ll {1}\right)")
RightShift = _operator("RightShift", "a >> b, arithmetic; a's sign where b < 0 or b ≥ its width",
                       "numpy.right_shift({0}, {1})", "gd_shr<{dtype:ctype}>({0}, {1})",
                       "({0} >> {1})", r"\left({0} \gg {1}\right)")
