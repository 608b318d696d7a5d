"""The `stabilize` phase: rewrite overflow-prone patterns into stable primitives before codegen.

In float32, the lecture's sigmoid circuit `1/(1 + exp(-x))` overflows at x = -100 and its
gradient `g·r²·e^-x` becomes 0·inf = NaN. These rules recognise such patterns, in the forward
graph and in the gradient graphs autodiff builds from them, and replace them with sigmoid,
softplus and tanh primitives. Unlike the optimizer's rules these change values (to the
accurate ones), so they run whether or not the graph is optimized.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from graphdl.ops import elementwise as ew
from graphdl.ops import leaf
from graphdl.ops import movement as mv
from graphdl.passes.rewrite import Rule

DEPTH = 8  # how far below a node the sigmoid algebra reads


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
ONE = Fraction(1)


def _argument(w):
    """(b, ±1) for w = ±b: σ(b) and σ(-b) are the two variables of the class b."""
    return (w.inputs[0], -1) if w.op is ew.NEG else (w, 1)


def _number(node):
    """The finite number a scalar constant (or a broadcast of one) holds, as a Fraction."""
    base = constant_base(node)
    if base is None or base.attrs["value"].array.size != 1:
        return None
    value = float(base.attrs["value"].array.item())
    return Fraction(value) if math.isfinite(value) else None


# A monomial is a sorted tuple of ((kind, id), exponent): kind "s" σ(b), "c" σ(-b) (exponents of
# either sign), "o" an opaque numerator, "d" an opaque denominator (kept apart: no x/x = 1). A
# polynomial is a dict monomial -> Fraction with no zero coefficient.

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


class _Reading:
    """The region below `root` (arithmetic nodes of its dtype, DEPTH levels) as a polynomial,
    with the hazards met on the way: e^±b and 1 + e^±b of a class, σ in a denominator."""

    def __init__(self, root):
        self.root = root
        self.nodes = {}  # id -> node, for every variable: class arguments b, opaque factors
        self.classes = set()  # ids of the arguments of σ and of 1 + e^w (not of e^w alone)
        self._scan(root, DEPTH, {})

    def _arithmetic(self, node):
        return node.op in ARITHMETIC and node.dtype == self.root.dtype

    def _scan(self, node, depth, seen):
        if seen.get(node.id, -1) >= depth:
            return
        seen[node.id] = depth
        w = node.inputs[0] if node.op is ew.SIGMOID else exp_plus_one(node)
        if w is not None:
            self.classes.add(_argument(w)[0].id)
        elif depth and self._arithmetic(node):
            for i in node.inputs:
                self._scan(i, depth - 1, seen)

    def read(self):
        """(polynomial, hazards): each hazard an atom that can overflow, counted once."""
        return self._read(self.root, DEPTH, {})

    def _read(self, node, depth, memo):
        key = (node.id, depth)
        if key not in memo:
            read = self._atom(node)
            if read is None and depth and self._arithmetic(node):
                read = self._combine(node, [self._read(i, depth - 1, memo) for i in node.inputs])
            if read is None or len(read[0]) > MAX_TERMS:
                read = self._opaque(node)
            memo[key] = read
        return memo[key]

    def _opaque(self, node):
        self.nodes[node.id] = node
        return {((("o", node.id), 1),): ONE}, frozenset()

    def _atom(self, node):
        """σ(±b), e^±b and 1 + e^±b of a class as monomials; a scalar constant as a number."""
        value = _number(node)
        if value is not None:
            return {(): value}, frozenset()
        w = exp_plus_one(node)
        if w is None and node.op in (ew.SIGMOID, ew.EXP):
            w = node.inputs[0]
        if w is None or _argument(w)[0].id not in self.classes:
            return None
        b, sign = _argument(w)
        self.nodes[b.id] = b
        s, c = (("s", b.id), ("c", b.id))[::sign]
        if node.op is ew.SIGMOID:
            return {((s, 1),): ONE}, frozenset()
        if node.op is ew.EXP:  # e^b = σ(b)/σ(-b)
            return {tuple(sorted([(s, 1), (c, -1)])): ONE}, frozenset([node.id])
        return {((c, -1),): ONE}, frozenset([node.id])  # 1 + e^b = 1/σ(-b)

    def _combine(self, node, reads):
        if node.op is ew.NEG:
            p, hazards = reads[0]
            return {m: -a for m, a in p.items()}, hazards
        if node.op is ew.RECIPROCAL:
            reads = [({(): ONE}, frozenset()), *reads]
        (p, p_hazards), (q, q_hazards) = reads
        if node.op is ew.ADD or node.op is ew.SUB:
            return _sum(p, q, 1 if node.op is ew.ADD else -1), p_hazards | q_hazards
        if node.op is ew.MUL:
            return _product(p, q), p_hazards | q_hazards
        if len(q) != 1:  # a quotient by a sum: the sum is one opaque factor
            q, q_hazards = self._opaque(node.inputs[-1])
        ((m, a),) = q.items()
        in_denominator = {("den", *k) for k, e in m if k[0] in "sc" and e > 0}
        return _product(p, {_inverse(m): 1 / a}), p_hazards | q_hazards | in_denominator


def _common(poly):
    """The monomial dividing every term: each variable's least exponent (0 where absent)."""
    keys = {k for m in poly for k, _ in m}
    return tuple(sorted((k, e) for k in keys if (e := min(dict(m).get(k, 0) for m in poly))))


