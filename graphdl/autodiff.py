"""Reverse-mode differentiation as a graph transform: `grad` returns new nodes, no tape.

One sweep over the graph in reverse topological order: each node's incoming gradient
contributions are summed (fan-out in the forward graph is a sum here), handed to the op's
pullback, and the results are summed back down to each input's shape where the op broadcast.
"""

from __future__ import annotations

from graphdl.errors import GraphError
from graphdl.ir import Node, describe, format_shape, topological_order
from graphdl.ops import elementwise as ew
from graphdl.ops import leaf
from graphdl.ops import movement as mv


def grad(y, wrt):
    """Gradients of the scalar `y` with respect to each node of `wrt` (inputs or intermediates).

    A node `y` does not depend on gets zeros of its shape. Identical subexpressions are one node,
    so the gradient with respect to such a node sums over all of its uses.
    """
    single = isinstance(wrt, Node)
    wrt = [wrt] if single else list(wrt)
    _check(y, wrt)
    order = topological_order([y])
    relevant = _depends_on(order, wrt)
    contributions = {id(y): [leaf.constant(1, y.dtype)]}
    totals = {}
    for node in reversed(order):
        parts = contributions.pop(id(node), None)
        if parts is None:
            continue
        g = parts[0]
        for p in parts[1:]:
            g = ew.ADD(g, p)
        totals[id(node)] = g
        if node.op.pullback is None:
            continue
        for inp, gi in zip(node.inputs, node.op.pullback(node, g)):
            if gi is None or id(inp) not in relevant:
                continue
            contributions.setdefault(id(inp), []).append(_fit(gi, inp, node))
    grads = [totals[id(w)] if id(w) in totals else leaf.zeros_like(w) for w in wrt]
    for w, g in zip(wrt, grads):
        if w.name is not None and g.name is None and g.op.kind != "leaf":
            g.name = "d" + w.name
    return grads[0] if single else grads


def _fit(gi, inp, node):
    """Sum a broadcast gradient back to the input's shape and dtype."""
    unknown = None in inp.shape and len(node.inputs) > 1
    if node.op.broadcasts and (gi.shape != inp.shape or unknown):
        gi = mv.sum_to(gi, inp)
    if gi.dtype != inp.dtype:
        gi = ew.cast(gi, inp.dtype)
    return gi


def _check(y, wrt):
    if not isinstance(y, Node):
        raise GraphError(f"grad: y must be a graph node, got {y!r}")
    if y.shape != ():
        raise GraphError(
            f"grad: {describe(y)} has shape {format_shape(y.shape)}; grad needs a scalar. "
            "Reduce it first (gd.sum or gd.mean)"
        )
    if y.dtype.kind != "f":
        raise GraphError(f"grad: {describe(y)} has dtype {y.dtype}; grad needs floating point")
    for i, w in enumerate(wrt):
        if not isinstance(w, Node):
            raise GraphError(f"grad: wrt[{i}] is {w!r}, not a graph node")
        if w.dtype.kind != "f":
            raise GraphError(
                f"grad: cannot differentiate with respect to {describe(w)} of dtype {w.dtype}"
            )


def _depends_on(order, wrt):
    """Ids of the nodes in `order` that depend on some node of `wrt` (only they need gradients)."""
    relevant = {id(w) for w in wrt}
    for node in order:
        if any(id(i) in relevant for i in node.inputs):
            relevant.add(id(node))
    return relevant
