"""The `stabilize` phase: rewrite overflow-prone patterns into stable primitives before codegen.

In float32, the lecture's sigmoid circuit `1/(1 + exp(-x))` overflows at x = -100 and its
gradient `g·r²·e^-x` becomes 0·inf = NaN. These rules recognise such patterns, in the forward
graph and in the gradient graphs autodiff builds from them, and replace them with sigmoid,
softplus and tanh primitives. Unlike the optimizer's rules these change values (to the
accurate ones), so they run whether or not the graph is optimized.
"""

from __future__ import annotations

import numpy as np

from graphdl.ops import elementwise as ew
from graphdl.ops import leaf
from graphdl.ops import movement as mv
from graphdl.passes.rewrite import Rule

DEPTH = 4  # how far into a product tree the product rules look


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


def is_negation(a, b):
    return (a.op is ew.NEG and a.inputs[0] is b) or (b.op is ew.NEG and b.inputs[0] is a)


def exp_plus_one(node):
    """w if node is exp(w) + 1 (either order) with the shape of exp(w), else None."""
    if node.op is not ew.ADD:
        return None
    a, b = node.inputs
    e, one = (a, b) if a.op is ew.EXP else (b, a)
    if e.op is ew.EXP and is_const(one, 1) and e.shape == node.shape:
        return e.inputs[0]
    return None


def _reciprocal(node):  # 1/(1 + e^w) = σ(-w)
    w = exp_plus_one(node.inputs[0])
    return None if w is None else ew.SIGMOID(negate(w))


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


def factors(node, depth=DEPTH):
    """node as sign · Π num / Π den, looking through mul, div and neg up to `depth` levels.

    The patterns sit within a few levels of the node (autodiff builds them from one gate's
    pullback), so a bounded look keeps the pass linear on long chains of products."""
    sign, num, den = 1, [], []
    stack = [(node, False, 0)]
    while stack:
        n, inverted, level = stack.pop()
        if level < depth and n.op is ew.MUL:
            stack += [(n.inputs[1], inverted, level + 1), (n.inputs[0], inverted, level + 1)]
        elif level < depth and n.op is ew.DIV:
            stack += [(n.inputs[1], not inverted, level + 1), (n.inputs[0], inverted, level + 1)]
        elif level < depth and n.op is ew.NEG:
            sign = -sign
            stack.append((n.inputs[0], inverted, level + 1))
        else:
            (den if inverted else num).append(n)
    return sign, num, den


def _exp_pairs(num, den):
    """e^w·σ(-w) = σ(w) and e^w/(1 + e^w) = σ(w): no inf·0 where e^w overflows."""
    changed = False
    for e in [f for f in num if f.op is ew.EXP]:
        w = e.inputs[0]
        partner = next((f for f in num if f.op is ew.SIGMOID and is_negation(f.inputs[0], w)), None)
        pool = num
        if partner is None:
            partner = next((d for d in den if d.op is ew.ADD and e in d.inputs
                            and exp_plus_one(d) is w), None)
            pool = den
        if partner is not None:
            num.remove(e)
            pool.remove(partner)
            num.append(ew.SIGMOID(w))
            changed = True
    return changed


def _sigmoid_ratios(num, den):
    """σ(u)/σ(u) = 1 (σ > 0), where float32 can underflow to 0/0."""
    changed = False
    for d in [d for d in den if d.op is ew.SIGMOID]:
        if d in num and len(num) > 1:  # checked here: den may hold d more often than num
            num.remove(d)
            den.remove(d)
            changed = True
    return changed


def _doubled(u):
    """x if u is 2·x (either order), else None."""
    if u.op is not ew.MUL:
        return None
    a, b = u.inputs
    return b if is_const(a, 2) else a if is_const(b, 2) else None


def _tanh_derivative(num, den):
    """σ(2x)·σ(-2x) = (1 - tanh²x)/4: the lecture's tanh differentiated through its sigmoid
    becomes the textbook rule, sharing the forward tanh."""
    for s in [f for f in num if f.op is ew.SIGMOID]:
        u = s.inputs[0]
        partner = next((f for f in num if f is not s and f.op is ew.SIGMOID
                        and is_negation(f.inputs[0], u)), None)
        if partner is None:
            continue
        x = _doubled(u)
        x = _doubled(partner.inputs[0]) if x is None else x
        if x is not None:
            t = ew.TANH(x)
            num.remove(s)
            num.remove(partner)
            num += [1 - t * t, leaf.constant(0.25, t.dtype)]
            return True
    return False


def _merge_constants(num, node):
    """Multiply the scalar constants of a product into one (dropped when it is 1)."""
    scalars = [f for f in num if f.op is leaf.CONST and f.ndim == 0]
    if len(scalars) < 2:
        return
    value = np.prod([f.attrs["value"].array.astype(np.float64) for f in scalars])
    for f in scalars:
        num.remove(f)
    if value != 1 or not num:
        num.append(leaf.constant(value, node.dtype))


PRODUCT_RULES = (_exp_pairs, _sigmoid_ratios, _tanh_derivative)


def _product(node):
    """Apply the product rules to the factors of a mul/div/neg tree; rebuild if any fired."""
    sign, num, den = factors(node)
    if not any(f.op is ew.SIGMOID or f.op is ew.EXP for f in num):
        return None
    changed = [rule(num, den) for rule in PRODUCT_RULES]
    if not any(changed):
        return None
    _merge_constants(num, node)
    out = num[0]
    for f in num[1:]:
        out = ew.MUL(out, f)
    for d in den:
        out = ew.DIV(out, d)
    out = ew.NEG(out) if sign < 0 else out
    return out if out.dtype == node.dtype else ew.cast(out, node.dtype)


RULES = [
    Rule("sigmoid_from_reciprocal", ew.RECIPROCAL, _reciprocal),
    Rule("softplus_from_log", ew.LOG, _log),
    Rule("tanh_from_sigmoid", ew.SUB, _tanh),
    Rule("cancel_double_negation", ew.NEG, double_negation),
    Rule("sigmoid_in_product", ew.MUL, _product),
    Rule("sigmoid_in_quotient", ew.DIV, _product),
    Rule("sigmoid_in_negation", ew.NEG, _product),
]
