"""The `stabilize` phase: rewrite overflow-prone patterns into stable primitives before codegen.

In float32, the lecture's sigmoid circuit `1/(1 + exp(-x))` overflows at x = -100 and its
gradient `g·r²·e^-x` becomes 0·inf = NaN. These rules recognise such patterns, in the forward
graph and in the gradient graphs autodiff builds from them (of any order), and replace them with
sigmoid, softplus and tanh primitives: log(1 + e^w) and log σ by softplus, 2σ(2x) - 1 by tanh,
and every product, quotient and sum over σ, e^w and 1 + e^w by the sigmoid algebra below.
Unlike the optimizer's rules these change values (to the accurate ones), so they run whether
or not the graph is optimized."""

from __future__ import annotations

import math
import weakref
from fractions import Fraction
from typing import NamedTuple

import numpy as np

from graphdl.ops import elementwise as ew
from graphdl.ops import leaf
from graphdl.ops import movement as mv
from graphdl.passes.rewrite import Rule


def constant_base(node):
    """The constant node is, or is a broadcast of (folding leaves uniform results so), or None."""
    if node.op is mv.BROADCAST_TO:
        node = node.inputs[0]
    return node if node.op is leaf.CONST else None


def is_const(node, value):
    """Whether node is a constant (or a broadcast of one) whose every element equals value."""
    base = constant_base(node)
    if base is None:
        return False
    array = base.attrs["value"].array
    return array.item() == value if array.size == 1 else bool(np.all(array == value))


def double_negation(node):
    """x for -(-x) (exact for every value), else None."""
    return node.inputs[0].inputs[0] if node.inputs[0].op is ew.NEG else None


def negate(w):
    return w.inputs[0] if w.op is ew.NEG else ew.NEG(w)


def exp_plus_one(node):
    """w if node is exp(w) + 1 (either order) with the shape of exp(w), else None."""
    if node.op is not ew.ADD:
        return None
    a, b = node.inputs
    e, one = (a, b) if a.op is ew.EXP else (b, a)
    if e.op is ew.EXP and is_const(one, 1) and e.shape == node.shape:
        return e.inputs[0]
    return None


def _log(node):
    x = node.inputs[0]
    w = exp_plus_one(x)
    if w is not None:  # log(1 + e^w) = softplus(w)
        return ew.SOFTPLUS(w)
    if x.op is ew.SIGMOID:  # log σ(z) = -softplus(-z)
        return ew.NEG(ew.SOFTPLUS(negate(x.inputs[0])))
    return None


def _tanh(node):  # 2·σ(2x) - 1 = tanh(x), the lecture's tanh
    a, one = node.inputs
    if a.op is not ew.MUL or not is_const(one, 1):
        return None
    two, s = a.inputs if a.inputs[1].op is ew.SIGMOID else a.inputs[::-1]
    if s.op is not ew.SIGMOID or not is_const(two, 2) or s.inputs[0].op is not ew.MUL:
        return None
    u, v = s.inputs[0].inputs
    x = v if is_const(u, 2) else u if is_const(v, 2) else None
    if x is None or x.shape != node.shape or x.dtype != node.dtype:
        return None
    return ew.TANH(x)


# ---------------------------------------------------------------- the sigmoid algebra
#
# A gradient graph built from the lecture's circuits multiplies sums by e^w and divides them by
# 1 + e^w, where every term holds a σ that cancels the overflow, but only in exact arithmetic:
# σ'' is a sum of σ² terms times e^-x, log σ''(-50) a difference that float32 rounds to 0.017
# instead of -1.9e-22. So below each arithmetic node the pass reads the expression as a
# polynomial in s = σ(b) and c = σ(-b) for each argument b of a sigmoid circuit (e^b = s/c,
# 1 + e^b = 1/c, then c = 1 - s), divides out the factors all terms share, including the s and
# 1 - s hidden in a sum (1 - c = s), and writes it back as powers of σ(±b) times a sum that
# vanishes at neither tail. Other nodes are opaque factors: x/x is never cancelled.

MAX_TERMS = 64  # a longer sum stays an opaque factor (products of sums multiply their terms)
ARITHMETIC = (ew.MUL, ew.DIV, ew.NEG, ew.ADD, ew.SUB, ew.RECIPROCAL)
ONE = 1  # coefficients are ints, Fractions only where not whole: ints are much faster


