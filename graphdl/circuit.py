"""The circuit view of a graph, shared by `gd.draw` and `gd.explain`.

A graph is seen as the lecture draws it: gates joined by wires. Each non-leaf node is a gate
labelled with its symbol; a constant operand is folded into the gate's label (`x + 1` is the
gate `+1`, `-x` the gate `*−1`), so constants are not drawn as leaves of their own. Named
composites (`sigmoid`, `softmax`, a loss, a whole layer) may be collapsed into one gate.

With input values, every wire carries its forward value and, for a scalar output, the gradient
of the output that flows back along that wire: the contribution of the consumer's pullback
(evaluated with the reference interpreter), so that a wire fanning out into several gates shows
each gate's share and the node's gradient is their sum.
"""

from __future__ import annotations

import math
from collections import ChainMap
from dataclasses import dataclass, field

import numpy as np
import sympy

from graphdl import autodiff
from graphdl.errors import GraphError
from graphdl.interpret import evaluate, run
from graphdl.ir import Node, consumers, topological_order
from graphdl.ops import leaf

CONST_LIKE = {"const", "size", "zeros_like"}  # operands folded into their consumer's label


# ---------------------------------------------------------------------------------------------
# Number formatting


def fmt(x, digits=2, significant=False):
    """A scalar as text: `digits` decimals (drawings) or significant digits (narration)."""
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    if significant:
        s = f"{x:.{digits}g}"
        if "e" not in s and "." not in s and abs(x) >= 10 ** digits:
            s = f"{x:.{digits}e}"
        return s
    s = f"{x:.{digits}f}"
    if abs(x) >= 1e6 or (x != 0 and abs(x) < 10 ** -digits / 2):
        s = f"{x:.{max(digits - 1, 1)}e}"  # 3.1e-07 rather than 0.00: vanishing stays visible
    return s


def number(value):
    """A constant for a gate label: integers without decimals, negatives with a true minus."""
    v = float(value)
    s = str(int(v)) if v.is_integer() and abs(v) < 1e6 else f"{v:g}"
    return s.replace("-", "−")


def summary(array, digits=2, significant=False):
    """One line for a tensor: its mean and norm (the shape is shown separately)."""
    raw = np.asarray(array)
    if raw.dtype.kind in "iub" and raw.size <= 8:
        return "[" + ", ".join(str(v) for v in raw.ravel().tolist()) + "]"
    a = raw.astype(np.float64)
    norm = float(np.linalg.norm(a.ravel()))
    mean = float(a.mean())
    if abs(mean) < 1e-12 * max(norm, 1e-300) * a.size:  # rounding noise of an exact zero
        mean = 0.0
    return f"μ={fmt(mean, digits, significant)} ‖·‖={fmt(norm, digits, significant)}"


def shape_text(shape):
    return "(" + ",".join("?" if d is None else str(d) for d in shape) + ")"


# ---------------------------------------------------------------------------------------------
# Gates


@dataclass(eq=False)
class Region:
    """A collapsed composite: `out` computed from `args`, `nodes` the ids inside (out included)."""

    label: str
    out: Node
    args: list
    nodes: set
    composite: str | None = None  # the composite's name when recognized (sigmoid, softmax...)

    @property
    def size(self):
        return len(self.nodes)


@dataclass(eq=False)
class Gate:
    node: Node  # the node whose value leaves the gate
    kind: str  # "input" | "const" | "op" | "region"
    label: str  # the symbol drawn: "+1", "*−1", "exp", "σ"
    operands: list = field(default_factory=list)  # [(position, source node, shape_only)]
    consts: dict = field(default_factory=dict)  # position -> folded constant array
    region: Region | None = None
    handle: str = ""  # how narration and drawing refer to the gate's value

    @property
    def op(self):
        return self.node.op.name


