"""PyTorch's activation functions as composites of stable primitives (`graphdl.ops.composite`).

Each equals its `torch.nn.functional` namesake in value, gradient and second derivative,
including at the kinks, where PyTorch's backward takes one side's slope (leaky_relu'(0) is the
negative slope, elu'(0) = α) or none (relu6 and hardtanh at their bounds), and its double
backward no curvature. No exp here sees a positive argument (celu: for α > 0), so nothing
overflows for any finite input.

NaN gives NaN, and a NaN gradient but where the derivative around is a constant: 0 for hardtanh,
relu6 and hardsigmoid (as graphdl's relu and clip), the negative slope for leaky_relu. PyTorch's
gradient there depends on the path its kernel takes (relu6'(NaN) is 1 for 3 elements, 0 for 64).

A composite with parameters is drawn as one gate at its defaults (the views rebuild it with
them), and as its parts otherwise.
"""

from __future__ import annotations

from graphdl.errors import GraphError
from graphdl.ir import describe, format_shape
from graphdl.lazy import scalar, sympy
from graphdl.ops import elementwise as ew
from graphdl.ops import leaf
from graphdl.ops import movement as mv
from graphdl.ops.composite import _floating, _named, composite, kink_slope, one_axis, parameter

# selu's constants, as PyTorch's
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _times(x, c):
    """x·c, or x itself where c is 1 (no gate that changes nothing)."""
    return x if c == 1 else x * c


def _expm1(u):
    """e^u − 1 for u ≤ 0, to a few ulps also near 0 as PyTorch's expm1, where e^u − 1 loses
    every digit: there as tanh(u/2)·(e^u + 1), whose gradient has no cancellation for u > -1."""
    e = ew.EXP(u)
    return ew.WHERE(ew.GREATER(u, -1), ew.TANH(u * 0.5) * (e + 1), e - 1)


def _elu(x, alpha, scale, input_scale, name):
    """PyTorch's elu kernel: scale·x above 0, scale·α·(e^(x·input_scale) − 1) at and below,
    with its slope at 0 from below (scale·α·input_scale) and no curvature there."""
    x = _floating(x, name)
    below = ew.WHERE(ew.GREATER_EQUAL(x, 0), 0, x)  # e^below never overflows; NaN stays
    lower = _times(_expm1(_times(below, input_scale)), alpha * scale)
    at_zero = kink_slope(x, ew.EQUAL(x, 0), alpha * scale * input_scale)
    return _named(ew.WHERE(ew.GREATER(x, 0), _times(x, scale), lower + at_zero), name)


@composite("silu", "silu", "d silu/dx = σ(x)(1 + x(1 − σ(x)))", ew.MUL,
           sym=lambda x: x * scalar.Sigmoid(x))
def silu(x):
    """x·σ(x), PyTorch's `silu` (swish)."""
    x = _floating(x, "silu")
    return _named(x * ew.SIGMOID(x), "silu")


@composite("elu", "elu", "d elu/dx = 1 for x > 0, α·eˣ for x ≤ 0", ew.WHERE,
           sym=lambda x: sympy.Piecewise((x, x > 0), (sympy.exp(x) - 1, True)))
def elu(x, alpha=1.0):
    """x for x > 0, α(eˣ − 1) otherwise; elu'(0) = α, elu''(0) = 0 (PyTorch's)."""
    return _elu(x, parameter("elu", "alpha", alpha), 1, 1, "elu")


@composite("selu", "selu", "d selu/dx = λ for x > 0, λα·eˣ for x ≤ 0", ew.WHERE,
           sym=lambda x: sympy.Piecewise((SELU_SCALE * x, x > 0),
                                         (SELU_SCALE * SELU_ALPHA * (sympy.exp(x) - 1), True)))
def selu(x):
    """λx for x > 0, λα(eˣ − 1) otherwise, with PyTorch's α ≈ 1.6733 and λ ≈ 1.0507."""
    return _elu(x, SELU_ALPHA, SELU_SCALE, 1, "selu")


