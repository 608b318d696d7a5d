"""The backend-neutral lowering: an optimized graph -> a `Program` that a backend renders.

A `Program` is what every backend needs decided for it, so that a backend only spells
things out: the statements in execution order (each computes one node; its expression tree
holds the nodes fused into it), work shared between statements, the buffer plan (which
statement overwrites a dead temporary, which results are fresh arrays and which may alias an
input), the array constants, the outputs (and which must be copied for the caller) and the
in-place updates (and which of their sources must be copied before the first write). A
backend may then rewrite the program (`Target.rewrites`, applied by `rewritten`): replace
updates by writes of its own that read other nodes (`codegen.accumulate`), the program lowered
afresh around them (`relowered`).

Expressions are trees of `Ref` (a value that exists before the statement: an input, a constant,
an earlier statement's result), `Apply` (an op computed inside the statement) and `Expand`
(a value brought to its node's declared shape). Fusion leaves a `broadcast_to` to the
elementwise ops that read it (they commute with broadcasting), so a fused region may compute
fewer elements than its root declares; an `Expand` restores the shape wherever a region ends.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from graphdl.codegen.schedule import schedule
from graphdl.ir import attrs_key
from graphdl.ops import elementwise as ew
from graphdl.ops import leaf
from graphdl.ops import movement as mv
from graphdl.ops.elementwise import broadcast_dims


@dataclass(frozen=True)
class Target:
    """What a backend tells the lowering.

    fuses_into(consumer, position): may the input at `position` be inlined into `consumer`'s
        code (a backend that spells an argument twice must not recompute it twice).
    writes_into(node): can the backend compute `node` into an existing buffer of its shape.
    max_fused: nodes per fused statement (readability for NumPy, registers for CUDA).
    rewrites: what the backend does to the lowered program, in order (each `Program` ->
        `Program`, applied by `rewritten`): such as the updates it writes into the target's
        memory (`accumulate.accumulate_products`, `accumulate.accumulate_scatters`).
    """

    fuses_into: Callable
    writes_into: Callable
    max_fused: int
    rewrites: tuple = ()


@dataclass(frozen=True)
class Ref:
    node: object


@dataclass(frozen=True)
class Apply:
    node: object
    args: tuple


@dataclass(frozen=True)
class Expand:
    """`value` broadcast to `node`'s declared shape; `fill`: the value reads no array (a
    formula such as `x ** 0`), so the backend fills the shape, in the node's dtype, with it."""

    node: object
    value: object
    fill: bool


@dataclass
class SharedWork:
    """Work several statements read (`OpDef.shares`): computed once, before the first of them.
    `node` is the first member; the work reads its input at `position`."""

    work: str
    node: object
    position: int
    members: list = field(default_factory=list)


@dataclass
class Statement:
    node: object
    value: object  # Ref | Apply | Expand
    buffer: object = None  # a dead temporary of node's shape and dtype to compute into
    shared: SharedWork | None = None  # the shared work this statement reads
    fresh: bool = False  # the result is a new array the program owns (no view, no alias)


@dataclass(frozen=True)
class Output:
    node: object
    copy: bool  # a view, an input, a constant or a repeat: the caller gets its own copy


@dataclass(frozen=True)
class Update:
    """Write `source` into the input `target` (`subtract`: `target -= source`, in place).
    `copy`, which the lowering decides: the source may alias what a write changes, so it is
    copied before the first write."""

    target: object
    source: object
    subtract: bool
    copy: bool = False

    @property
    def roots(self):
        """The nodes the write reads, computed before it."""
        return (self.source,)


@dataclass
class Program:
    """The program, which every backend renders in this order: the `statements`; then each of
    the `outputs` read for the caller (copied where `copy` says, or anyway: CUDA brings each
    to the host); then the sources of the `updates` marked `copy` copied; then the writes. So
    the outputs are the values at call time and the updates one simultaneous assignment: no
    write happens before every read of the old values (`tests/test_backends_agree.py`).
    `lower` makes every update an `Update`; a rewrite may put a write of its own in its place
    (`accumulate.ProductUpdate`, `ScatterUpdate`), which reads the nodes its `roots` name."""

    inputs: list
    constants: list  # array constants (ndim > 0), in order of first use
    statements: list  # SharedWork | Statement, in execution order
    outputs: list
    updates: list  # Update or a rewrite's write, in `updates` order
    kernels: list  # the schedule's kernels (one per statement of a graph node)
    target: Target  # the backend it is lowered for
    fuse: bool  # False: one statement per node, not rewritten (a backend's debug mode)