SYMBOLS = {
    "add": "+", "sub": "−", "mul": "*", "div": "/", "neg": "*−1", "reciprocal": "1/x",
    "exp": "exp", "log": "log", "sqrt": "√", "tanh": "tanh", "sigmoid": "σ",
    "softplus": "softplus", "relu": "relu", "maximum": "max", "minimum": "min", "matmul": "@",
    "sum": "Σ", "max": "max", "min": "min", "greater": ">", "greater_equal": "≥", "less": "<",
    "less_equal": "≤", "equal": "==", "not_equal": "≠", "where": "where", "cast": "cast",
    "stop_gradient": "stop ∇", "transpose": "ᵀ", "reshape": "reshape", "expand_dims": "expand",
    "squeeze": "squeeze", "broadcast_to": "broadcast", "sum_to": "sum_to", "slice": "slice",
    "unslice": "unslice", "concatenate": "concat", "take": "take", "scatter_add": "scatter_add",
    "pow": "pow",
}
_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def gate_label(node, consts):
    """The lecture's symbol for `node`, constants folded in: +1, *−1, 1/x, x², Σ axis 1."""
    op = node.op.name
    c = {k: _const_text(v) for k, v in consts.items()}
    if op == "pow":
        e = node.attrs["exponent"]
        if float(e).is_integer() and abs(e) < 100:
            return "x" + str(int(e)).translate(_SUPERSCRIPT)
        return f"x^{e:g}"
    if op in ("sum", "max", "min"):
        axes = node.attrs["axes"]
        base = SYMBOLS[op]
        if len(axes) == node.inputs[0].ndim:
            return base
        return f"{base} axis {','.join(map(str, axes))}"
    if op == "transpose":
        axes = node.attrs["axes"]
        return "ᵀ" if node.ndim <= 2 else f"transpose {axes}"
    if op == "cast":
        return f"cast {node.attrs['dtype']}"
    if len(c) == 1 and len(node.inputs) == 2:
        (k, v), = c.items()
        if op == "add":
            return f"+{v}" if not v.startswith("−") else v
        if op == "mul":
            return f"*{v}"
        if op == "sub":
            return f"−{v}" if k == 1 else f"{v} − x"
        if op == "div":
            return f"/{v}" if k == 1 else f"{v}/x"
        if op in ("maximum", "minimum"):
            return f"{SYMBOLS[op]}(·, {v})"
        if op in ("greater", "greater_equal", "less", "less_equal", "equal", "not_equal"):
            return f"{SYMBOLS[op]} {v}" if k == 1 else f"{v} {SYMBOLS[op]}"
    if node.op.kind == "custom" or op not in SYMBOLS:
        return op
    return SYMBOLS[op]


def _const_text(array):
    a = np.asarray(array)
    if a.ndim == 0 or (a.size == 1):
        return number(a.reshape(()))
    if a.size <= 4:
        return "[" + ", ".join(number(v) for v in a.ravel()) + "]"
    return f"C{shape_text(a.shape)}"


def const_value(node, values):
    """The value of a constant-like operand (a constant, a `size`, a `zeros_like`)."""
    if node.op.name == "const":
        return node.attrs["value"].array
    if id(node) in values:
        return values[id(node)]
    if node.op.name == "size":
        dims = [node.inputs[0].shape[a] for a in node.attrs["axes"]]
        if None not in dims:
            return np.asarray(math.prod(dims))
        return None
    if node.op.name == "zeros_like":
        return np.asarray(0.0)
    return None


def is_const_like(node):
    return node.op.name in CONST_LIKE


# ---------------------------------------------------------------------------------------------
# Composites: recognized by re-applying the composite to candidate inputs. Nodes are hash-consed,
# so `sigmoid(x) is node` holds exactly when `node` is the sigmoid circuit of `x`.


@dataclass(frozen=True)
class Composite:
    name: str
    arity: int
    symbol: str
    rule: str  # the closed-form local gradient, in words and symbols
    sym: object = None  # SymPy scalar form for elementwise composites (its derivative is exact)

    def build(self, *args):
        from graphdl.ops import composite as cp

        fn = {"sigmoid": cp.sigmoid, "tanh": cp.tanh, "softmax": cp.softmax,
              "log_softmax": cp.log_softmax, "cross_entropy": cp.softmax_cross_entropy,
              "hinge_loss": cp.hinge_loss, "mse": cp.mse}[self.name]
        return fn(*args)


def _composites():
    from graphdl.ops.scalar import Sigmoid

    return {c.name: c for c in [
        Composite("sigmoid", 1, "σ", "dσ/dx = σ(1−σ)", Sigmoid),
        Composite("tanh", 1, "tanh", "d tanh/dx = 1 − tanh²", sympy.tanh),
        Composite("softmax", 1, "softmax",
                  "∂s_i/∂x_j = s_i(δ_ij − s_j), so dL/dx = s ⊙ (g − Σ_j g_j s_j)"),
        Composite("log_softmax", 1, "log softmax",
                  "dL/dx = g − softmax(x) · Σ_j g_j"),
        Composite("cross_entropy", 2, "softmax\ncross-entropy",
                  "dL/dlogits = (softmax(logits) − onehot(labels)) · g / N"),
        Composite("hinge_loss", 2, "hinge loss",
                  "dL/ds_j = g/N · 1[s_j − s_y + 1 > 0] (j ≠ y), dL/ds_y = −g/N · #(j: margin > 0)"),
        Composite("mse", 2, "MSE", "dL/dp = 2(p − t) · g / N, dL/dt = −2(p − t) · g / N"),
    ]}


COMPOSITE_ALIASES = {"softmax_cross_entropy": "cross_entropy", "σ": "sigmoid"}


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


def _match(composite, out, depth=14):
    """The arguments `args` with `composite(*args) is out`, or None. Of several (the one-hot
    rows and the integer labels both rebuild a loss), the one spanning the most nodes."""
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
    return max(found, key=lambda a: len(_region_nodes(out, a) or ()))


def _rebuilds(composite, args, out):
    try:
        return composite.build(*args) is out
    except (GraphError, TypeError, ValueError, IndexError, KeyError):  # wrong dtypes or shapes
        return False


