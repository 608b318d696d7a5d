"""The pass pipeline from a declared graph to the graph a backend lowers.

    inline_custom -> specialize -> stabilize -> [fold_constants + simplify] -> eliminate_dead_code

The bracketed passes are the optimizer: `optimize=False` skips them. They are value-exact per
element: constants are folded in the node's own dtype by the op's own reference implementation
and the rules are identities for every value, so elementwise results are bit-identical either
way. Not bit-identical: a reduction or product (sum, matmul, conv) reading a folded constant,
which is a fresh contiguous array where the unoptimized code reads a view; NumPy's summation
order follows memory layout, so such results differ in the last bits. Likewise a sum of a
product that one program fuses into an einsum (NumPy backend) and the other computes apart.
The one liberty taken: `x + 0 -> x` may turn a result of +0.0 into -0.0, values that compare
equal. Common subexpressions need no pass: hash-consing makes them one node. Every pass rebuilds
the graph from its outputs, so nodes no output needs are never carried along.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from graphdl.ir import substitute, topological_order
from graphdl.ops import elementwise as ew
from graphdl.ops import leaf
from graphdl.ops import movement as mv
from graphdl.passes import stabilize as st
from graphdl.passes.rewrite import ANY, Rule, rewrite

FOLD_LIMIT = 4096  # larger constant results stay computed: they would bloat the source


@dataclass
class PassReport:
    name: str
    nodes: int | None  # counted where it is cheap: as declared and after the last pass
    fired: dict = field(default_factory=dict)
    seconds: float = 0.0

    def __str__(self):
        rules = ", ".join(f"{k}×{v}" for k, v in sorted(self.fired.items()))
        nodes = "" if self.nodes is None else f"{self.nodes} nodes"
        return f"{self.name:<20} {nodes:>12} {self.seconds * 1e3:7.1f} ms  {rules}"


# --- inline_custom: a custom op's body replaces its node (its pullback already did its work).
def inline_custom(outputs):
    def expand(node):
        if node.op.kind != "custom":
            return None
        params, out = node.op.extra["custom"].body(node.inputs)
        (inlined,), _ = substitute([out], dict(zip(params, node.inputs)), expand)
        return inlined

    new, _ = substitute(outputs, {}, expand)
    return new, {}


# --- specialize: bind unknown (None) dimensions to the shapes of the arrays fed.
def specialize(outputs, shapes):
    """The graph for the fed shapes. Where a shape was unknown, autodiff sums a gradient back to
    its input's shape and broadcasts it to its output's (`sum_to`, `broadcast_to` with a `like`
    input); where the bound shapes show these are identities they go, so the graph is the one
    a declaration with these shapes gives: `stabilize` then sees the same products (such a
    node between e^-x and the σ that cancels it would hide the pair)."""
    mapping = {}
    for node in topological_order(outputs):
        if node.op is leaf.INPUT and shapes[node.name] != node.shape:
            mapping[node] = leaf.input(node.name, shapes[node.name], node.dtype.name)
    dropped = Counter()

    def bound_identity(node):
        if node.op in (mv.SUM_TO, mv.BROADCAST_TO) and (out := _identity(node)) is not None:
            dropped[f"bound_{node.op.name}"] += 1
            return out
        return None

    new, _ = substitute(outputs, mapping, bound_identity)
    return new, dropped


# --- fold_constants: evaluate nodes whose inputs are all constants.
def _fold(node):
    """Nodes whose inputs are constants (or are read only for their shape) become constants."""
    op = node.op
    if op.kind == "leaf" or math.prod(node.shape) > FOLD_LIMIT:  # shapes are bound by now
        return None
    if op.extra.get("communicates"):  # a collective runs when every worker calls the step
        return None
    values = []
    for k, i in enumerate(node.inputs):
        if k in op.shape_only:
            values.append(shape_stand_in(i))
        elif (value := _constant_value(i)) is not None:
            values.append(value)
        else:
            return None
    with np.errstate(all="ignore"):
        value = np.asarray(op.impl(*values, **node.attrs)).astype(node.dtype)
    return _folded(value)


def _constant_value(node):
    """The array a constant, or a broadcast of one, holds (else None)."""
    base = st.constant_base(node)
    return None if base is None else np.broadcast_to(base.attrs["value"].array, node.shape)


def _folded(value):
    """The node for a folded value. One repeated number stays that number, broadcast: a mean's
    gradient, -1/N over (N, C), is one constant, not N·C of them in the generated source."""
    if value.ndim and value.size > 1:
        first = np.ascontiguousarray(value).reshape(-1)[:1]
        if np.ascontiguousarray(value).tobytes() == first.tobytes() * value.size:  # -0.0 != 0.0
            return mv.BROADCAST_TO(leaf.constant(first.reshape(())), shape=value.shape)
    return leaf.constant(value)


def shape_stand_in(node):
    """An array with `node`'s shape and dtype that allocates nothing (every element is one zero,
    read-only): what an op that reads an input only for its shape is given. Shape facts must
    never allocate: a (200000, 200000) input's size is one multiplication, not 149 GiB."""
    return np.broadcast_to(np.zeros((), node.dtype), node.shape)


