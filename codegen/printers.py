"""SymPy printer subclasses: small overrides so each elementwise op prints as graphdl computes it.

The overrides keep generated code identical, operation for operation, to each op's NumPy
reference (`1/x`, not `x**(-1.0)`), give the stable primitives their stable spelling, and keep
the argument order of binary functions.
"""

from sympy.printing.numpy import NumPyPrinter


class GraphdlNumPyPrinter(NumPyPrinter):
    def _print_Pow(self, expr, rational=False):
        if expr.exp == -1:
            return "1/" + self.parenthesize(expr.base, 50)  # 50: above Mul, as Python needs
        return super()._print_Pow(expr, rational)

    def _binary(self, name, expr):
        a, b = (self._print(x) for x in expr.args)
        return f"numpy.{name}({a}, {b})"

    def _print_Max(self, expr):
        return self._binary("maximum", expr)

    def _print_Min(self, expr):
        return self._binary("minimum", expr)

    def _print_Sigmoid(self, expr):  # a helper of the generated module (numpy_backend.HELPERS)
        return f"_sigmoid({self._print(expr.args[0])})"

    def _print_Softplus(self, expr):
        return f"numpy.logaddexp(0, {self._print(expr.args[0])})"

    def _print_Relu(self, expr):
        return f"numpy.maximum({self._print(expr.args[0])}, 0)"

    def _print_Where(self, expr):
        c, a, b = (self._print(x) for x in expr.args)
        return f"_where({c}, {a}, {b})"  # a helper of the generated module: numpy.where, faster

    def _print_Cast(self, expr):
        return f"numpy.asarray({self._print(expr.args[0])}, dtype=numpy.{expr.args[1].name})"