def _region_nodes(out, args):
    """Ids of the nodes computing `out` from `args` (constants inside included)."""
    stop = {id(a) for a in args}
    nodes = set()
    stack = [out]
    while stack:
        n = stack.pop()
        if id(n) in nodes or id(n) in stop:
            continue
        if n.op.name == "input":
            return None  # `out` depends on an input that is not one of `args`
        nodes.add(id(n))
        stack.extend(n.inputs)
    return nodes


def _dominated(out, users, order_index):
    """The generic region of a named node: `out` and the unnamed nodes only it uses."""
    region = {id(out)}
    candidates = sorted(topological_order([out]), key=lambda n: -n.id)
    for n in candidates:
        if n is out or n.op.name == "input" or (n.name is not None and not is_const_like(n)):
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


# ---------------------------------------------------------------------------------------------
# The circuit


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
        self.inputs = [n for n in self.order if n.op.name == "input"]
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
        valued = [n for n in self.order if n.op.name != "const"]
        # Each wire shows its own gate's value: the graph as declared, not as stabilized.
        for n, v in zip(valued, evaluate(valued, feeds, stabilize=False)):
            self.values[id(n)] = np.asarray(v)
        for n in self.order:
            if n.op.name == "const":
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
        y = self.output
        relevant = autodiff._depends_on(self.order, self.wrt)
        self.grads[id(y)] = np.ones((), y.dtype)
        pending = {}
        for node in reversed(self.order):
            if id(node) not in relevant:
                continue
            if node is not y:
                parts = pending.pop(id(node), None)
                if parts is None:
                    continue
                total = parts[0]
                for p in parts[1:]:
                    total = total + p
                self.grads[id(node)] = np.asarray(total)
            if node.op.pullback is None or not node.inputs:
                continue
            g = leaf.input("__upstream__", node.shape, node.dtype.name)
            pulled = node.op.pullback(node, g)
            fitted = []
            for k, (inp, gi) in enumerate(zip(node.inputs, pulled)):
                if gi is None or id(inp) not in relevant:
                    continue
                fitted.append((k, inp, autodiff._fit(gi, inp, node)))
            if not fitted:
                continue
            scratch = ChainMap({id(g): self.grads[id(node)]}, self.values)
            self._keep.extend([g] + [f for _, _, f in fitted])
            run([f for _, _, f in fitted], scratch)
            for k, inp, f in fitted:
                value = np.asarray(scratch[id(f)])
                self.contrib[(id(node), k)] = value
                pending.setdefault(id(inp), []).append(value)

    # -- regions --------------------------------------------------------------------------------
    def _regions(self, collapse):
        known = _composites()
        regions = []
        order_index = {id(n): k for k, n in enumerate(self.order)}
        for item in collapse:
            if isinstance(item, tuple):
                label, out, args = item
                nodes = _region_nodes(out, args)
                if nodes is None:
                    raise GraphError(f"collapse {label!r}: the output depends on inputs "
                                     "other than the given arguments")
                regions.append(Region(label, out, list(args), nodes))
                continue
            if isinstance(item, Node):
                nodes, args = _dominated(item, self.users, order_index)
                regions.append(Region(item.name or gate_label(item, {}), item, args, nodes))
                continue
            name = COMPOSITE_ALIASES.get(item, item)
            if name in known:
                comp = known[name]
                for n in self.order:
                    if n.inputs and not is_const_like(n):
                        args = _match(comp, n) if self._plausible(comp, n) else None
                        if args is not None:
                            nodes = _region_nodes(n, args)
                            if nodes is not None:
                                regions.append(Region(comp.symbol, n, args, nodes, comp.name))
            else:
                named = [n for n in self.order if n.name == item and n.op.name != "input"]
                if not named:
                    raise GraphError(
                        f"collapse: no composite or node named {item!r}; composites: "
                        f"{', '.join(sorted(known))}")
                for n in named:
                    nodes, args = _dominated(n, self.users, order_index)
                    regions.append(Region(item, n, args, nodes))
        # Outermost first; a region inside a chosen one, or one whose inner values are used
        # outside it, is not collapsed.
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
        return {"sigmoid": "reciprocal", "tanh": "sub", "softmax": "div", "log_softmax": "sub",
                "cross_entropy": "div", "hinge_loss": "div", "mse": "div"}[comp.name] == \
            node.op.name and len(self.order) < 3000

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
                gate = Gate(n, "region", r.label, [(k, a, False) for k, a in enumerate(r.args)],
                            region=r)
            elif n.op.name == "input":
                gate = Gate(n, "input", n.name)
            elif is_const_like(n):
                if id(n) not in outputs:
                    continue
                v = const_value(n, self.values)
                gate = Gate(n, "const", _const_text(v) if v is not None else n.op.name)
            else:
                consts, operands = {}, []
                for k, i in enumerate(n.inputs):
                    if is_const_like(i):
                        v = const_value(i, self.values)
                        consts[k] = v if v is not None else np.asarray(np.nan)
                    else:
                        operands.append((k, i, k in n.op.shape_only))
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