def _argument(w):
    """(b, ±1) for w = ±b: σ(b) and σ(-b) are the two variables of the class b."""
    return (w.inputs[0], -1) if w.op is ew.NEG else (w, 1)


def _number(node):
    """The finite number a scalar constant (or a broadcast of one) holds, exactly."""
    base = constant_base(node)
    if base is None or base.attrs["value"].array.size != 1:
        return None
    value = float(base.attrs["value"].array.item())  # 0 stays opaque: 0·inf is NaN
    return _exact(Fraction(value)) if math.isfinite(value) and value != 0 else None


def _exact(fraction):
    """A Fraction as an int where it is whole."""
    return fraction.numerator if fraction.denominator == 1 else fraction


# A monomial is a sorted tuple of ((kind, id), exponent): kind "s" σ(b), "c" σ(-b) (exponents of
# either sign), "o" an opaque numerator, "d" an opaque denominator (kept apart: no x/x = 1). A
# polynomial is a dict monomial -> coefficient (int or Fraction), none of them zero.

def _times(m, n):
    out = dict(m)
    for k, e in n:
        out[k] = out.get(k, 0) + e
    return tuple(sorted((k, e) for k, e in out.items() if e))


def _inverse(m):
    """1/m: σ exponents change sign, opaque numerators and denominators change places."""
    swap = {"s": "s", "c": "c", "o": "d", "d": "o"}
    return tuple(sorted(((swap[kind], i), -e if kind in "sc" else e) for (kind, i), e in m))


def _sum(p, q, sign=1):
    out = dict(p)
    for m, a in q.items():
        out[m] = out.get(m, 0) + sign * a
    return {m: a for m, a in out.items() if a}


def _product(p, q):
    out = {}
    for m, a in p.items():
        for n, b in q.items():
            k = _times(m, n)
            out[k] = out.get(k, 0) + a * b
    return {m: a for m, a in out.items() if a}


class _Reading(NamedTuple):
    """A node read as a polynomial, with what it met on the way: `hazards`, the atoms that can
    overflow (e^±b, 1 + e^±b, a σ in a denominator), and `anchored`, the classes b that a σ or
    a 1 + e^w names (an e^w in no such class is left an exponential)."""

    poly: dict
    hazards: frozenset = frozenset()
    anchored: frozenset = frozenset()


# Each node is read once, from its inputs' readings (bottom-up, the engine's order, so a node
# reads its inputs as already rewritten); both tables hold their nodes weakly.
_READINGS = weakref.WeakKeyDictionary()  # node -> _Reading, or None: nothing to read
_VARIABLES = weakref.WeakValueDictionary()  # id -> node, for every variable of a reading
_UNREAD = object()


def _read(node):
    """node as a _Reading, or None where no σ, e^w or 1 + e^w lies below it (through
    arithmetic of its dtype): it is then an opaque factor of what reads it."""
    reading = _READINGS.get(node, _UNREAD)
    if reading is not _UNREAD:
        return reading
    reading = _atom(node)
    if reading is None and node.op in ARITHMETIC:
        inputs = [_read(i) if i.dtype == node.dtype else None for i in node.inputs]
        if any(r is not None for r in inputs):
            reading = _combine(node, [r or _plain(i) for r, i in zip(inputs, node.inputs)])
    if reading is not None and len(reading.poly) > MAX_TERMS:
        reading = None
    _READINGS[node] = reading
    return reading


def _plain(node):
    """A node with nothing to read in it: a number, or an opaque factor."""
    value = _number(node)
    if value is not None:
        return _Reading({(): value})
    _VARIABLES[node.id] = node
    return _Reading({((("o", node.id), 1),): ONE})


def _atom(node):
    """σ(±b), e^±b and 1 + e^±b as monomials in σ(b) and σ(-b)."""
    w = exp_plus_one(node)
    if w is None and node.op in (ew.SIGMOID, ew.EXP) and node.dtype.kind == "f":
        w = node.inputs[0]
    if w is None:
        return None
    b, sign = _argument(w)
    _VARIABLES[b.id] = b
    s, c = (("s", b.id), ("c", b.id))[::sign]
    if node.op is ew.SIGMOID:
        return _Reading({((s, 1),): ONE}, anchored=frozenset([b.id]))
    if node.op is ew.EXP:  # e^b = σ(b)/σ(-b)
        return _Reading({tuple(sorted([(s, 1), (c, -1)])): ONE}, frozenset([node.id]))
    return _Reading({((c, -1),): ONE}, frozenset([node.id]), frozenset([b.id]))  # 1/σ(-b)


