"""SymPy printer subclasses: small overrides so each elementwise op prints as graphdl computes it.

The overrides keep generated code identical, operation for operation, to each op's NumPy
reference (`1/x`, not `x**(-1.0)`), print every float exactly (repr round-trips the double),
give the stable primitives their stable spelling, and keep the argument order of binary
functions. A user op's reference implementation (`graphdl.extend`) runs the text this printer
gives, so compiled code and reference compute the same operations.
"""

import ast

import sympy
from sympy.printing.numpy import NumPyPrinter

from graphdl.codegen.numpy_backend.elementwise import PRINTED_HELPERS, namespace

__all__ = ["PRINTED_HELPERS", "GraphdlNumPyPrinter", "namespace", "numpy_only"]


class GraphdlNumPyPrinter(NumPyPrinter):
    def _print_Float(self, expr):
        return repr(float(expr))  # the shortest text that reads back as the same double

    def _print_Pow(self, expr, rational=False):
        if expr.exp == -1:
            return "1/" + self.parenthesize(expr.base, 50)  # 50: above Mul, as Python needs
        return super()._print_Pow(expr, rational)

    def _fold(self, name, expr):
        """numpy.name folded over all arguments, left to right: Max(a, b, c) has three."""
        first, *rest = (self._print(x) for x in expr.args)
        for x in rest:
            first = f"numpy.{name}({first}, {x})"
        return first

    def _print_Max(self, expr):
        return self._fold("maximum", expr)

    def _print_Min(self, expr):
        return self._fold("minimum", expr)

    def _print_Abs(self, expr):
        return f"numpy.abs({self._print(expr.args[0])})"

    def _print_Heaviside(self, expr):  # H(0) is the second argument (SymPy's default: 1/2)
        x, h0 = (self._print(a) for a in expr.args)
        return f"numpy.heaviside({x}, {h0})"

    def _print_Piecewise(self, expr):
        """Nested numpy.where, first condition outermost; NaN where no condition holds."""
        *pairs, (value, cond) = expr.args
        text = (self._print(value) if cond is sympy.true
                else f"numpy.where({self._print(cond)}, {self._print(value)}, numpy.nan)")
        for value, cond in reversed(pairs):
            text = f"numpy.where({self._print(cond)}, {self._print(value)}, {text})"
        return text

    def _print_erf(self, expr):
        return f"_erf({self._print(expr.args[0])})"

    def _print_Sigmoid(self, expr):  # a helper of the generated module (helpers.HELPERS)
        return f"_sigmoid({self._print(expr.args[0])})"

    def _print_Softplus(self, expr):
        return f"_softplus({self._print(expr.args[0])})"

    def _print_Relu(self, expr):
        return f"numpy.maximum({self._print(expr.args[0])}, 0)"

    def _print_Where(self, expr):
        c, a, b = (self._print(x) for x in expr.args)
        return f"_where({c}, {a}, {b})"  # a helper of the generated module: numpy.where, faster

    def _print_Cast(self, expr):
        return f"numpy.asarray({self._print(expr.args[0])}, dtype=numpy.{expr.args[1].name})"


def numpy_only(text, names):
    """Whether printed `text` reads only `names`, `numpy.*` and the printer's helpers (SymPy's
    printer falls back to `math.*` or bare names for functions NumPy lacks)."""
    allowed = {"numpy", *names, *PRINTED_HELPERS}
    tree = ast.parse(text, mode="eval")
    return all(node.id in allowed for node in ast.walk(tree) if isinstance(node, ast.Name))
