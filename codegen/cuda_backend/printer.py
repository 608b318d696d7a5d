"""SymPy's C99 printer, adjusted so that each elementwise op prints as graphdl computes it in
CUDA C: single-precision functions for float32 (`expf`, not `exp`) and literals in the formula's
precision. The "cuda" spellings of `graphdl.spellings` call NumPy's NaN-propagating
maximum/minimum and the stable sigmoid and softplus, the device functions below; where is `?:`."""

from __future__ import annotations

import numpy as np
import sympy
from sympy.codegen.ast import float32, real
from sympy.printing.c import C99CodePrinter, get_math_macros

from graphdl.codegen.cuda_backend.kernels import ctype, special_float
from graphdl.spellings import SpelledPrinter

# Device functions the printed code may call, emitted once at the top of every module. NaN in
# either operand gives NaN, as NumPy's maximum/minimum; σ and softplus from e^-|x|. (A backslash
# ending a line joins it to the next here, so each softplus is one line of C.)
DEVICE_FUNCTIONS = """
template <typename T> __device__ __forceinline__ T gd_max(T a, T b) {
    return (a != a || b != b) ? a + b : (a > b ? a : b);
}
template <typename T> __device__ __forceinline__ T gd_min(T a, T b) {
    return (a != a || b != b) ? a + b : (a < b ? a : b);
}
__device__ __forceinline__ float gd_sigmoid(float a) {
    float e = expf(-fabsf(a));
    return (a >= 0.0f ? 1.0f : e) / (1.0f + e);
}
__device__ __forceinline__ double gd_sigmoid(double a) {
    double e = exp(-fabs(a));
    return (a >= 0.0 ? 1.0 : e) / (1.0 + e);
}
// Python's a mod b, of b's sign (C's fmod and % take a's); an integer by 0 gives 0, NumPy's.
template <typename T> __device__ __forceinline__ T gd_mod(T a, T b) {
    if (b == 0 || (T(-1) < T(0) && b == T(-1))) return 0;  // any a mod -1 is 0; INT_MIN % -1 traps
    T r = a % b;
    return (r != 0 && (r < 0) != (b < 0)) ? T(r + b) : r;
}
template <> __device__ __forceinline__ float gd_mod<float>(float a, float b) {
    float r = fmodf(a, b);
    return (r != 0.0f && (r < 0.0f) != (b < 0.0f)) ? r + b : r;
}
template <> __device__ __forceinline__ double gd_mod<double>(double a, double b) {
    double r = fmod(a, b);
    return (r != 0.0 && (r < 0.0) != (b < 0.0)) ? r + b : r;
}
// |a| in a's own type: C's fabs would compute an integer in double (inexact beyond 2^53).
template <typename T> __device__ __forceinline__ T gd_abs(T a) { return a < 0 ? T(-a) : a; }
__device__ __forceinline__ float gd_abs(float a) { return fabsf(a); }
__device__ __forceinline__ double gd_abs(double a) { return fabs(a); }
// ~a, and for a bool its negation (~true is -2, true again as a bool).
template <typename T> __device__ __forceinline__ T gd_invert(T a) { return T(~a); }
__device__ __forceinline__ bool gd_invert(bool a) { return !a; }
// Shifts by counts C leaves undefined as NumPy and PyTorch: 0 (left) or the sign (right)
// where the count is negative or at least the width.
template <typename T> __device__ __forceinline__ T gd_shl(T a, T b) {
    return (b < T(0) || b >= T(8 * sizeof(T))) ? T(0) : T(a << b);
}
template <typename T> __device__ __forceinline__ T gd_shr(T a, T b) {
    return (b < T(0) || b >= T(8 * sizeof(T))) ? T(a < T(0) ? -1 : 0) : T(a >> b);
}
__device__ __forceinline__ float gd_softplus(float a) \
{ return fmaxf(a, 0.0f) + log1pf(expf(-fabsf(a))); }
__device__ __forceinline__ double gd_softplus(double a) \
{ return fmax(a, 0.0) + log1p(exp(-fabs(a))); }
"""



def _macro_values():
    """SymPy's table of the constants it prints as <math.h> macros (`sqrt(2)`: M_SQRT2, `log(2)`:
    M_LN2, `1/sqrt(2)`, `2/pi`, ...) -> each macro's value, the constant rounded to float64 once,
    as glibc's macro reads. Some keys (`2/Sqrt(pi)`, codegen's Sqrt) do not evaluate: their value
    is their macro's."""
    table = get_math_macros()
    by_name = {}
    for expr, name in table.items():
        try:
            by_name[name] = float(expr.evalf(30))
        except TypeError:
            continue
    return {expr: by_name[name] for expr, name in table.items()}


MACRO_VALUES = _macro_values()


class CudaPrinter(SpelledPrinter, C99CodePrinter):
    """Prints a formula in `dtype`'s precision (float32: `expf`, `1.5F`), each symbol as the
    C expression `names` gives it. Constants SymPy would print as <math.h> macros (M_SQRT2,
    M_LN2, ...: NVRTC has none) print as literals, in the same places."""

    target = "cuda"

    def __init__(self, dtype, names):
        self.dtype, self.names = dtype, names
        settings = {"math_macros": {e: self._literal(v) for e, v in MACRO_VALUES.items()}}
        if dtype.name == "float32":
            settings["type_aliases"] = {real: float32}
        super().__init__(settings)

    def _fields(self):  # {dtype:ctype}: the C type the formula computes in
        return {**super()._fields(), "dtype": sympy.Symbol(self.dtype.name)}

    def _convert_ctype(self, dtype):  # {1:ctype}: a dtype, named by a symbol, as its C type
        return ctype(dtype.name)

    def _print_Symbol(self, expr):
        return self.names[expr]

    def _print_Float(self, expr):
        return self._literal(expr)

    def _print_NumberSymbol(self, expr):  # π, e: spelled out (NVRTC has no M_PI)
        return self._literal(expr.evalf(17))

    def _print_Infinity(self, expr):
        return special_float(np.inf, self.dtype)

    def _print_NegativeInfinity(self, expr):
        return special_float(-np.inf, self.dtype)

    def _print_NaN(self, expr):
        return special_float(np.nan, self.dtype)

    def _print_Integer(self, expr):  # in a float formula, a float literal: no int/int division
        return self._literal(expr) if self.dtype.kind == "f" else super()._print_Integer(expr)

    def _print_Rational(self, expr):
        if self.dtype.kind != "f":
            return super()._print_Rational(expr)
        return f"({self._literal(expr.p)}/{self._literal(expr.q)})"

    def _print_Pow(self, expr):
        if expr.exp == -1:
            return f"{self._literal(1)}/{self.parenthesize(expr.base, 50)}"
        if expr.exp == 2:
            base = self.parenthesize(expr.base, 50)
            return f"({base}*{base})"  # NumPy squares exactly
        return super()._print_Pow(expr)

    def _literal(self, value):  # repr: the shortest text that reads back exactly
        return f"{float(value)!r}F" if self.dtype.name == "float32" else repr(float(value))