@composite("celu", "celu", "d celu/dx = 1 for x > 0, e^(x/α) for x ≤ 0", ew.WHERE,
           sym=lambda x: sympy.Piecewise((x, x > 0), (sympy.exp(x) - 1, True)))
def celu(x, alpha=1.0):
    """x for x > 0, α(e^(x/α) − 1) otherwise (PyTorch's: x·(1/α) in the exponent)."""
    alpha = parameter("celu", "alpha", alpha, nonzero=True)
    return _elu(x, alpha, 1, 1 / alpha, "celu")


@composite("leaky_relu", "leaky relu", "d leaky_relu/dx = 1 for x > 0, the slope for x ≤ 0",
           ew.WHERE, sym=lambda x: sympy.Piecewise((x, x > 0), (sympy.Float(0.01) * x, True)))
def leaky_relu(x, negative_slope=0.01):
    """x for x > 0, negative_slope·x otherwise: the negative slope at 0 too (PyTorch's)."""
    x = _floating(x, "leaky_relu")
    slope = parameter("leaky_relu", "negative_slope", negative_slope)
    return _named(ew.WHERE(ew.GREATER(x, 0), x, x * slope), "leaky_relu")


def _clamped(x, lo, hi, inside, low, high):
    """`inside` where lo < x < hi, else `low` or `high`, constants: the gradient is inside's
    strictly between the bounds and 0 at them (PyTorch's hardtanh); NaN stays NaN, with no
    gradient."""
    return ew.WHERE(ew.GREATER(x, lo), ew.WHERE(ew.LESS(x, hi), inside, high),
                    ew.WHERE(ew.LESS_EQUAL(x, lo), low, ew.stop_gradient(x)))


@composite("hardtanh", "hardtanh", "d hardtanh/dx = 1 for min < x < max, else 0", ew.WHERE,
           sym=lambda x: sympy.Piecewise((-1, x <= -1), (1, x >= 1), (x, True)))
def hardtanh(x, min_val=-1.0, max_val=1.0):
    """x clamped to [min_val, max_val], with gradient 0 at the bounds (PyTorch's)."""
    x = _floating(x, "hardtanh")
    lo = parameter("hardtanh", "min_val", min_val)
    hi = parameter("hardtanh", "max_val", max_val)
    if lo > hi:
        raise GraphError(f"hardtanh of {describe(x)}: min_val {lo!r} is above max_val {hi!r}")
    return _named(_clamped(x, lo, hi, x, lo, hi), "hardtanh")


@composite("relu6", "relu6", "d relu6/dx = 1 for 0 < x < 6, else 0", ew.WHERE,
           sym=lambda x: sympy.Piecewise((0, x <= 0), (6, x >= 6), (x, True)))
def relu6(x):
    """x clamped to [0, 6], with gradient 0 at 0 and 6 (PyTorch's: hardtanh(x, 0, 6))."""
    x = _floating(x, "relu6")
    return _named(_clamped(x, 0.0, 6.0, x, 0.0, 6.0), "relu6")


@composite("hardsigmoid", "hard σ", "d hardsigmoid/dx = 1/6 for −3 < x < 3, else 0", ew.WHERE,
           sym=lambda x: sympy.Piecewise((0, x <= -3), (1, x >= 3), (x / 6 + sympy.Rational(1, 2),
                                                                      True)))
def hardsigmoid(x):
    """relu6(x + 3)/6, with gradient 0 at ±3 (PyTorch's)."""
    x = _floating(x, "hardsigmoid")
    return _named(_clamped(x, -3.0, 3.0, (x + 3) / 6, 0.0, 1.0), "hardsigmoid")


@composite("hardswish", "hardswish",
           "d hardswish/dx = 0 for x ≤ −3, x/3 + 1/2 for −3 < x < 3, 1 for x ≥ 3", ew.MUL,
           sym=lambda x: sympy.Piecewise((0, x <= -3), (x, x >= 3), (x * (x + 3) / 6, True)))
