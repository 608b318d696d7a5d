"""The circuit view of a graph, shared by `gd.draw` and `gd.explain`.

A graph is seen as the lecture draws it: gates joined by wires. Each non-leaf node is a gate
labelled with its symbol; a constant operand is folded into the gate's label (`x + 1` is the
gate `+1`, `-x` the gate `*−1`), so constants are not drawn as leaves of their own (see
`graphdl.views.labels`). Named composites (`sigmoid`, `softmax`, a loss, a whole layer) may be
collapsed into one gate (see `graphdl.views.composites`).

With input values, every wire carries its forward value and, for a scalar output, the gradient
of the output that flows back along that wire: the contribution of the consumer's pullback
(evaluated with the reference interpreter), so that a wire fanning out into several gates shows
each gate's share and the node's gradient is their sum.
"""

from __future__ import annotations

from collections import ChainMap
from dataclasses import dataclass, field

import numpy as np

from graphdl import autodiff
from graphdl.errors import GraphError
from graphdl.interpret import evaluate, run
from graphdl.ir import Node, consumers, topological_order
from graphdl.ops import leaf
from graphdl.ops import movement as mv
from graphdl.ops.composite import COMPOSITES, find_composite
from graphdl.views.composites import dominated, match_composite, region_nodes
from graphdl.views.labels import UNKNOWN, const_text, const_value, gate_label, is_const_like


@dataclass(eq=False)
class Region:
    """A collapsed composite: `out` computed from `args`, `nodes` the ids inside (out included)."""

    label: str
    out: Node
    args: list
    nodes: set
    composite: object = None  # the recognized `Composite` (sigmoid, softmax...), if any

    @property
    def size(self):
        return len(self.nodes)


def _own_region(comp, out, nodes, args):
    """(nodes, args) of the composite ending at `out` whose arguments are its named parts
    (attention's q, k, v): the nodes computing `out` from them, not the projections above that
    only it uses, with the parts as arguments in the function's order. Without parts, or where
    more than them feeds it (a mask given as an input), the region `dominated` found."""
    if comp.parts is None:
        return nodes, args
    parts = list({id(p): p for p in comp.parts(out).values()}.values())
    own = region_nodes(out, parts)
    return (nodes, args) if own is None else (own, parts)


def parts_played(region, src):
    """The parts (attention's "q", "k", "v") that `src` plays as an argument of the collapsed
    composite `region`, where it names its arguments' parts; else []."""
    comp = region.composite
    if comp is None or comp.parts is None:
        return []
    return [part for part, arg in comp.parts(region.out).items() if arg is src]


@dataclass(eq=False)
class Gate:
    node: Node  # the node whose value leaves the gate
    kind: str  # "input" | "const" | "op" | "region"
    label: str  # the symbol drawn: "+1", "*−1", "exp", "σ"
    operands: list = field(default_factory=list)  # [(position, source node, shape_only)]
    consts: dict = field(default_factory=dict)  # position -> folded constant array
    region: Region | None = None
    handle: str = ""  # how narration and drawing refer to the gate's value


# Call-time checks: identities that raise on bad indices or shapes, drawn nowhere.
CHECKS = (mv.CHECK_INDEX, mv.CHECK_SHAPE)


def unchecked(node):
    """The array a check guards (the node itself if it is none): drawings and narrations show
    the indices or operands as fed, not the check."""
    while node.op in CHECKS:
        node = node.inputs[0]
    return node


