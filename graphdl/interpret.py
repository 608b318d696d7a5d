"""The reference interpreter: evaluates a graph node by node with each op's NumPy reference.

It is the oracle every backend is tested against, so it stays simple: no fusion, no optimizer.
By default it runs the graph the compiler runs before optimizing (custom ops inlined, the
`stabilize` rewrites applied), so that it overflows exactly where compiled code does; with
`stabilize=False` it evaluates the graph exactly as declared.
"""

from __future__ import annotations

import numpy as np

from graphdl import feeds as fd
from graphdl.ir import Node, describe, graph_inputs, topological_order
from graphdl.ops import leaf
from graphdl.passes.optimize import prepare


def evaluate(outputs, feeds=None, *, stabilize=True, check_finite=False, **kwargs):
    """Values of `outputs` (a node or a list of nodes) for the given inputs, by name.

    stabilize: evaluate the stable graph `gd.compile` runs (the sigmoid, softplus and tanh
        circuits rewritten so that nothing overflows); False: the graph exactly as declared.
    check_finite: the first node whose value holds NaN or Inf raises FloatingPointError.
    """
    single = isinstance(outputs, Node)
    outs = [outputs] if single else list(outputs)
    inputs = list(fd.unique_inputs(graph_inputs(outs)).values())
    arrays = {n.name: a for n, a in zip(inputs, fd.bind(inputs, fd.merge(feeds, kwargs)))}
    if stabilize:  # on the graph specialized to the fed shapes, as compiled code
        outs, _ = prepare(outs, {name: a.shape for name, a in arrays.items()}, optimize=False)
    values = {id(n): arrays[n.name] for n in graph_inputs(outs)}
    run(outs, values, check_finite)
    results = [values[id(o)] for o in outs]
    return results[0] if single else results


def run(outs, values, check_finite=False):
    """Fill `values` (node id -> array, inputs pre-bound) for every node `outs` needs."""
    for node in topological_order(outs, known=values):
        if id(node) in values:
            continue
        if node.op is leaf.CONST:
            value = node.attrs["value"].array
        else:
            value = np.asarray(node.op.impl(*(values[id(i)] for i in node.inputs), **node.attrs))
            if value.dtype != node.dtype:  # NumPy may widen (e.g. int sums); the IR's dtype rules
                value = value.astype(node.dtype)
        if check_finite and value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise FloatingPointError(f"{describe(node, 2)} (node {node.id}) produced NaN or Inf")
        values[id(node)] = value