def lower(outputs, inputs, updates, target, fuse=True):
    """The `Program` computing `outputs` and applying `updates` ((input, new value)
    pairs: one simultaneous assignment, written after everything else is computed), each as
    an `Update`: the target's rewrites come after (`rewritten`)."""
    return _lowered(list(outputs), list(inputs), [_write(t, v) for t, v in updates], target,
                    fuse)


def rewritten(program):
    """`program` after its target's rewrites, in order; none where it is unfused (debug: every
    node its own statement, each checked)."""
    for rewrite in program.target.rewrites if program.fuse else ():
        program = rewrite(program)
    return program


def relowered(program, updates):
    """`program` with `updates` in place of its own (a rewrite's), lowered afresh around them:
    what only the old updates read is no longer computed, what the new ones read is."""
    return _lowered([o.node for o in program.outputs], program.inputs, updates, program.target,
                    program.fuse)


def _lowered(outputs, inputs, updates, target, fuse):
    roots = [*outputs, *(node for u in updates for node in u.roots)]
    plan = schedule(roots, target, fuse)
    builder = _Builder(plan, target, fuse)
    for kernel in plan.kernels:
        builder.statement(kernel.node)
    for node in roots:
        builder.expr(node, None)  # an array constant read only here still needs its name
    fresh = builder.fresh
    outs, returned = [], set()
    for o in outputs:  # a repeated output gets a copy of its own too
        outs.append(Output(o, id(o) not in fresh or id(o) in returned))
        returned.add(id(o))
    ups = [replace(u, copy=not (id(u.source) in fresh or u.source.op is leaf.CONST))
           if isinstance(u, Update) else u for u in updates]
    return Program(inputs, builder.constants, builder.statements, outs, ups, plan.kernels,
                   target, fuse)


def _write(target, value):
    """`W - X` updates W in place by subtracting X; anything else is copied into W."""
    if value.op is ew.SUB and value.inputs[0] is target:
        return Update(target, value.inputs[1], True)
    return Update(target, value, False)


class _Builder:
    def __init__(self, plan, target, fuse):
        self.plan, self.target, self.fuse = plan, target, fuse
        self.statements, self.constants = [], []
        self.fresh = set()  # ids of statement results that are new arrays nothing else reads
        self.known = set()  # ids of nodes whose value exists: inputs, constants, statements
        self.shared = _shared_work(plan.kernels)
        self.started = set()  # ids of shared work already placed

    def statement(self, node):
        args = tuple(self.expr(i, node) for i in node.inputs)
        shared = self.shared.get(id(node))
        if shared is not None and id(shared) not in self.started:
            self.started.add(id(shared))
            self.statements.append(shared)
        value = Apply(node, args)
        buffer = self._buffer(node, args)
        if buffer is None:
            value = _declared(value)
        self.statements.append(Statement(node, value, buffer, shared,
                                         buffer is not None or _fresh(value)))
        self.known.add(id(node))
        if self.statements[-1].fresh:
            self.fresh.add(id(node))

    def expr(self, node, consumer):
        """The expression by which `consumer` reads `node`: a fused region or a reference."""
        if id(node) not in self.plan.fused:
            if node.op is leaf.CONST and node.ndim and id(node) not in self.known:
                self.constants.append(node)
                self.known.add(id(node))
            return Ref(node)
        if (node.op is mv.BROADCAST_TO and consumer is not None
                and consumer.op.kind == "elementwise"):
            return self.expr(node.inputs[0], consumer)  # the consumer's broadcasting does it
        value = Apply(node, tuple(self.expr(i, node) for i in node.inputs))
        return (value if consumer is not None and consumer.op.kind == "elementwise"
                else _declared(value))

    def _buffer(self, node, args):
        """The input whose array `node` may overwrite: a fresh temporary read only here, of
        the result's shape and dtype, where the backend can compute node into a buffer."""
        if not self.fuse or node.shape == () or not self.target.writes_into(node):
            return None
        for inp, arg in zip(node.inputs, args):
            if (isinstance(arg, Ref) and id(inp) in self.fresh and self.plan.uses[id(inp)] == 1
                    and inp.shape == node.shape and inp.dtype == node.dtype):
                return inp
        return None