def _combine(node, readings):
    op = node.op
    if op is ew.NEG:
        (p,) = readings
        return _Reading({m: -a for m, a in p.poly.items()}, p.hazards, p.anchored)
    if op is ew.RECIPROCAL:
        readings = [_Reading({(): ONE}), *readings]
    p, q = readings
    if op is ew.ADD or op is ew.SUB:
        poly = _sum(p.poly, q.poly, 1 if op is ew.ADD else -1)
    elif op is ew.MUL:
        poly = _product(p.poly, q.poly)
    else:  # a quotient, by a monomial, or by a sum that stays one opaque factor
        q = q if len(q.poly) == 1 else _plain(node.inputs[-1])
        ((m, a),) = q.poly.items()
        poly = _product(p.poly, {_inverse(m): _exact(Fraction(1, a))})
        q = _Reading(q.poly, q.hazards | {("den", *k) for k, e in m if k[0] in "sc" and e > 0},
                     q.anchored)
    return _Reading(poly, p.hazards | q.hazards, p.anchored | q.anchored)


def _common(poly, skip):
    """The monomial dividing every term: each variable's least exponent (0 where absent),
    except the variables in `skip`."""
    keys = {k for m in poly for k, _ in m} - skip
    return tuple(sorted((k, e) for k in keys if (e := min(dict(m).get(k, 0) for m in poly))))


def _divided(poly, m):
    """poly / m for a monomial m dividing every term (exponents subtracted, kinds kept)."""
    negated = tuple((k, -e) for k, e in m)
    return {_times(t, negated): a for t, a in poly.items()}


def _in_s(poly, b):
    """poly with σ(-b) written 1 - σ(b) (its exponents of σ(-b) are not negative)."""
    if all(("c", b) not in dict(m) for m in poly):
        return poly
    out = {}
    for m, a in poly.items():
        rest = dict(m)
        k = rest.pop(("c", b), 0)
        for j in range(k + 1):
            term = _times(tuple(sorted(rest.items())), ((("s", b), j),))
            out[term] = out.get(term, 0) + a * math.comb(k, j) * (-1) ** j
    return {m: a for m, a in out.items() if a}


def _without_s(poly, b):
    """poly / σ(b) if σ(b) divides every term, else None."""
    s = ("s", b)
    if all(dict(m).get(s, 0) > 0 for m in poly):
        return _divided(poly, ((s, 1),))
    return None


def _without_one_minus_s(poly, b):
    """poly / (1 - σ(b)) if poly vanishes at σ(b) = 1, else None: for each group of terms
    equal but for their power of σ(b), Σ a_k s^k = (1 - s) Σ_k (a_0 + … + a_k) s^k."""
    s = ("s", b)
    groups = {}
    for m, a in poly.items():
        rest = dict(m)
        groups.setdefault(tuple(sorted(rest.items() - {(s, rest.get(s))})), {})[
            rest.get(s, 0)] = a
    if any(sum(g.values()) for g in groups.values()):
        return None
    out = {}
    for rest, coefficients in groups.items():
        partial = 0
        for k in range(max(coefficients)):
            partial += coefficients.get(k, 0)
            if partial:
                out[_times(rest, ((s, k),))] = partial
    return out


def _factored(reading):
    """(prefactor monomial, remaining polynomial, how many σ(b) or 1 - σ(b) left the sums),
    over the anchored classes; the others keep their σ(b)^k σ(-b)^-k, an exponential."""
    classes = {i for m in reading.poly for (kind, i), _ in m if kind in "sc"}
    skip = {(kind, b) for b in classes - reading.anchored for kind in "sc"}
    prefactor = _common(reading.poly, skip)
    rest, extracted = _divided(reading.poly, prefactor), 0
    for b in sorted(reading.anchored):
        rest = _in_s(rest, b)
        for kind, divide in (("s", _without_s), ("c", _without_one_minus_s)):
            while rest and (quotient := divide(rest, b)) is not None:
                rest, extracted = quotient, extracted + 1
                prefactor = _times(prefactor, (((kind, b), 1),))
    return prefactor, rest, extracted


