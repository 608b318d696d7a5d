"""The op contract: everything graphdl knows about one primitive, in one object.

An `OpDef` holds the op's shape/dtype rule (`infer`), its gradient rule (`pullback`, which builds
graph nodes), its NumPy reference implementation (`impl`) and, for elementwise ops, its SymPy
scalar form (`sym`) and, optionally, the NumPy text the code generator's printer gives that form
(`numpy_text`), so that compiling a built-in op never imports SymPy. Each op is declared in one
block in `graphdl/ops/`.

What the views need of an op is data on it too (`label`, `closed_form`, `kinks`, `narration`).
Code that belongs to a package beside the core (a backend's kernel, the ONNX emitter) stays in
that package and is registered against the OpDef with `implements`, into `OpDef.impls`: one
lookup, never a table keyed by name. `graphdl.facets` lists what every op must have, may have,
or declares not applicable, and reports what each op still lacks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from graphdl.ir import Node, make_node

REGISTRY: dict[str, OpDef] = {}


@dataclass(eq=False, frozen=True)
class OpDef:
    name: str
    infer: Callable  # (inputs, attrs) -> (shape, dtype)
    impl: Callable  # (*arrays, **attrs) -> array: the reference semantics
    pullback: Callable | None = None  # (node, g) -> [grad node or None per input]
    sym: Callable | None = None  # elementwise only: (*sympy symbols) -> sympy expression
    numpy_text: Callable | None = None  # elementwise only: (*argument names, **attrs) -> the
    #   text `codegen.numpy_backend.printers` prints for `sym` (a test keeps the two equal)
    kind: str = "structured"  # "elementwise" | "structured" | "leaf" | "custom"
    broadcasts: bool = False  # inputs broadcast to the output (autodiff undoes it)
    shape_only: tuple = ()  # positions of inputs whose shape is used, never their values
    view: bool = False  # no arithmetic: the result is its first input re-indexed (reshape, slice)
    aliases: bool = False  # the result may be, or share memory with, an input (a view does)
    shares: tuple = ()  # (work, input position): ops that name the same work on the same input
    #                     with equal attributes may compute it once (a max-pool's arg-max search)
    # Facets of the views. A string, where a callable is expected, says why the op has none.
    label: str | Callable | None = None  # the gate's symbol in drawings and narrations ("σ",
    #   "Σ"), or (node, folded) -> symbol, `folded` the {position: text} of constant operands
    #   drawn inside the gate; default: the name
    closed_form: Callable | str | None = None  # not elementwise: (node, SymPy args) -> its value
    #   in a scalar graph (`gd.symbolic`); elementwise ops have `sym`, which this overrides
    #   where set (stop_gradient's derivative is zero, pow's exponent a readable fraction)
    kinks: Callable | str | None = None  # not elementwise: (node, arrays, reach) -> why a
    #   gradient check within `reach` of the inputs straddles a kink, or None; elementwise: `sym`
    narration: Callable | str | None = None  # not elementwise: (wire) -> the rule of one wire of
    #   the backward step in words (`gd.explain`), `wire` a `graphdl.views.steps.Wire` (the
    #   handles y, x, dy, dx, args); elementwise ops are narrated from `sym`
    impls: dict = field(default_factory=dict)  # facet -> what a package registered (`implements`)
    doc: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.label is None:
            object.__setattr__(self, "label", self.name)
        if self.view:  # a view is its input re-indexed: it aliases it, whatever was declared
            object.__setattr__(self, "aliases", True)

    def __repr__(self):
        return f"OpDef({self.name})"

    __hash__ = object.__hash__

    def __call__(self, *inputs, **attrs):
        """Build (or find) the node applying this op; Python numbers become weak constants."""
        for i in inputs:
            if type(i) is not Node:
                from graphdl.ops.leaf import lift_all  # leaf builds on this module

                inputs = lift_all(inputs)
                break
        return make_node(self, inputs, attrs)


def register(op: OpDef) -> OpDef:
    """Add a built-in op to the registry (user ops stay unregistered, so names may repeat)."""
    if op.name in REGISTRY:
        raise ValueError(f"built-in op {op.name!r} is declared twice")
    REGISTRY[op.name] = op
    return op


def implements(facet, *ops):
    """Register the decorated function as the `facet` of each of `ops` (a backend's kernel code,
    the ONNX emitter): `op.impls[facet]` finds it."""
    def add(function):
        for op in ops:
            if facet in op.impls:
                raise ValueError(f"{op.name}: facet {facet!r} is registered twice")
            op.impls[facet] = function
        return function
    return add


def implements_each(facet, table):
    """Register each function of `table` ({OpDef: function}) as that op's `facet`."""
    for op, function in table.items():
        implements(facet, op)(function)
