"""The reference interpreter: evaluates a graph node by node with each op's NumPy reference.

It is the oracle every backend is tested against, so it stays simple: no fusion, no rewrites.
"""

from __future__ import annotations

import numpy as np

from graphdl import feeds as fd
from graphdl.ir import Node, describe, graph_inputs, topological_order


def evaluate(outputs, feeds=None, *, check_finite=False, **kwargs):
    """Values of `outputs` (a node or a list of nodes) for the given inputs, by name.

    With `check_finite`, the first node whose value holds NaN or Inf raises FloatingPointError.
    """
    single = isinstance(outputs, Node)
    outs = [outputs] if single else list(outputs)
    inputs = list(fd.unique_inputs(graph_inputs(outs)).values())
    values = dict(zip(map(id, inputs), fd.bind(inputs, fd.merge(feeds, kwargs))))
    run(outs, values, check_finite)
    results = [values[id(o)] for o in outs]
    return results[0] if single else results


def run(outs, values, check_finite=False):
    """Fill `values` (node id -> array, inputs pre-bound) for every node `outs` needs."""
    for node in topological_order(outs, known=values):
        if id(node) in values:
            continue
        if node.op.name == "const":
            value = node.attrs["value"].array
        else:
            value = np.asarray(node.op.impl(*(values[id(i)] for i in node.inputs), **node.attrs))
            if value.dtype != node.dtype:  # NumPy may widen (e.g. int sums); the IR's dtype rules
                value = value.astype(node.dtype)
        if check_finite and value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise FloatingPointError(f"{describe(node, 2)} (node {node.id}) produced NaN or Inf")
        values[id(node)] = value