def _parts(m):
    """The factors m is written with, as (kind, id, power): "o" an opaque node, "s" σ(b), "c"
    σ(-b), "e" e^b and "-e" e^-b (opposite powers of σ(b) and σ(-b)); power < 0 divides."""
    classes = {}
    parts = []
    for (kind, i), e in m:
        if kind in "sc":
            classes.setdefault(i, {"s": 0, "c": 0})[kind] = e
        else:
            parts.append(("o", i, e if kind == "o" else -e))
    for b, power in classes.items():
        a, c = power["s"], power["c"]
        if c < 0 < a:  # σ(b)^k / σ(-b)^k = e^kb
            k = min(a, -c)
            parts += [("e", b, k), ("s", b, a - k), ("c", b, c + k)]
        elif a < 0 < c:
            k = min(-a, c)
            parts += [("-e", b, k), ("s", b, a + k), ("c", b, c - k)]
        else:
            parts += [("s", b, a), ("c", b, c)]
    return [p for p in parts if p[2]]


def _risky(monomials):
    """The atoms writing these monomials would create that can overflow."""
    return {(kind, i) for m in monomials for kind, i, e in _parts(m)
            if kind in ("e", "-e") or e < 0}


def _factor_node(kind, i):
    """The node of a part: the opaque node, σ(±b) or e^±b."""
    b = _VARIABLES[i]
    if kind == "o":
        return b
    argument = ew.NEG(b) if kind in ("c", "-e") else b
    return ew.SIGMOID(argument) if kind in ("s", "c") else ew.EXP(argument)


def _monomial_node(m, coefficient, dtype):
    """coefficient · m as nodes: the numerator's factors multiplied, then divided."""
    above, below = [], []
    for kind, i, e in _parts(m):
        (above if e > 0 else below).extend([_factor_node(kind, i)] * abs(e))
    out = None
    for f in above:
        out = f if out is None else ew.MUL(out, f)
    if out is None or abs(coefficient) != 1:
        number = leaf.constant(float(abs(coefficient)), dtype)
        out = number if out is None else ew.MUL(out, number)
    for f in below:
        out = ew.DIV(out, f)
    return ew.NEG(out) if coefficient < 0 else out


def _written(prefactor, rest, dtype):
    """prefactor · Σ rest as nodes: the sum first, its terms in a fixed order."""
    if len(rest) == 1:
        ((m, a),) = rest.items()
        return _monomial_node(_times(prefactor, m), a, dtype)
    total = None
    for m, a in sorted(rest.items()):
        if total is None:
            total = _monomial_node(m, a, dtype)
        else:
            term = _monomial_node(m, abs(a), dtype)
            total = ew.ADD(total, term) if a > 0 else ew.SUB(total, term)
    return ew.MUL(total, _monomial_node(prefactor, ONE, dtype)) if prefactor else total


def _algebra(node):
    """node rewritten by the sigmoid algebra where that removes a hazard or a cancellation."""
    if node.dtype.kind != "f" or exp_plus_one(node) is not None:
        return None
    reading = _read(node)
    if reading is None or not reading.anchored or not reading.poly:
        return None
    if len(reading.poly) == 1:  # a monomial: nothing to factor, it is written as it stands
        ((m, a),) = reading.poly.items()
        if len(_risky([m])) >= len(reading.hazards):
            return None
        out = _monomial_node(m, a, node.dtype)
        return out if out.shape == node.shape and out.dtype == node.dtype else None
    prefactor, rest, extracted = _factored(reading)
    if not rest:  # σ(b) + σ(-b) - 1: zero only where b is finite
        return None
    monomials = [_times(prefactor, *rest)] if len(rest) == 1 else [prefactor, *rest]
    if not extracted and len(_risky(monomials)) >= len(reading.hazards):
        return None
    out = _written(prefactor, rest, node.dtype)
    return out if out.shape == node.shape and out.dtype == node.dtype else None


RULES = [
    Rule("softplus_from_log", ew.LOG, _log),
    Rule("tanh_from_sigmoid", ew.SUB, _tanh),
    Rule("cancel_double_negation", ew.NEG, double_negation),
    *(Rule("sigmoid_algebra", op, _algebra) for op in ARITHMETIC),
]
