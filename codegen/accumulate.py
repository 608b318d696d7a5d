"""Updates accumulated into their target: `W - s * (A @ B)` as one matrix product that adds into
W's memory (BLAS's `gemm` with alpha = -s, beta = 1), where a backend can. The product, its
scaled copy and the subtraction then never exist as arrays of their own: for an SGD step on a
large weight matrix that saves two passes over it and one temporary of its size.

The lowering asks this module which updates qualify; their operands become roots of the
schedule (computed like any statement, before the first write), and the backend writes the
product into the target in place of the usual subtraction.
"""

from __future__ import annotations

from dataclasses import dataclass

from graphdl.ir import topological_order
from graphdl.ops import elementwise as ew
from graphdl.ops import leaf
from graphdl.ops import matmul as mm


@dataclass(frozen=True)
class ProductUpdate:
    """`target -= scale * (a @ b)`, in place; `scale` is a 0-d node (a constant or not)."""

    target: object
    a: object
    b: object
    scale: object
    source: object  # the node the graph computes, `scale * (a @ b)`: for provenance


def product_updates(writes, outputs, aliases):
    """The subtracting writes ((target, source, subtract) triples) whose source is a scaled
    matrix product used nowhere else, as {target id: ProductUpdate}. `aliases(node)`: the
    inputs node's array may share memory with; an operand that may be an updated input is
    refused, since the product is formed while targets are being written."""
    roots = list(outputs) + [source for _, source, _ in writes]
    uses = _uses(roots)
    targets = {id(t) for t, _, _ in writes}
    found = {}
    for target, source, subtract in writes:
        scale, product = _scaled_product(source) if subtract else (None, None)
        if product is None or uses[id(source)] != 1 or uses[id(product)] != 1:
            continue
        a, b = product.inputs
        if not (a.ndim == b.ndim == 2 and a.dtype == b.dtype == product.dtype == target.dtype
                and target.dtype.kind == "f"):
            continue
        if any(id(i) in targets for operand in (a, b, scale) if operand is not None
               for i in aliases(operand)):
            continue
        found[id(target)] = ProductUpdate(target, a, b, scale, source)
    return found


def _scaled_product(node):
    """(scale, matmul) for `s * (a @ b)`, `(a @ b) * s` or `a @ b` (scale None: one)."""
    if node.op is mm.MATMUL:
        return None, node
    if node.op is ew.MUL:
        for s, p in (node.inputs, node.inputs[::-1]):
            if s.shape == () and p.op is mm.MATMUL and p.shape == node.shape:
                return s, p
    return None, None


def _uses(roots):
    """node id -> how many times it is read: by other nodes, and once per appearance as a root."""
    uses = {}
    for node in topological_order(roots):
        for i in node.inputs:
            uses[id(i)] = uses.get(id(i), 0) + 1
    for node in roots:
        uses[id(node)] = uses.get(id(node), 0) + 1
    return uses


def input_aliases(node, passthrough):
    """The graph inputs whose memory `node`'s array may be (through views, and elementwise
    ops whose formula is one of their arguments)."""
    if node.op is leaf.INPUT:
        return {node}
    if node.op.aliases or (node.op.kind == "elementwise" and passthrough(node)):
        return set().union(*(input_aliases(i, passthrough) for i in node.inputs))
    return set()