class Circuit:
    """Gates, wires, values and per-wire gradients of the graph of `outputs`.

    `values`: input name -> value (optional). `collapse`: composite names ("sigmoid",
    "softmax", "cross_entropy", ...), node names, nodes, or `(label, out, [args])` triples for a
    whole layer. `wrt`: the inputs gradients flow to (default: every floating-point input).
    """

    def __init__(self, outputs, values=None, collapse=(), wrt=None):
        self.outputs = [outputs] if isinstance(outputs, Node) else list(outputs)
        if not self.outputs or not all(isinstance(o, Node) for o in self.outputs):
            raise GraphError("draw/explain: outputs must be graph nodes")
        self.order = topological_order(self.outputs)
        self.users = consumers(self.order)
        self.inputs = [n for n in self.order if n.op is leaf.INPUT]
        self.values = {}
        self.grads = {}  # node id -> total gradient of the output
        self.contrib = {}  # (consumer node id, input position) -> that edge's gradient
        self._keep = []  # nodes whose ids key the dictionaries must stay alive
        if values is not None:
            self._forward(values)
        self.wrt = self._wrt(wrt)
        if values is not None and self.scalar_output:
            self._backward()
        self.regions = self._regions(collapse if not isinstance(collapse, str) else [collapse])
        self._build_gates()

    # -- values ---------------------------------------------------------------------------------
    @property
    def output(self):
        return self.outputs[0]

    @property
    def scalar_output(self):
        y = self.outputs[0]
        return len(self.outputs) == 1 and y.shape == () and y.dtype.kind == "f"

    @property
    def has_values(self):
        return bool(self.values)

    @property
    def has_grads(self):
        return bool(self.grads)

    def _forward(self, values):
        names = {n.name for n in self.inputs}
        feeds = {k: v for k, v in dict(values).items() if k in names}
        missing = sorted(names - set(feeds))
        if missing:
            raise GraphError(f"values: no value for input {missing[0]!r}; "
                             f"this graph's inputs are {sorted(names)}")
        valued = [n for n in self.order if n.op is not leaf.CONST]
        # Each wire shows its own gate's value: the graph as declared, not as stabilized.
        for n, v in zip(valued, evaluate(valued, feeds, stabilize=False)):
            self.values[id(n)] = np.asarray(v)
        for n in self.order:
            if n.op is leaf.CONST:
                self.values[id(n)] = n.attrs["value"].array

    def _wrt(self, wrt):
        if wrt is None:
            return [n for n in self.inputs if n.dtype.kind == "f"]
        wrt = [wrt] if isinstance(wrt, (Node, str)) else list(wrt)
        by_name = {n.name: n for n in self.inputs}
        out = []
        for w in wrt:
            if isinstance(w, str):
                if w not in by_name:
                    raise GraphError(f"wrt: no input named {w!r}; inputs are {sorted(by_name)}")
                w = by_name[w]
            out.append(w)
        return out

    def _backward(self):
        """One numeric reverse sweep with the ops' own pullbacks, keeping every edge's share."""
        relevant = autodiff.depends_on(self.order, self.wrt)
        y = self.output
        totals = autodiff.reverse_sweep(
            self.order, np.ones((), y.dtype),
            lambda node, g: self._edge_values(node, g, relevant), np.add)
        self.grads = {k: np.asarray(v) for k, v in totals.items()}

    def _edge_values(self, node, upstream, relevant):
        """[(position, array)]: what `node` sends back to each input given the `upstream`
        array, by evaluating its pullback (built over a placeholder) with the reference
        interpreter; every edge's share is kept in `contrib`."""
        g = leaf.input("__upstream__", node.shape, node.dtype.name)
        edges = autodiff.edge_gradients(node, g, relevant)
        if not edges:
            return []
        fitted = [gi for _, _, gi in edges]
        scratch = ChainMap({id(g): np.asarray(upstream)}, self.values)
        self._keep.extend([g, *fitted])
        run(fitted, scratch)
        out = []
        for k, _, gi in edges:
            value = np.asarray(scratch[id(gi)])
            self.contrib[(id(node), k)] = value
            out.append((k, value))
        return out

    # -- regions --------------------------------------------------------------------------------
    def _regions(self, collapse):
        regions = []
        for item in collapse:
            if isinstance(item, tuple):
                label, out, args = item
                nodes = region_nodes(out, args)
                if nodes is None:
                    raise GraphError(f"collapse {label!r}: the output depends on inputs "
                                     "other than the given arguments")
                regions.append(Region(label, out, list(args), nodes))
            elif isinstance(item, Node):
                nodes, args = dominated(item, self.users)
                regions.append(Region(item.name or gate_label(item, {}), item, args, nodes))
            elif find_composite(item) is not None:
                regions += self._composite_regions(find_composite(item))
            else:
                regions += self._named_regions(item)
        return self._outermost(regions)

    def _composite_regions(self, comp):
        """A region for every occurrence of the composite `comp` in the graph."""
        found = []
        for n in self.order:
            if comp.arity is None:  # recognized by the name it gives its output
                if n.name == comp.name and comp.ends_with(n.op):
                    nodes, args = _own_region(comp, n, *dominated(n, self.users))
                    found.append(Region(comp.symbol, n, args, nodes, comp))
                continue
            if n.inputs and not is_const_like(n) and self._plausible(comp, n):
                args = match_composite(comp, n)
                nodes = None if args is None else region_nodes(n, args)
                if nodes is not None:
                    found.append(Region(comp.symbol, n, args, nodes, comp))
        return found

    def _named_regions(self, name):
        named = [n for n in self.order if n.name == name and n.op is not leaf.INPUT]
        if not named:
            raise GraphError(f"collapse: no composite or node named {name!r}; composites: "
                             f"{', '.join(sorted(COMPOSITES))}")
        regions = []
        for n in named:
            nodes, args = dominated(n, self.users)
            regions.append(Region(name, n, args, nodes))
        return regions

    def _outermost(self, regions):
        """Outermost first; a region inside a chosen one, or one whose inner values are used
        outside it, is not collapsed."""
        chosen, covered = [], set()
        shared = {id(n) for n in self.order if is_const_like(n)}  # constants are shared by all
        for r in sorted(regions, key=lambda r: -r.size):
            if (r.nodes - shared) & covered:
                continue
            inner = r.nodes - {id(r.out)} - shared
            if any(id(u) not in r.nodes for i in inner for u in self.users.get(i, [])):
                continue
            if any(id(o) in inner for o in self.outputs):
                continue
            chosen.append(r)
            covered |= r.nodes - shared
        return chosen

    def _plausible(self, comp, node):
        """A cheap filter before trying to rebuild the composite on `node`'s ancestors."""
        if node.name == comp.name:
            return True
        return comp.ends_with(node.op) and len(self.order) < 3000

    # -- gates ----------------------------------------------------------------------------------
    def _build_gates(self):
        inside = {}
        for r in self.regions:
            for i in r.nodes:
                inside[i] = r
        self.gates = []
        self.gate_of = {}
        outputs = {id(o) for o in self.outputs}
        count = 0
        for n in self.order:
            r = inside.get(id(n))
            if r is not None and n is not r.out:
                continue
            if r is not None:
                args = [(k, unchecked(a), False) for k, a in enumerate(r.args)]
                gate = Gate(n, "region", r.label, args, region=r)
            elif n.op is leaf.INPUT:
                gate = Gate(n, "input", n.name)
            elif n.op in CHECKS and id(n) not in outputs:
                continue  # a call-time check: the gates it guards read what it checks
            elif is_const_like(n):
                if id(n) not in outputs:
                    continue
                v = const_value(n, self.values)
                gate = Gate(n, "const", const_text(v) if v is not None else n.op.label)
            else:
                consts, operands = {}, []
                for k, i in enumerate(n.inputs):
                    if is_const_like(i):
                        v = const_value(i, self.values)
                        consts[k] = v if v is not None else UNKNOWN.get(i.op, "?")
                    else:
                        operands.append((k, unchecked(i), k in n.op.shape_only))
                gate = Gate(n, "op", gate_label(n, consts), operands, consts)
            if n.name is not None and not n.name.startswith("__"):
                gate.handle = n.name
            else:
                count += 1
                gate.handle = f"v{count}"
            self.gates.append(gate)
            self.gate_of[id(n)] = gate

    # -- wires ----------------------------------------------------------------------------------
    def wires(self):
        """(source node, gate, position, shape_only) for every drawn wire, in gate order."""
        out = []
        for gate in self.gates:
            for k, src, shape_only in gate.operands:
                out.append((src, gate, k, shape_only))
        return out

    def wire_grad(self, gate, position):
        """The gradient flowing back along the wire into `gate` at `position` (None if none)."""
        if gate.kind != "region":
            return self.contrib.get((id(gate.node), position))
        arg = gate.region.args[position]
        total = None
        for n in self.order:
            if id(n) in gate.region.nodes:
                for k, i in enumerate(n.inputs):
                    if i is arg and (id(n), k) in self.contrib:
                        c = self.contrib[(id(n), k)]
                        total = c if total is None else total + c
        return total

    def value(self, node):
        return self.values.get(id(node))

    def grad(self, node):
        return self.grads.get(id(node))

    def handle(self, node):
        gate = self.gate_of.get(id(node))
        if gate is not None:
            return gate.handle
        return node.name or f"node {node.id}"