def _fresh(value):
    """Whether a statement's value is a new array: not a view, not an input's alias (a formula
    that is one of its arguments, `lambda a: a`, included), not a broadcast left in place."""
    if isinstance(value, Expand):
        return value.fill
    node = value.node
    return not (node.op.aliases or node.op.kind == "elementwise" and passthrough(node))


def _declared(value):
    """`value` with its node's declared shape (an `Expand` where fusion left it smaller)."""
    same = natural_shape(value) == value.node.shape
    if same and value.node.shape != ():
        return value
    fill = not _reads_array(value)
    return value if same and not fill else Expand(value.node, value, fill)


def natural_shape(value):
    """The shape an expression computes: its node's, except where an elementwise op reads
    operands smaller than it declares (broadcasts left to it, or arguments its formula
    does not read)."""
    if isinstance(value, Apply) and value.node.op.kind == "elementwise":
        positions = reads(value.node)
        read = [natural_shape(a) for k, a in enumerate(value.args) if k in positions]
        return broadcast_dims(read) if read else ()
    return value.node.shape


def _reads_array(value):
    """Whether an expression reads any value other than a scalar constant."""
    if isinstance(value, Ref):
        return not (value.node.op is leaf.CONST and value.node.ndim == 0)
    if isinstance(value, Expand):
        return _reads_array(value.value)
    if value.node.op.kind != "elementwise":
        return True
    positions = reads(value.node)
    return any(_reads_array(a) for k, a in enumerate(value.args) if k in positions)


def passthrough(node):
    """Whether an elementwise node's formula is one of its arguments (`lambda a: a`)."""
    return _formula(node)[0]


def reads(node):
    """The argument positions an elementwise node's formula reads (`x ** 0` reads none)."""
    return _formula(node)[1]


def _formula(node):
    return _formula_of(node.op, attrs_key(node.attrs) if node.attrs else (), len(node.inputs))


@functools.cache
def _formula_of(op, attrs, arity):
    """(whether the op's formula is one of its arguments, the positions it reads), once per
    (op, attributes): from its NumPy text where it has one (the text names exactly the arguments
    its SymPy form holds, as a test checks), so that lowering built-in ops needs no SymPy."""
    attrs = {k: v for k, v, _ in attrs}
    if op.numpy_text is not None:
        slots = [f"_a{k}_" for k in range(arity)]
        text = op.numpy_text(*slots, **attrs)
        names = {n.id for n in ast.walk(ast.parse(text, mode="eval")) if isinstance(n, ast.Name)}
        return text in slots, frozenset(k for k, s in enumerate(slots) if s in names)
    import sympy  # a user op's formula

    slots = sympy.symbols(f"a0:{arity}")
    formula = op.sym(*slots, **attrs)
    return (isinstance(formula, sympy.Symbol),
            frozenset(k for k, s in enumerate(slots) if s in formula.free_symbols))


def _shared_work(kernels):
    """node id -> the SharedWork it reads, for every group of two or more statements whose
    ops share the same work on the same input with equal attributes."""
    groups = {}
    for kernel in kernels:
        n = kernel.node
        if n.op.shares:
            work, position = n.op.shares
            key = (work, id(n.inputs[position]), tuple(sorted(n.attrs.items())))
            groups.setdefault(key, []).append(n)
    shared = {}
    for members in groups.values():
        if len(members) > 1:
            work = SharedWork(members[0].op.shares[0], members[0], members[0].op.shares[1],
                              members)
            shared.update((id(n), work) for n in members)
    return shared

