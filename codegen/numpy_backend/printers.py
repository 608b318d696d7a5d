"""SymPy's NumPy printer, adjusted so that each elementwise op prints as graphdl computes it.

Generated code stays identical, operation for operation, to each op's NumPy reference (`1/x`,
not `x**(-1.0)`), and every float prints exactly (repr round-trips the double). The stable
primitives' spellings, and binary functions keeping their argument order, are the "numpy"
spellings of `graphdl.spellings`. A user op's reference implementation (`graphdl.extend`) runs
the text this printer gives, so compiled code and reference compute the same operations.
"""

import ast

from sympy.printing.numpy import NumPyPrinter

from graphdl.codegen.numpy_backend.elementwise import PRINTED_HELPERS, namespace
from graphdl.spellings import SpelledPrinter

__all__ = ["PRINTED_HELPERS", "GraphdlNumPyPrinter", "namespace", "numpy_only"]


class GraphdlNumPyPrinter(SpelledPrinter, NumPyPrinter):
    target = "numpy"

    def _print_Float(self, expr):
        return repr(float(expr))  # the shortest text that reads back as the same double

    def _print_Pow(self, expr, rational=False):
        if expr.exp == -1:
            return "1/" + self.parenthesize(expr.base, 50)  # 50: above Mul, as Python needs
        return super()._print_Pow(expr, rational)


def numpy_only(text, names):
    """Whether printed `text` reads only `names`, `numpy.*` and the printer's helpers (SymPy's
    printer falls back to `math.*` or bare names for functions NumPy lacks)."""
    allowed = {"numpy", *names, *PRINTED_HELPERS}
    tree = ast.parse(text, mode="eval")
    return all(node.id in allowed for node in ast.walk(tree) if isinstance(node, ast.Name))
