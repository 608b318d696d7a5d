"""Updates accumulated into their target: rewrites of a lowered program (`lower.Program`) that
a backend registers on its `Target` (`rewrites`) for the writes it can do in place:

- `accumulate_products`: `W - s * (A @ B)` as one matrix product adding into W's memory
  (BLAS's `gemm` with alpha = -s, beta = 1): the product, its scaled copy and the subtraction
  never exist as arrays of their own (for an SGD step on a large weight matrix: two passes and
  a temporary saved);
- `accumulate_scatters`: `W - s * (scatter_add(g1, i1) + scatter_add(g2, i2) + ...)` (the
  gradient of `take`, an embedding lookup) as an indexed update of the rows the indices
  address: the step costs what the batch touches, not the size of the table (no dense zero
  gradient, no pass over W). Where a backend asks (`outer`), a g that is an outer product
  `coef * rows` (one number per index times a row shared along index axes: the gradient of a
  dot product of looked-up rows, as in word2vec or matrix factorization) is passed as its two
  factors, so that the rows addressed can be summed as a sparse matrix times `rows` without g
  ever existing.

Each rewrite puts a `ProductUpdate` or `ScatterUpdate` in place of every `Update` that
qualifies and lowers the program afresh (`lower.relowered`): the operands become roots of the
schedule (computed like any statement, before the first write), what only the update read (the
product, the dense gradient) is no longer computed, and the backend writes them into the target
in place of the usual subtraction.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from graphdl.codegen.lower import Update, passthrough, relowered
from graphdl.ir import topological_order
from graphdl.ops import elementwise as ew
from graphdl.ops import leaf
from graphdl.ops import matmul as mm
from graphdl.ops import movement as mv


class _Accumulated:
    """What the accumulated updates share."""

    @property
    def roots(self):
        """The nodes the write reads, computed before it: the operands and the scale."""
        return (*self.operands, *(() if self.scale is None else (self.scale,)))


@dataclass(frozen=True)
class ProductUpdate(_Accumulated):
    """`target -= scale * (a @ b)`, in place; `scale` is a 0-d node or None (one)."""

    target: object
    a: object
    b: object
    scale: object
    source: object  # the node the graph computes, `scale * (a @ b)`: for provenance

    @property
    def operands(self):
        return (self.a, self.b)


@dataclass(frozen=True)
class ScatterUpdate(_Accumulated):
    """`target -= scale * Σ scatter_add(g, indices)` along `axis`, touching only the rows the
    indices address; `terms` holds the (indices, g) node pairs, or (indices, rows, coef)
    triples for g = coef * rows (coef shaped indices.shape + (1,), rows (..., D) with each
    leading axis indices' or 1; axis 0 of a 2-D target only)."""

    target: object
    terms: tuple
    axis: int
    scale: object
    source: object

    @property
    def operands(self):
        return tuple(node for term in self.terms for node in term)


def accumulate_products(program):
    """The program with each update `W - s * (A @ B)` (2-D operands of W's dtype) that can be
    accumulated written as a `ProductUpdate`."""
    return _accumulate(program, _product)


def accumulate_scatters(outer=False):
    """The rewrite writing each update `W - s * Σ scatter_add(g, indices)` (one axis, W's
    dtype) that can be accumulated as a `ScatterUpdate`; `outer`: a term whose g is an outer
    product comes as its two factors (`_outer_factors`), for a backend that sums them without
    forming g."""
    return functools.partial(_accumulate, accumulation=functools.partial(_scatter, outer=outer))


def _accumulate(program, accumulation):
    """`program` with what `accumulation(target, source, uses)` makes of each subtracting
    `Update` in its place, lowered afresh; `program` itself where it makes nothing."""
    updates = program.updates
    if not any(isinstance(u, Update) and u.subtract for u in updates):
        return program
    uses = _uses([o.node for o in program.outputs] + [n for u in updates for n in u.roots])
    targets = {id(u.target) for u in updates}
    found = [_accumulated(u, accumulation, uses, targets) or u for u in updates]
    return program if all(f is u for f, u in zip(found, updates)) else relowered(program, found)


def _accumulated(update, accumulation, uses, targets):
    """The accumulation of a subtracting `update` of a float target, or None. Every node
    between the source and the operands must be read nowhere else (`uses`: reads by nodes
    and the program's roots), and no operand may share memory with an updated input
    (`targets`: their ids), since accumulation reads it while targets are being written."""
    if (not isinstance(update, Update) or not update.subtract or uses[id(update.source)] != 1
            or update.target.dtype.kind != "f"):
        return None
    found = accumulation(update.target, update.source, uses)
    if found is None or any(id(i) in targets for node in found.roots for i in input_aliases(node)):
        return None
    return found


def _product(target, source, uses):
    scale, body = _scaled(source, uses)
    if body.op is not mm.MATMUL:
        return None
    a, b = body.inputs
    if a.ndim == b.ndim == 2 and a.dtype == b.dtype == body.dtype == target.dtype:
        return ProductUpdate(target, a, b, scale, source)
    return None


def _scatter(target, source, uses, outer):
    scale, body = _scaled(source, uses)
    scatters = _summands(body, uses)
    if scatters and len({s.attrs["axis"] for s in scatters}) == 1 and all(
            s.dtype == target.dtype for s in scatters):
        terms = tuple(((s.inputs[1], *factors) if outer and (factors := _outer_factors(s, uses))
                       else (s.inputs[1], s.inputs[0])) for s in scatters)
        return ScatterUpdate(target, terms, scatters[0].attrs["axis"], scale, source)
    return None


def _scaled(node, uses):
    """(scale, body) for `s * body` or `body * s` with a 0-d s and a body read only there;
    (None, node) otherwise."""
    if node.op is ew.MUL:
        for s, body in (node.inputs, node.inputs[::-1]):
            if s.shape == () and body.shape == node.shape and uses[id(body)] == 1:
                return s, body
    return None, node


def _summands(node, uses):
    """The scatter_adds that `node` adds up (a tree of adds, each read once), or None."""
    if node.op is mv.SCATTER_ADD:
        return [node]
    if node.op is ew.ADD and all(i.shape == node.shape and uses[id(i)] == 1 for i in node.inputs):
        parts = [_summands(i, uses) for i in node.inputs]
        return None if None in parts else [s for part in parts for s in part]
    return None


def _outer_factors(scatter, uses):
    """(rows, coef) where the scatter_add's g (read only there) is coef * rows along axis 0 of
    a 2-D table: coef one number per index (shape indices.shape + (1,)), rows of the table's
    width whose leading axes are the indices' or 1 (broadcast_to's are looked through: they
    only spread the factors, and their input is computed wherever they are). None for any
    other g."""
    g, indices = scatter.inputs[0], scatter.inputs[1]
    if (scatter.attrs["axis"] != 0 or g.ndim != indices.ndim + 1 or g.op is not ew.MUL
            or uses[id(g)] != 1):
        return None
    for coef, rows in (g.inputs, g.inputs[::-1]):
        coef, rows = _unspread(coef), _unspread(rows)
        if (coef.shape == indices.shape + (1,) and rows.ndim == g.ndim
                and rows.shape[-1] == g.shape[-1] and coef.dtype == rows.dtype == g.dtype
                and all(r in (1, i) for r, i in zip(rows.shape, indices.shape))):
            return rows, coef
    return None


def _unspread(node):
    """The array a broadcast_to spreads without adding axes; else the node itself."""
    while node.op is mv.BROADCAST_TO and node.inputs[0].ndim == node.ndim:
        node = node.inputs[0]
    return node


def _uses(roots):
    """node id -> how many times it is read: by other nodes, and once per appearance as a root."""
    uses = {}
    for node in topological_order(roots):
        for i in node.inputs:
            uses[id(i)] = uses.get(id(i), 0) + 1
    for node in roots:
        uses[id(node)] = uses.get(id(node), 0) + 1
    return uses


def input_aliases(node):
    """The graph inputs whose memory `node`'s array may be (through views, and elementwise
    ops whose formula is one of their arguments; never an input read for its shape only)."""
    if node.op is leaf.INPUT:
        return {node}
    if node.op.aliases or (node.op.kind == "elementwise" and passthrough(node)):
        return set().union(*(input_aliases(i) for k, i in enumerate(node.inputs)
                             if k not in node.op.shape_only))
    return set()