FOLD_CONSTANTS = [Rule("fold", ANY, _fold)]


# --- simplify: algebraic identities that hold for every value, inf and NaN included.
def _same(node, x):
    return x if x.shape == node.shape and x.dtype == node.dtype else None


def _unit(value):
    """x ∘ c -> x when c is the constant `value` (either side if `commutes`)."""
    def rule(node, commutes):
        a, b = node.inputs
        if st.is_const(b, value):
            return _same(node, a)
        return _same(node, b) if commutes and st.is_const(a, value) else None
    return rule


def _identity(node):
    x = node.inputs[0]
    if node.op is mv.TRANSPOSE and node.attrs["axes"] != tuple(range(node.ndim)):
        return None
    return _same(node, x)


def _transpose_transpose(node):
    x = node.inputs[0]
    if x.op is not mv.TRANSPOSE:
        return None
    inner, outer = x.attrs["axes"], node.attrs["axes"]
    return mv.TRANSPOSE(x.inputs[0], axes=tuple(inner[a] for a in outer))


def _reshape_reshape(node):
    x = node.inputs[0]
    return mv.RESHAPE(x.inputs[0], shape=node.shape) if x.op is mv.RESHAPE else None


def _bound_broadcast(node):
    """broadcast_to(x, like) -> broadcast_to(x, shape): with shapes bound, `like` is read for
    nothing, and a reader it no longer has can fuse into the one that computes it (a gradient's
    broadcast_to(g, like=x * y) kept x * y as an array of its own)."""
    if len(node.inputs) == 2:
        return mv.BROADCAST_TO(node.inputs[0], shape=node.shape)
    return None


def _bound_check(node):
    """check_shape(x, like) -> x: the optimizer runs on bound shapes, so the check has already
    passed (its shape rule ran when `specialize` rebuilt it with the fed shapes)."""
    return node.inputs[0]


SIMPLIFY = [
    Rule("mul_by_one", ew.MUL, lambda n: _unit(1)(n, True)),
    Rule("add_zero", ew.ADD, lambda n: _unit(0)(n, True)),
    Rule("sub_zero", ew.SUB, lambda n: _unit(0)(n, False)),
    Rule("div_by_one", ew.DIV, lambda n: _unit(1)(n, False)),
    Rule("pow_one", ew.POW, lambda n: _same(n, n.inputs[0]) if n.attrs["exponent"] == 1 else None),
    Rule("double_negation", ew.NEG, st.double_negation),
    Rule("transpose_of_transpose", mv.TRANSPOSE, _transpose_transpose),
    Rule("reshape_of_reshape", mv.RESHAPE, _reshape_reshape),
    Rule("bound_broadcast", mv.BROADCAST_TO, _bound_broadcast),
    Rule("bound_check_shape", mv.CHECK_SHAPE, _bound_check),
] + [
    Rule(f"trivial_{op.name}", op, _identity)  # the identity where shape and dtype are unchanged
    for op in (mv.SUM_TO, mv.BROADCAST_TO, mv.RESHAPE, mv.TRANSPOSE, mv.EXPAND_DIMS, mv.SQUEEZE,
               ew.CAST, ew.STOP_GRADIENT)
]


# The optimizer's rule passes. Being value-exact and local, they run in one bottom-up sweep
# (each node is folded and simplified before its users are rebuilt), which costs one rebuild
# of the graph instead of one per pass.
OPTIMIZER = [("fold_constants", FOLD_CONSTANTS), ("simplify", SIMPLIFY)]


def eliminate_dead_code(outputs):
    """What the outputs reach, in order. Every rebuild starts from the outputs, so nodes no
    output needs are already gone; this is the final trace, and the count the report shows."""
    return topological_order(outputs)


def prepare(outputs, shapes, optimize=True, stabilize=True):
    """Run the pipeline on `outputs` for inputs of the given concrete shapes (name -> shape).

    Returns the final outputs and one PassReport per pass that had work to do."""
    order = topological_order(outputs)
    passes = []
    if any(n.op.kind == "custom" for n in order):
        passes.append(("inline_custom", inline_custom))
    if any(n.op is leaf.INPUT and shapes[n.name] != n.shape for n in order):
        passes.append(("specialize", lambda outs: specialize(outs, shapes)))
    if stabilize:  # first, and alone: what it matches must not depend on `optimize`
        passes.append(("stabilize", lambda outs: rewrite(outs, st.RULES)))
    if optimize:
        rules = [rule for _, group in OPTIMIZER for rule in group]
        passes.append((" + ".join(name for name, _ in OPTIMIZER),
                       lambda outs: rewrite(outs, rules)))
    reports = [PassReport("declared", len(order))]
    for name, run in passes:
        start = time.perf_counter()
        outputs, fired = run(outputs)
        reports.append(PassReport(name, None, dict(fired), time.perf_counter() - start))
    start = time.perf_counter()
    final = eliminate_dead_code(outputs)
    reports.append(PassReport("eliminate_dead_code", len(final), {}, time.perf_counter() - start))
    return outputs, reports
