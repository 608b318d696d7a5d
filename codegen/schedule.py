"""Scheduling: which nodes get a statement (a kernel) and which fuse into their consumer.

A node fuses into its consumer when it is elementwise or a view (`OpDef.view`), has exactly one
use, and the target lets it fuse there. Everything else (structured ops, shared values,
outputs) is its own kernel. Fused regions are capped at the target's `max_fused` nodes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from graphdl.ir import topological_order


@dataclass
class Kernel:
    """One statement: computes `node`, with the nodes in `fused` inlined into it."""

    node: object
    fused: list = field(default_factory=list)


def fusible(node):
    return node.op.kind == "elementwise" or node.op.view


@dataclass
class Schedule:
    kernels: list  # the statements, in execution order
    fused: set  # ids of the nodes inlined into a consumer's statement
    uses: Counter  # uses of each node id (roots count as a use)


def schedule(roots, target, fuse=True):
    """The `Schedule` of `roots`: which nodes get a statement and which fuse into their user
    (`target`: a `codegen.lower.Target`, which says where fusing is allowed and how much)."""
    order = topological_order(roots)
    uses = Counter(id(r) for r in roots)
    consumer = {}
    for node in order:
        for pos, inp in enumerate(node.inputs):
            uses[id(inp)] += 1
            consumer[id(inp)] = (node, pos)
    fused_ids, size, kernels = set(), {}, []
    for node in order:
        if node.op.kind == "leaf":
            continue
        size[id(node)] = 1 + sum(size.get(id(i), 0) for i in node.inputs if id(i) in fused_ids)
        if (fuse and fusible(node) and uses[id(node)] == 1 and id(node) in consumer
                and size[id(node)] < target.max_fused
                and target.fuses_into(*consumer[id(node)])):
            fused_ids.add(id(node))
            continue
        kernels.append(Kernel(node, _region(node, fused_ids)))
    return Schedule(kernels, fused_ids, uses)


def _region(node, fused_ids):
    """The fused nodes inlined into `node`'s statement, in evaluation order."""
    region, stack = [], [i for i in node.inputs if id(i) in fused_ids]
    while stack:
        n = stack.pop()
        region.append(n)
        stack.extend(i for i in n.inputs if id(i) in fused_ids)
    return region[::-1]
