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
from graphdl.rewrite import Rule

DEPTH = 4  # how far into a product tree the product rules look


def is_const(node, value):
    return node.op.name == "const" and bool(np.all(node.attrs["value"].array == value))


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


def _product(node):
    """In a product, e^w·σ(-w) and e^w/(1 + e^w) are both σ(w), and σ(u)/σ(u) is 1: no inf·0
    or 0/0 in gradients."""
    sign, num, den = factors(node)
    if not any(f.op is ew.EXP for f in num) and not any(d.op is ew.SIGMOID for d in den):
        return None
    changed = False
    for e in [f for f in num if f.op is ew.EXP]:
        w = e.inputs[0]
        partner = next((f for f in num if f.op is ew.SIGMOID and is_negation(f.inputs[0], w)), None)
        pool = num
        if partner is None:
            partner = next((d for d in den if d.op is ew.ADD and e in d.inputs
                            and exp_plus_one(d) is w), None)
            pool = den
        if partner is None:
            continue
        num.remove(e)
        pool.remove(partner)
        num.append(ew.SIGMOID(w))
        changed = True
    for d in [d for d in den if d.op is ew.SIGMOID and d in num]:  # σ > 0: σ/σ is exactly 1,
        if len(num) > 1:  # while in float32 it can underflow to 0/0
            num.remove(d)
            den.remove(d)
            changed = True
    if not changed:
        return None
    out = num[0]
    for f in num[1:]:
        out = ew.MUL(out, f)
    for d in den:
        out = ew.DIV(out, d)
    out = ew.NEG(out) if sign < 0 else out
    return out if out.dtype == node.dtype else ew.cast(out, node.dtype)


RULES = [
    Rule("sigmoid_from_reciprocal", "reciprocal", _reciprocal),
    Rule("softplus_from_log", "log", _log),
    Rule("tanh_from_sigmoid", "sub", _tanh),
    Rule("cancel_double_negation", "neg", lambda n: n.inputs[0].inputs[0]
         if n.inputs[0].op is ew.NEG else None),
    Rule("sigmoid_in_product", "mul", _product),
    Rule("sigmoid_in_quotient", "div", _product),
    Rule("sigmoid_in_negation", "neg", _product),
]
