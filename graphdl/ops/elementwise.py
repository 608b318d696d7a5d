"""Elementwise primitives. Each op is one block: scalar form, its NumPy text, NumPy reference,
pullback.

The NumPy text is what the code generator's printer gives the scalar form (arguments named by
the caller), written out so that compiling built-in ops needs no SymPy; a test checks every text
against the printer.

Inputs broadcast with NumPy's rules; the pullback returns gradients with the output's shape and
autodiff sums them back to each input's shape. Pullbacks may reuse the op's own output
(`d exp = g * out`).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from graphdl import runtime
from graphdl.errors import GraphError
from graphdl.ir import Node, describe, format_shape
from graphdl.lazy import LazyModule, scalar, sympy
from graphdl.opdef import OpDef, register
from graphdl.ops.leaf import check_dtype, lift_all


def broadcast_dims(shapes):
    """NumPy broadcasting over shapes that may hold None (unknown until call time).

    Returns the result shape, or (axis, sizes) for the first axis that cannot broadcast."""
    if all(s == shapes[0] for s in shapes):
        return tuple(shapes[0])
    ndim = max(len(s) for s in shapes)
    out = []
    for axis in range(-ndim, 0):
        dims = [s[axis] for s in shapes if len(s) >= -axis]
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            return axis, sorted(known)
        out.append(known.pop() if known else (None if None in dims else 1))
    return tuple(out)


def broadcast_shapes(inputs, opname):
    result = broadcast_dims([i.shape for i in inputs])
    if len(result) == 2 and isinstance(result[1], list):
        operands = " and ".join(f"{describe(i)} (shape {format_shape(i.shape)})" for i in inputs)
        raise GraphError(
            f"{opname}: cannot broadcast {operands}: sizes {result[1]} differ at axis {result[0]}"
        )
    return result


def promote(inputs, attrs):
    return _result_type(tuple(i.dtype for i in inputs))


@functools.cache
def _result_type(dtypes):
    return np.result_type(*dtypes)


def floating(opname):
    def rule(inputs, attrs):
        dtype = promote(inputs, attrs)
        if dtype.kind != "f":
            bad = next(i for i in inputs if i.dtype.kind != "f")
            raise GraphError(
                f"{opname} expects floating-point input, got {describe(bad)} of dtype {bad.dtype}; "
                f"convert it first with gd.cast(x, 'float32')"
            )
        return dtype
    return rule


def numeric(opname, instead):
    """promote, refusing bool, for which NumPy has no such operator (it raises at run time)."""
    def rule(inputs, attrs):
        dtype = promote(inputs, attrs)
        if dtype == np.bool_:
            operands = " and ".join(describe(i) for i in inputs)
            raise GraphError(f"{opname}: {operands} {'are' if len(inputs) > 1 else 'is'} bool, "
                             f"and NumPy has no boolean {opname}; {instead}, or convert first "
                             f"with gd.cast(x, 'int8')")
        return dtype
    return rule


def boolean(inputs, attrs):
    return np.dtype(bool)


def elementwise(name, sym, text, impl, pullback, dtype_rule=promote, doc="", aliases=False,
                label=None, closed_form=None):
    """Declare and register an elementwise primitive (`text`: `OpDef.numpy_text`)."""
    def infer(inputs, attrs):
        return broadcast_shapes(inputs, name), dtype_rule(inputs, attrs)

    return register(OpDef(
        name, infer=infer, impl=impl, pullback=pullback, sym=sym, numpy_text=text,
        kind="elementwise",
        broadcasts=True, doc=doc, aliases=aliases, label=label, closed_form=closed_form,
    ))


def _binary_label(symbol, text):
    """The label of a binary op: `symbol`, or `text(k, v)` when one operand, at position k, is a
    constant folded into the gate, printed v: +1, /2, > 0."""
    def label(node, folded):
        if len(folded) != 1:
            return symbol
        ((k, v),) = folded.items()
        return text(k, v)
    return label


# add: a + b; both inputs get g.
ADD = elementwise("add", lambda a, b: a + b, lambda a, b: f"{a} + {b}", np.add, lambda n, g: [g, g],
                  label=_binary_label("+", lambda k, v: v if v.startswith("−") else f"+{v}"))

# sub: a - b; the subtrahend gets -g.
SUB = elementwise("sub", lambda a, b: a - b, lambda a, b: f"{a} - {b}", np.subtract,
                  lambda n, g: [g, -g], numeric("sub", "for exclusive or use gd.not_equal(a, b)"),
                  label=_binary_label("−", lambda k, v: f"−{v}" if k == 1 else f"{v} − x"))

# mul: a * b; each input gets g times the other.
MUL = elementwise("mul", lambda a, b: a * b, lambda a, b: f"{a}*{b}", np.multiply,
                  lambda n, g: [g * n.inputs[1], g * n.inputs[0]],
                  label=_binary_label("*", lambda k, v: f"*{v}"))

def _div_dtype(inputs, attrs):
    dtype = promote(inputs, attrs)
    return dtype if dtype.kind == "f" else np.dtype("float64")  # true division, as NumPy's


# div: a / b (true division: integers give float64); d/db = -a/b² = -out/b.
DIV = elementwise("div", lambda a, b: a / b, lambda a, b: f"{a}/{b}", np.true_divide,
                  lambda n, g: [g / n.inputs[1], -(g * n / n.inputs[1])], _div_dtype,
                  label=_binary_label("/", lambda k, v: f"/{v}" if k == 1 else f"{v}/x"))

# neg: -a.
NEG = elementwise("neg", lambda a: -a, lambda a: f"-{a}", np.negative, lambda n, g: [-g],
                  numeric("neg", "for logical not use gd.equal(a, False)"), label="*−1")

# reciprocal: 1/a; d/da = -1/a² = -out², written -(g * (out*out)) so `stabilize` can spot it.
RECIPROCAL = elementwise("reciprocal", lambda a: 1 / a, lambda a: f"1/{a}", lambda a: 1 / a,
                         lambda n, g: [-(g * (n * n))], floating("reciprocal"), label="1/x")

# exp: e^a; d/da = e^a, the output itself.
EXP = elementwise("exp", lambda a: sympy.exp(a), lambda a: f"numpy.exp({a})", np.exp,
                  lambda n, g: [g * n], floating("exp"))

# log: natural log; d/da = 1/a.
LOG = elementwise("log", lambda a: sympy.log(a), lambda a: f"numpy.log({a})", np.log,
                  lambda n, g: [g / n.inputs[0]], floating("log"))

# sqrt: √a; d/da = 1/(2√a) = 0.5/out.
SQRT = elementwise("sqrt", lambda a: sympy.sqrt(a), lambda a: f"numpy.sqrt({a})", np.sqrt,
                   lambda n, g: [(g / n) * 0.5], floating("sqrt"), label="√")

def _pow_dtype(inputs, attrs):
    exponent = attrs["exponent"]
    base = inputs[0].dtype
    if isinstance(exponent, int) and base.kind in "biu":  # NumPy converts it to the base's type
        info = np.iinfo(np.int64 if base.kind == "b" else base)
        if not info.min <= exponent <= info.max:
            raise GraphError(f"pow: the exponent of {describe(inputs[0])}, {exponent}, does not "
                             f"fit in its dtype {base} (NumPy's integer power); write it as a "
                             f"float: {float(exponent)!r}")
    if base.kind in "biu" and isinstance(exponent, float):
        return np.dtype("float64")  # int32 ** 0.5 and ** 2.0 are float64 in NumPy (2 stays int32)
    if float(exponent).is_integer() and not (exponent < 0 and inputs[0].dtype.kind != "f"):
        return promote(inputs, attrs)
    return floating("pow")(inputs, attrs)


def _pow_sym(a, exponent):
    """a ** exponent with the exponent held exactly: an int as an Integer, a float as the same
    double (a 53-bit Float, printed with repr: π stays π). Unevaluated, since SymPy would turn
    a**0 into 1 (dropping a's shape and dtype) and a**nan into nan (NumPy's 1**nan is 1)."""
    e = sympy.Integer(exponent) if isinstance(exponent, int) else sympy.Float(exponent)
    return sympy.Pow(a, e, evaluate=False)


def _pow_text(a, exponent):
    """What the printer gives `_pow_sym`: a ** -1 as 1/a; other negative integers as floats
    (SymPy's NumPy printer avoids integer ** negative integer); a float as the shortest text of
    its double (SymPy's Float has no -0.0), nan and inf as NumPy's; negative exponents in
    parentheses."""
    if isinstance(exponent, int):
        if exponent == -1:
            return f"1/{a}"
        if exponent >= 0:
            return f"{a}**{int(exponent)}"
    e = float(exponent) + 0.0  # -0.0 + 0.0 is 0.0
    text = "numpy.nan" if math.isnan(e) else repr(abs(e)).replace("inf", "numpy.inf")
    return f"{a}**(-{text})" if e < 0 else f"{a}**{text}"


def _pow_pullback(n, g):
    e = n.attrs["exponent"]
    if e == 0:  # d/da a**0 is 0 everywhere; 0 * 0**-1 would make it NaN at 0 (PyTorch: 0 too)
        return [None]
    return [g * (n.inputs[0] ** (e - 1)) * e]


_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def _pow_label(node, folded):
    """x², x⁻¹; x^0.5 for an exponent that is not a small integer."""
    e = node.attrs["exponent"]
    if float(e).is_integer() and abs(e) < 100:
        return "x" + str(int(e)).translate(_SUPERSCRIPT)
    return f"x^{e:g}"


# pow: a ** exponent (a Python number); d/da = exponent · a^(exponent-1). Its closed form holds
# the exponent as a simple fraction where it is one (x**2, sqrt(x): readable), unlike `sym`,
# which keeps the exact double the code prints.
POW = elementwise("pow", _pow_sym, _pow_text, lambda a, exponent: a ** exponent, _pow_pullback,
                  _pow_dtype, label=_pow_label,
                  closed_form=lambda n, args: args[0] ** scalar.exact(n.attrs["exponent"]))

# tanh: d/da = 1 - tanh² (a stable primitive; gd.tanh declares the lecture's decomposition).
TANH = elementwise("tanh", lambda a: sympy.tanh(a), lambda a: f"numpy.tanh({a})", np.tanh,
                   lambda n, g: [g * (1 - n * n)], floating("tanh"))

# sigmoid: σ(a) = 1/(1+e^-a), computed without overflow; d/da = σ(1-σ).
# `stabilize` rewrites the decomposed sigmoid circuit into this primitive.
SIGMOID = elementwise("sigmoid", lambda a: scalar.Sigmoid(a), lambda a: f"_sigmoid({a})",
                      runtime._sigmoid,  # σ from e^-|a|: no overflow
                      lambda n, g: [g * (n * (1 - n))], floating("sigmoid"), label="σ")

# softplus: log(1 + e^a), computed from e^-|a| without overflow; d/da = σ(a).
SOFTPLUS = elementwise("softplus", lambda a: scalar.Softplus(a),
                       lambda a: f"_softplus({a})", runtime._softplus,
                       lambda n, g: [g * SIGMOID(n.inputs[0])], floating("softplus"))

# relu: max(a, 0); relu'(0) = 0 as in PyTorch (the lecture's table says 1 for x ≥ 0). The mask
# reads the output (a > 0 exactly where relu(a) > 0, NaN included), so a itself is dead after
# the forward pass and generated code can compute relu in place.
RELU = elementwise("relu", lambda a: scalar.Relu(a), lambda a: f"numpy.maximum({a}, 0)",
                   lambda a: np.maximum(a, 0),
                   lambda n, g: [WHERE(GREATER(n, 0), g, 0)])

# abs: |a|; d/da = sign(a), 0 at 0 and at NaN (PyTorch's sgn: abs'(0) = 0, sign(NaN) = 0).
ABS = elementwise("abs", lambda a: sympy.Abs(a), lambda a: f"numpy.abs({a})", np.abs,
                  lambda n, g: [WHERE(GREATER(n.inputs[0], 0), g,
                                      WHERE(LESS(n.inputs[0], 0), -g, 0))],
                  numeric("abs", "a bool is its own absolute value"), label="|x|")


def _extremum_pullback(winner):
    """Pullback of maximum/minimum: the winning input gets g; ties split it evenly (PyTorch)."""
    def pullback(n, g):
        a, b = n.inputs
        half = g * 0.5
        return [WHERE(winner(a, b), g, WHERE(EQUAL(a, b), half, 0)),
                WHERE(winner(b, a), g, WHERE(EQUAL(a, b), half, 0))]
    return pullback


# maximum / minimum: NaN-propagating, as NumPy's.
MAXIMUM = elementwise("maximum", lambda a, b: sympy.Max(a, b),
                      lambda a, b: f"numpy.maximum({a}, {b})", np.maximum,
                      _extremum_pullback(lambda a, b: GREATER(a, b)),
                      label=_binary_label("max", lambda k, v: f"max(·, {v})"))
MINIMUM = elementwise("minimum", lambda a, b: sympy.Min(a, b),
                      lambda a, b: f"numpy.minimum({a}, {b})", np.minimum,
                      _extremum_pullback(lambda a, b: LESS(a, b)),
                      label=_binary_label("min", lambda k, v: f"min(·, {v})"))


def _where_dtype(inputs, attrs):
    cond = inputs[0]
    if cond.dtype != np.bool_:
        raise GraphError(f"where: the condition {describe(cond)} must be bool, got {cond.dtype}")
    return promote(inputs[1:], attrs)


# where: c ? a : b; the chosen branch gets g, the other zero, the condition nothing.
WHERE = elementwise("where", lambda c, a, b: scalar.Where(c, a, b),
                    lambda c, a, b: f"_where({c}, {a}, {b})", np.where,
                    lambda n, g: [None, WHERE(n.inputs[0], g, 0), WHERE(n.inputs[0], 0, g)],
                    _where_dtype)


def _comparison(name, relation, impl, symbol):
    """A comparison: its SymPy form is the relation of that name (`sympy.StrictGreaterThan`),
    printed as the NumPy function of the op's name; drawn `symbol`, `> 0` with a constant."""
    return elementwise(name, lambda a, b: getattr(sympy, relation)(a, b),
                       lambda a, b: f"numpy.{name}({a}, {b})", impl,
                       lambda n, g: [None, None], boolean,
                       label=_binary_label(symbol, lambda k, v: f"{symbol} {v}" if k == 1
                                    else f"{v} {symbol}"))


# Comparisons give bool and have no gradient.
GREATER = _comparison("greater", "StrictGreaterThan", np.greater, ">")
GREATER_EQUAL = _comparison("greater_equal", "GreaterThan", np.greater_equal, "≥")
LESS = _comparison("less", "StrictLessThan", np.less, "<")
LESS_EQUAL = _comparison("less_equal", "LessThan", np.less_equal, "≤")
EQUAL = _comparison("equal", "Eq", np.equal, "==")
NOT_EQUAL = _comparison("not_equal", "Ne", np.not_equal, "≠")

# cast: convert to attrs["dtype"]; the gradient is cast back (none flows into integers).
CAST = elementwise(
    "cast", lambda a, dtype: scalar.Cast(a, sympy.Symbol(dtype)),
    lambda a, dtype: f"numpy.asarray({a}, dtype=numpy.{dtype})",
    lambda a, dtype: np.asarray(a, dtype=dtype),
    lambda n, g: [CAST(g, dtype=n.inputs[0].dtype.name) if n.inputs[0].dtype.kind == "f"
                  else None],
    lambda inputs, attrs: check_dtype(attrs["dtype"], f"cast of {describe(inputs[0])}"),
    aliases=True,  # to its own dtype: the input itself
    label=lambda node, folded: f"cast {node.attrs['dtype']}",
)

# stop_gradient: the identity forward, no gradient backward (as in JAX). Its SymPy form is the
# identity the code prints; its closed form is a function whose derivative is zero.
STOP_GRADIENT = elementwise("stop_gradient", lambda a: a, lambda a: a, lambda a: a,
                            lambda n, g: [None],
                            aliases=True, label="stop ∇",
                            closed_form=lambda n, args: scalar.StopGradient(args[0]))


# erf: the error function, 2/√π ∫₀ᵃ e^(-t²) dt; d/da = 2/√π · e^(-a²).
ERF = elementwise("erf", lambda a: sympy.erf(a), lambda a: f"_erf({a})", runtime._erf,
                  lambda n, g: [g * (EXP(-(n.inputs[0] * n.inputs[0])) * _TWO_OVER_SQRT_PI)],
                  floating("erf"))
_TWO_OVER_SQRT_PI = 2 / math.sqrt(math.pi)

def cast(x, dtype):
    return CAST(x, dtype=check_dtype(dtype, f"cast of {describe(x)}").name)


# ---------------------------------------------------------------- PyTorch's math functions
# Primitives where SymPy has the function and both printers spell it right; exact composites
# of primitives elsewhere. Public forms take NumPy's dtypes (`_promoting`); gradients and the
# values at the domains' edges are PyTorch's.

_cfunctions = LazyModule("sympy.codegen.cfunctions")  # log1p, expm1, log2, log10


def _as(x, dtype):
    return x if x.dtype == dtype else CAST(x, dtype=dtype.name)


def _promoting(fn):
    """`fn` on its operands in the float NumPy computes its float functions in: a float dtype
    stays, integers and bool take the smallest float that holds them (int32 and int64: float64,
    int8: float16)."""
    def apply(*operands):
        nodes = lift_all(operands)
        dtype = np.promote_types(promote(nodes, {}), np.float16)
        return fn(*(_as(x, dtype) for x in nodes))
    apply.__name__ = apply.__qualname__ = getattr(fn, "name", None) or fn.__name__
    apply.__doc__ = None if isinstance(fn, OpDef) else fn.__doc__
    return apply


def _integers_unchanged(fn):
    """`fn` of a float; an integer or bool is returned as it is (its own floor, ceil, trunc and
    round, in its own dtype, as NumPy's)."""
    def apply(x):
        (x,) = lift_all([x])
        return fn(x) if x.dtype.kind == "f" else x
    apply.__name__ = apply.__qualname__ = getattr(fn, "name", None) or fn.__name__
    apply.__doc__ = None if isinstance(fn, OpDef) else fn.__doc__
    return apply


def _function(name, sym, numpy_name, rule):
    """A float function of one argument, printed `numpy.<numpy_name>(a)`; its gradient is
    `rule(g, a, out)`, PyTorch's formula (so also its inf and NaN at the domain's edges)."""
    return elementwise(name, sym, lambda a: f"numpy.{numpy_name}({a})", getattr(np, numpy_name),
                       lambda n, g: [rule(g, n.inputs[0], n)], floating(name))


# sin, cos: d sin = cos, d cos = −sin.
SIN = _function("sin", lambda a: sympy.sin(a), "sin", lambda g, a, out: g * COS(a))
COS = _function("cos", lambda a: sympy.cos(a), "cos", lambda g, a, out: g * -SIN(a))

# tan: d/da = 1 + tan², from the output.
TAN = _function("tan", lambda a: sympy.tan(a), "tan", lambda g, a, out: g * (1 + out * out))

# asin, acos: d/da = ±1/√(1 − a²): infinite at ±1, NaN beyond.
ASIN = _function("asin", lambda a: sympy.asin(a), "arcsin",
                 lambda g, a, out: g / SQRT(1 - a * a))
ACOS = _function("acos", lambda a: sympy.acos(a), "arccos",
                 lambda g, a, out: -(g / SQRT(1 - a * a)))

# atan: d/da = 1/(a² + 1).
ATAN = _function("atan", lambda a: sympy.atan(a), "arctan", lambda g, a, out: g / (a * a + 1))

# sinh, cosh: each is the other's derivative.
SINH = _function("sinh", lambda a: sympy.sinh(a), "sinh", lambda g, a, out: g * COSH(a))
COSH = _function("cosh", lambda a: sympy.cosh(a), "cosh", lambda g, a, out: g * SINH(a))

# asinh, acosh: d/da = 1/√(a² ± 1) (acosh: inf at 1, NaN below); atanh: 1/(1 − a²), inf at ±1.
ASINH = _function("asinh", lambda a: sympy.asinh(a), "arcsinh",
                  lambda g, a, out: g / SQRT(a * a + 1))
ACOSH = _function("acosh", lambda a: sympy.acosh(a), "arccosh",
                  lambda g, a, out: g / SQRT(a * a - 1))
ATANH = _function("atanh", lambda a: sympy.atanh(a), "arctanh",
                  lambda g, a, out: g / (1 - a * a))

# log2, log10: d/da = 1/(a·ln b); log1p: 1/(a + 1), inf at −1; expm1: e^a = out + 1.
LOG2 = _function("log2", lambda a: _cfunctions.log2(a), "log2",
                 lambda g, a, out: g / (a * math.log(2)))
LOG10 = _function("log10", lambda a: _cfunctions.log10(a), "log10",
                  lambda g, a, out: g / (a * math.log(10)))
LOG1P = _function("log1p", lambda a: _cfunctions.log1p(a), "log1p",
                  lambda g, a, out: g / (a + 1))
EXPM1 = _function("expm1", lambda a: _cfunctions.expm1(a), "expm1",
                  lambda g, a, out: g * (out + 1))

# erfc: 1 − erf, by the C library's erfc (1 − erf(a) rounds to 0 from a ≈ 6, erfc(10) ≈ 2e-45);
# d/da = −2/√π · e^(−a²), erf's negated.
ERFC = elementwise("erfc", lambda a: sympy.erfc(a), lambda a: f"_erfc({a})", runtime._erfc,
                   lambda n, g: [-(g * (EXP(-(n.inputs[0] * n.inputs[0])) * _TWO_OVER_SQRT_PI))],
                   floating("erfc"))

# floor, ceil: steps, gradient 0 (PyTorch's). The public forms return integers as they are.
FLOOR = elementwise("floor", lambda a: sympy.floor(a), lambda a: f"numpy.floor({a})", np.floor,
                    lambda n, g: [None], floating("floor"))
CEIL = elementwise("ceil", lambda a: sympy.ceiling(a), lambda a: f"numpy.ceil({a})", np.ceil,
                   lambda n, g: [None], floating("ceil"))


def _atan2_pullback(n, g):
    """(b, −a)/(a² + b²), 0 where a² + b² is 0 (PyTorch's, also where it underflows)."""
    a, b = n.inputs
    d = a * a + b * b
    r = WHERE(EQUAL(d, 0), 0, RECIPROCAL(d))
    return [g * b * r, g * -a * r]


# atan2: the angle of the point (b, a), in [−π, π], signed zeros as C's atan2.
ATAN2 = elementwise("atan2", lambda a, b: sympy.atan2(a, b),
                    lambda a, b: f"numpy.arctan2({a}, {b})", np.arctan2, _atan2_pullback,
                    floating("atan2"))

def _fmod_dtype(inputs, attrs):
    """promote, refusing bool operands (NumPy's sign, in fmod's form, has no bool loop)."""
    for x in inputs:
        if x.dtype == np.bool_:
            raise GraphError(f"fmod: {describe(x)} is bool; convert it first with "
                             f"gd.cast(x, 'int8')")
    return promote(inputs, attrs)


# fmod: C's remainder a − trunc(a/b)·b, of a's sign; written sign(a)·(|a| mod |b|), which both
# printers spell exactly (SymPy's Mod is Python's). d/db = −trunc(a/b), PyTorch's (a/b rounded
# first). Integers by 0 give 0, with NumPy's warning (PyTorch raises).
FMOD = elementwise("fmod", lambda a, b: sympy.sign(a) * sympy.Mod(sympy.Abs(a), sympy.Abs(b)),
                   lambda a, b: f"(numpy.mod(numpy.abs({a}), numpy.abs({b})))*numpy.sign({a})",
                   np.fmod, lambda n, g: [g, -(g * trunc(n.inputs[0] / n.inputs[1]))],
                   _fmod_dtype)


def _power_pullback(n, g):
    """PyTorch's: b·a^(b−1), 0 where b = 0; a^b·log a, 0 where a = 0 ≤ b (log reads 1 there:
    no log(0) is computed)."""
    a, b = (_as(x, n.dtype) for x in n.inputs)
    logged = WHERE(EQUAL(a, 0), WHERE(GREATER_EQUAL(b, 0), 1, a), a)
    return [WHERE(EQUAL(b, 0), 0, g * (b * POWER(a, b - 1))), g * (n * LOG(logged))]


# power: a ** b with a tensor exponent (pow holds a Python number exponent).
POWER = elementwise("power", lambda a, b: sympy.Pow(a, b), lambda a, b: f"{a}**{b}", np.power,
                    _power_pullback, numeric("power", "raise integers or floats"),
                    label=_binary_label("^", lambda k, v: f"^{v}" if k == 1 else f"{v}^x"))

sin, cos, tan, asin, acos, atan = map(_promoting, (SIN, COS, TAN, ASIN, ACOS, ATAN))
sinh, cosh, asinh, acosh, atanh = map(_promoting, (SINH, COSH, ASINH, ACOSH, ATANH))
log2, log10, log1p, expm1, erfc, atan2 = map(_promoting, (LOG2, LOG10, LOG1P, EXPM1, ERFC,
                                                     ATAN2))
floor, ceil, fmod = _integers_unchanged(FLOOR), _integers_unchanged(CEIL), FMOD


def pow(a, b):
    """a ** b: a Python number b is the constant exponent of `pow` (x ** 2 stays x²), anything
    else the tensor power, differentiable in both, PyTorch's convention at a = 0."""
    if isinstance(b, (int, float)) and isinstance(a, Node):
        return POW(a, exponent=b)
    return POWER(a, b)


@_promoting
def exp2(x):
    """2^x: PyTorch's pow(2, x), the tensor power, its gradient 2^x·log 2."""
    return POWER(2.0, x)


@_promoting
def rsqrt(x):
    """1/√x, as PyTorch computes it (1/0 = inf, 1/−0 = −inf, NaN below 0)."""
    return RECIPROCAL(SQRT(x))


def square(x):
    """x·x: exact, as PyTorch's and NumPy's square; integers stay integers."""
    return MUL(x, x)


@_integers_unchanged
def trunc(x):
    """Rounded toward zero: ceil below 0, floor elsewhere; gradient 0 (PyTorch's)."""
    return WHERE(LESS(x, 0), CEIL(x), FLOOR(x))


@_integers_unchanged
def round(x):
    """Rounded half to even (NumPy's and PyTorch's), gradient 0. |x| + 2^m, m the mantissa's
    bits, lies where floats are 1 apart: the addition rounds |x| to an integer, ties to even;
    from 2^m on every float is an integer. Zeros keep their sign."""
    x = STOP_GRADIENT(x)
    big = 2.0 ** np.finfo(x.dtype).nmant
    magnitude = ABS(x)
    s = (magnitude + big) - big
    rounded = WHERE(LESS(magnitude, big), WHERE(LESS(x, 0), -s, s), x)
    return WHERE(EQUAL(x, 0), x, rounded)


def sign(x):
    """1, 0 or −1 in x's dtype: (x > 0) − (x < 0), PyTorch's sign, 0 at NaN (NumPy's sign is
    NaN there); gradient 0. A bool is its own sign."""
    (x,) = lift_all([x])
    if x.dtype == np.bool_:
        return x
    return cast(GREATER(x, 0), x.dtype) - cast(LESS(x, 0), x.dtype)


def isnan(x):
    """x ≠ x: only NaN differs from itself."""
    (x,) = lift_all([x])
    return NOT_EQUAL(x, x)


def isinf(x):
    """|x| = inf; never, for integers and bool (x ≠ x)."""
    (x,) = lift_all([x])
    return EQUAL(ABS(x), math.inf) if x.dtype.kind == "f" else NOT_EQUAL(x, x)


def isfinite(x):
    """|x| < inf, false at NaN; always, for integers and bool (x = x)."""
    (x,) = lift_all([x])
    return LESS(ABS(x), math.inf) if x.dtype.kind == "f" else EQUAL(x, x)


@_promoting
def copysign(a, b):
    """|a| with b's sign, a zero b's included: atan2(b, −1) is −π at −0, π at +0. A NaN b counts
    as positive (comparisons cannot read its sign bit, which PyTorch's copysign does)."""
    magnitude = ABS(a)
    return WHERE(LESS(ATAN2(b, -1.0), 0), -magnitude, magnitude)


def isclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    """|a − b| finite and at most atol + |rtol·b|, or a = b (infinities of one sign), or both NaN
    where equal_nan: PyTorch's and NumPy's isclose; integers compare in float64, as NumPy's. In
    float wheres only (onnxruntime has no bool Where): the gap is 0 where a and b count as equal,
    NaN where their error is not finite."""
    a, b = lift_all([a, b])
    if promote((a, b), {}).kind != "f":
        a, b = _as(a, np.dtype("float64")), _as(b, np.dtype("float64"))
    same = EQUAL(a, b)  # zeroed before subtracting: inf − inf would warn
    error = ABS(WHERE(same, 0, a) - WHERE(same, 0, b))
    gap = WHERE(LESS(error, math.inf), error, math.nan)
    if equal_nan:
        gap = WHERE(isnan(a), WHERE(isnan(b), 0, gap), gap)
    tolerance = atol + ABS(b * rtol) if rtol else atol  # no inf·0 at rtol = 0
    return LESS_EQUAL(gap, WHERE(EQUAL(gap, 0), 0, tolerance))


def _fmod_off(a, b):
    """fmod(a, b), and where floor division leaves it: a nonzero remainder whose sign is not b's
    (there remainder adds b, floor_divide takes 1 from the quotient). A logical and, not a
    where of bools, which onnxruntime lacks."""
    from graphdl.ops.logic import LOGICAL_AND  # which builds on this module

    m = FMOD(a, b)
    return m, LOGICAL_AND(NOT_EQUAL(m, 0), NOT_EQUAL(LESS(b, 0), LESS(m, 0)))


def remainder(a, b):
    """a mod b, of b's sign: Python's `%`, PyTorch's remainder; d/da = 1, d/db = −⌊a/b⌋.
    Integers by 0 give 0, NumPy's value, with its warning (PyTorch raises)."""
    a, b = lift_all([a, b])
    m, off = _fmod_off(a, b)
    return WHERE(off, m + b, m)


def _multiple_over(multiple, divisor):
    """multiple/divisor, integers, the first a multiple of the second (nonzero): float64 divides
    it exactly below 2^53. Beyond (int64), its quotient is within a few units of the true one,
    and the residual's quotient, small, rounds to them exactly (the residual wraps, as the
    product does)."""
    quotient = cast(DIV(multiple, divisor), multiple.dtype)
    if multiple.dtype != np.int64:
        return quotient
    units = round(DIV(multiple - quotient * divisor, divisor))
    return quotient + cast(units, multiple.dtype)


def floor_divide(a, b):
    """⌊a/b⌋: Python's `//`, PyTorch's floor_divide. Floats by PyTorch's algorithm, (a − fmod)/b
    rounded to the integer it is (1 // 0.1 is 9, as in Python), a/b where b is 0; integers by 0
    give 0, NumPy's value, with its warning (PyTorch raises). Gradient 0 (PyTorch has none)."""
    a, b = (STOP_GRADIENT(x) for x in lift_all([a, b]))
    m, off = _fmod_off(a, b)
    by_zero = EQUAL(b, 0)
    if m.dtype.kind != "f":
        quotient = _multiple_over(a - m, WHERE(by_zero, 1, b)) - cast(off, m.dtype)
        return WHERE(by_zero, 0, quotient)
    exact = (a - m) / b
    quotient = WHERE(off, exact - 1, exact)
    below = FLOOR(quotient)
    rounded = WHERE(GREATER(quotient - below, 0.5), below + 1, below)
    zero = (m / b) * 0  # where the quotient is 0: a = m, and the zero takes a/b's sign
    return WHERE(by_zero, a / b, WHERE(EQUAL(quotient, 0), zero, rounded))


exp, log, sqrt, reciprocal, relu, erf = EXP, LOG, SQRT, RECIPROCAL, RELU, ERF
maximum, minimum, where, stop_gradient = MAXIMUM, MINIMUM, WHERE, STOP_GRADIENT
greater, greater_equal, less, less_equal = GREATER, GREATER_EQUAL, LESS, LESS_EQUAL
equal, not_equal = EQUAL, NOT_EQUAL
