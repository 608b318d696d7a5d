"""Composites recognized in a graph, to be drawn and narrated as one gate.

A composite declared in `graphdl.ops.composite` (`sigmoid`, `softmax`, a loss) is recognized by
re-applying it to candidate inputs: nodes are hash-consed, so `sigmoid(x) is node` holds exactly
when `node` is the sigmoid circuit of `x`. A one-hot encoding is recognized the same way; a named
node stands for the unnamed nodes only it uses.
"""

from __future__ import annotations

from graphdl.errors import GraphError
from graphdl.ir import Node, topological_order
from graphdl.ops import elementwise as ew
from graphdl.ops import leaf
from graphdl.ops import movement as mv
from graphdl.ops.composite import one_hot, one_hot_mask
from graphdl.views.labels import is_const_like


def _ancestors(out, depth):
    """Non-constant nodes within `depth` steps above `out`, nearest first."""
    seen, frontier, found = {id(out)}, [out], []
    for _ in range(depth):
        nxt = []
        for n in frontier:
            for i in n.inputs:
                if id(i) not in seen and not is_const_like(i):
                    seen.add(id(i))
                    found.append(i)
                    nxt.append(i)
        frontier = nxt
    return found


def match_composite(composite, out, depth=14):
    """The arguments `args` with `composite.fn(*args) is out`, searched among the nodes within
    `depth` steps above `out`, or None. Of several (the one-hot rows and the integer labels
    both rebuild a loss), the one spanning the most nodes."""
    cands = _ancestors(out, depth)
    if composite.arity == 1:
        tuples = ((x,) for x in cands)
    else:
        tuples = ((x, y) for x in cands for y in cands if x is not y)
    found = []
    for args in tuples:
        if _rebuilds(composite, args, out):
            found.append(list(args))
            if composite.arity == 1:
                break
    if not found:
        return None
    return max(found, key=lambda a: len(region_nodes(out, a) or ()))


def _rebuilds(composite, args, out):
    try:
        return composite.fn(*args) is out
    except (GraphError, TypeError, ValueError, IndexError, KeyError):  # wrong dtypes or shapes
        return False


def region_nodes(out, args):
    """Ids of the nodes computing `out` from `args` (constants inside included)."""
    stop = {id(a) for a in args}
    nodes = set()
    stack = [out]
    while stack:
        n = stack.pop()
        if id(n) in nodes or id(n) in stop:
            continue
        if n.op is leaf.INPUT:
            return None  # `out` depends on an input that is not one of `args`
        nodes.add(id(n))
        stack.extend(n.inputs)
    return nodes


def dominated(out, users):
    """The generic region of a named node: `out` and the unnamed nodes only it uses."""
    region = {id(out)}
    candidates = sorted(topological_order([out]), key=lambda n: -n.id)
    for n in candidates:
        if n is out or n.op is leaf.INPUT or (n.name is not None and not is_const_like(n)):
            continue
        us = users.get(id(n), [])
        if us and all(id(u) in region for u in us):
            region.add(id(n))
    # the region's arguments: nodes outside it feeding nodes inside, in order of appearance
    args, seen = [], set()
    for n in sorted((m for m in topological_order([out]) if id(m) in region), key=lambda m: m.id):
        for i in n.inputs:
            if id(i) not in region and id(i) not in seen and not is_const_like(i):
                seen.add(id(i))
                args.append(i)
    return region, args


def one_hot_regions(outputs):
    """A `(label, node, [labels])` region for every `one_hot(labels, n)` in the graph: narrated
    as that one gate, not as the comparison with 0..n-1 it is built from."""
    outputs = [outputs] if isinstance(outputs, Node) else list(outputs)
    found = []
    for node in topological_order(outputs):
        labels = _one_hot_labels(node)
        if labels is not None:
            found.append((f"one_hot(·, {node.shape[-1]})", node, [labels]))
    return found


def _one_hot_labels(node):
    """The labels `node` is the one-hot encoding (or boolean one-hot mask) of, or None. one_hot
    is cast(labels[..., None] == classes) over checked labels (checked by one_hot itself, or
    already by a loss): the checked labels three (two) inputs up (a loss's check: drawn by
    what it checks), or what they check, confirmed by rebuilding the encoding from it
    (hash-consing makes `is` exact)."""
    if node.ndim == 0 or node.shape[-1] is None or node.op not in (ew.CAST, ew.EQUAL):
        return None
    checked = node
    for _ in range(3 if node.op is ew.CAST else 2):  # the boolean mask is one step shorter
        if not checked.inputs:
            return None
        checked = checked.inputs[0]
    if checked.op is not mv.CHECK_INDEX:
        return None
    for labels in (checked, checked.inputs[0]):
        try:
            rebuilt = (one_hot(labels, node.shape[-1], node.dtype) if node.op is ew.CAST
                       else one_hot_mask(labels, node.shape[-1]))
        except GraphError:
            continue
        if rebuilt is node:
            return labels
    return None