def _divided(poly, m):
    """poly / m for a monomial m dividing every term (exponents subtracted, kinds kept)."""
    negated = tuple((k, -e) for k, e in m)
    return {_times(t, negated): a for t, a in poly.items()}


def _in_s(poly, b):
    """poly with σ(-b) written 1 - σ(b) (its exponents of σ(-b) are not negative)."""
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
        partial = Fraction(0)
        for k in range(max(coefficients)):
            partial += coefficients.get(k, 0)
            if partial:
                out[_times(rest, ((s, k),))] = partial
    return out


def _factored(poly, classes):
    """(prefactor monomial, remaining polynomial, how many s or 1 - s left the sums)."""
    prefactor = _common(poly)
    rest, extracted = _divided(poly, prefactor), 0
    for b in sorted(classes):
        rest = _in_s(rest, b)
        for kind, divide in (("s", _without_s), ("c", _without_one_minus_s)):
            while (quotient := divide(rest, b)) is not None:
                rest, extracted = quotient, extracted + 1
                prefactor = _times(prefactor, (((kind, b), 1),))
    return prefactor, rest, extracted
def _doubled(u):
    """x if u is 2·x (either order), else None."""
    if u.op is not ew.MUL:
        return None
    a, b = u.inputs
    return b if is_const(a, 2) else a if is_const(b, 2) else None


def _tanh_pairs(m, nodes, dtype):
    """σ(2x)·σ(-2x) = (1 - tanh²x)/4, as factor nodes, and m without those pairs: the lecture's
    tanh differentiated through its sigmoid gets the textbook rule, sharing the forward tanh."""
    exponents, factors = dict(m), []
    for (kind, b), e in m:
        x = _doubled(nodes[b]) if kind == "s" else None
        pairs = min(e, exponents.get(("c", b), 0)) if x is not None else 0
        if pairs > 0:
            t = ew.TANH(x)
            factors += [(1 - t * t) * leaf.constant(0.25, dtype)] * pairs
            exponents[("s", b)] -= pairs
            exponents[("c", b)] -= pairs
    return tuple(sorted((k, e) for k, e in exponents.items() if e)), factors


def _same(node):
    return node


def _monomial_node(m, coefficient, nodes, dtype, factors=()):
    """coefficient · m · Π factors as nodes: the numerator's factors multiplied, then divided."""
    above, below = list(factors), []
    for (kind, i), e in m:
        node = {"s": ew.SIGMOID, "c": lambda b: ew.SIGMOID(ew.NEG(b))}.get(kind, _same)(nodes[i])
        (below if kind == "d" or e < 0 else above).extend([node] * abs(e))
    out = None
    for f in above:
        out = f if out is None else ew.MUL(out, f)
    if out is None or abs(coefficient) != 1:
        number = leaf.constant(float(abs(coefficient)), dtype)
        out = number if out is None else ew.MUL(out, number)
    for f in below:
        out = ew.DIV(out, f)
    return ew.NEG(out) if coefficient < 0 else out


def _written(prefactor, rest, nodes, dtype):
    """prefactor · Σ rest as nodes: the sum first, its terms in a fixed order."""
    prefactor, factors = _tanh_pairs(prefactor, nodes, dtype)
    if len(rest) == 1:
        ((m, a),) = rest.items()
        return _monomial_node(_times(prefactor, m), a, nodes, dtype, factors)
    total = None
    for m, a in sorted(rest.items()):
        if total is None:
            total = _monomial_node(m, a, nodes, dtype)
        else:
            term = _monomial_node(m, abs(a), nodes, dtype)
            total = ew.ADD(total, term) if a > 0 else ew.SUB(total, term)
    if not prefactor and not factors:
        return total
    return ew.MUL(total, _monomial_node(prefactor, ONE, nodes, dtype, factors))


def _algebra(node):
    """node rewritten by the sigmoid algebra where that removes a hazard or a cancellation."""
    if node.dtype.kind != "f" or exp_plus_one(node) is not None:
        return None
    reading = _Reading(node)
    if not reading.classes:
        return None
    poly, hazards = reading.read()
    if not poly:
        return None
    prefactor, rest, extracted = _factored(poly, reading.classes)
    risky = {k for m in (prefactor, *rest) for k, e in m if k[0] in "sc" and e < 0}
    if not extracted and len(risky) >= len(hazards):
        return None
    out = _written(prefactor, rest, reading.nodes, node.dtype)
    return out if out.shape == node.shape and out.dtype == node.dtype else None


RULES = [
    Rule("softplus_from_log", ew.LOG, _log),
    Rule("tanh_from_sigmoid", ew.SUB, _tanh),
    Rule("cancel_double_negation", ew.NEG, double_negation),
    *(Rule("sigmoid_algebra", op, _algebra) for op in ARITHMETIC),
]
