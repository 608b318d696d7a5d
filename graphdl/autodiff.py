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
    relevant = depends_on(order, wrt)

    def backprop(node, g):
        return [(k, gi) for k, _, gi in edge_gradients(node, g, relevant)]

    totals = reverse_sweep(order, leaf.constant(1, y.dtype), backprop, ew.ADD)
    grads = [totals[id(w)] if id(w) in totals else leaf.zeros_like(w) for w in wrt]
    for w, g in zip(wrt, grads):
        if w.name is not None and g.name is None and g.op.kind != "leaf":
            g.name = "d" + w.name
    return grads[0] if single else grads


def reverse_sweep(order, seed, backprop, add):
    """The reverse sweep every gradient in graphdl is computed by: symbolic (`grad`, where
    gradients are nodes) or numeric (the circuit view, where they are arrays).

    `order`: a topological order ending with the output; `seed`: the output's gradient.
    Visits the nodes in reverse; a node's gradient is the `add` of its consumers' contributions
    (fan-out forward is a sum backward); `backprop(node, gradient)` returns the contributions
    `[(input position, contribution)]` the node sends back. Returns node id -> gradient, for the
    nodes that received one.
    """
    y = order[-1]
    pending = {id(y): [seed]}
    totals = {}
    for node in reversed(order):
        parts = pending.pop(id(node), None)
        if parts is None:
            continue
        g = parts[0]
        for p in parts[1:]:
            g = add(g, p)
        totals[id(node)] = g
        for k, gi in backprop(node, g):
            pending.setdefault(id(node.inputs[k]), []).append(gi)
    return totals


def edge_gradients(node, g, relevant=None):
    """`node`'s pullback applied to the gradient node `g`: `[(position, input, gradient node)]`,
    each gradient fitted to its input's shape and dtype (see `fit`). Inputs the pullback gives
    no gradient, and inputs outside `relevant` (a set of node ids, when given), are left out."""
    if node.op.pullback is None or not node.inputs:
        return []
    return [(k, inp, fit(gi, inp, node))
            for k, (inp, gi) in enumerate(zip(node.inputs, node.op.pullback(node, g)))
            if gi is not None and (relevant is None or id(inp) in relevant)]


def fit(gi, inp, node):
    """The gradient `gi` that `node` sends to its input `inp`, summed back to `inp`'s shape where
    `node` broadcast it, and cast to `inp`'s dtype."""
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


def depends_on(order, wrt):
    """Ids of the nodes in `order` that depend on some node of `wrt` (only they need gradients).
    Nothing depends on anything through an array with no elements: it holds no values to vary.
    (A path through one would send back a sum over nothing, 0, times whatever else the chain
    rule multiplies in: where that is infinite, as 1/count for the mean of nothing, the 0
    became NaN.)"""
    relevant = {id(w) for w in wrt}
    for node in order:
        if any(id(i) in relevant and 0 not in i.shape for i in node.inputs):
            relevant.add(id(node))
    return relevant