def hardswish(x):
    """x·hardsigmoid(x): gradient 0 at −3 and 1 at 3 (PyTorch's), NaN at −inf (x·0). Where
    hardsigmoid is constant its gradient discards x's, so ±inf get 0 and 1, not 0·inf."""
    x = _floating(x, "hardswish")
    return _named(x * hardsigmoid(x), "hardswish")


@composite("mish", "mish", "d mish/dx = tanh(softplus(x)) + x·σ(x)(1 − tanh²(softplus(x)))",
           ew.MUL, sym=lambda x: x * sympy.tanh(scalar.Softplus(x)))
def mish(x):
    """x·tanh(softplus(x)), from the stable primitives."""
    x = _floating(x, "mish")
    return _named(x * ew.TANH(ew.SOFTPLUS(x)), "mish")


@composite("prelu", "PReLU",
           "dL/dx = g for x > 0 and weight·g for x ≤ 0, dL/dweight = Σ_{x ≤ 0} x·g per channel",
           ew.WHERE, arity=None)
def prelu(x, weight):
    """x for x > 0, weight·x otherwise (at 0 too, PyTorch's slope there), as
    torch.nn.functional.prelu: weight, of x's dtype, holds one slope (0-d or (1,)) or one per
    channel, C = x.shape[1] (x of two or more axes; else one). The second derivatives at 0
    are those of the first (PyTorch's double backward takes the side x ≥ 0 there)."""
    x = _floating(x, "prelu")
    _, weight = leaf.lift_all([x, weight])
    channels = x.shape[1] if x.ndim >= 2 else 1
    if weight.ndim > 1 or (weight.shape or (1,))[0] not in (1, channels):
        raise GraphError(f"prelu: weight {describe(weight)} has shape "
                         f"{format_shape(weight.shape)}; {describe(x)} of shape "
                         f"{format_shape(x.shape)} takes one slope or {channels} (one per "
                         f"channel, axis 1)")
    if weight.dtype != x.dtype:  # PyTorch refuses to promote here too
        raise GraphError(f"prelu: weight {describe(weight)} has dtype {weight.dtype}, not the "
                         f"dtype of {describe(x)}, {x.dtype}; convert it with gd.cast")
    if weight.shape == (1,):  # one slope: 0-d, so that a 0-d x stays 0-d
        weight = mv.reshape(weight, ())
    elif weight.ndim:
        weight = mv.reshape(weight, (channels,) + (1,) * (x.ndim - 2))
    return _named(ew.WHERE(ew.GREATER(x, 0), x, x * weight), "prelu")


# |x| as max(x, −x): SymPy differentiates that for any symbol, Abs only for a real one
@composite("softsign", "softsign", "d softsign/dx = 1/(1 + |x|)²", ew.DIV,
           sym=lambda x: x / (1 + sympy.Max(x, -x)))
def softsign(x):
    """x/(1 + |x|), PyTorch's formula (abs'(0) = 0)."""
    x = _floating(x, "softsign")
    return _named(x / (ew.ABS(x) + 1), "softsign")


@composite("glu", "glu", "dL/da = σ(b)·g, dL/db = a·σ(b)(1 − σ(b))·g (a, b: x's halves)",
           ew.MUL)
def glu(x, axis=None, dim=None):
    """a·σ(b), a and b the first and second halves of x along `axis` (or `dim`, PyTorch's
    name; the last axis if neither is given)."""
    x = _floating(x, "glu")
    a = one_axis(x, axis, dim, "glu")
    size = x.shape[a]
    if size is None or size % 2:
        raise GraphError(f"glu of {describe(x)}: the size along axis {a} must be even and "
                         f"known at declaration, got {size}")
    lead = (slice(None),) * a
    first, second = x[lead + (slice(0, size // 2),)], x[lead + (slice(size // 2, None),)]
    return _named(first * ew.SIGMOID(second), "glu")
