"""Scalar graphs -> SymPy expressions: closed forms (`gd.symbolic`, `gd.symbolic_grad`). An op is
converted by its `OpDef.closed_form`, else by its SymPy form (`OpDef.sym`), so a user op is
converted by its formula whatever its name; a custom op through its body."""

from __future__ import annotations

import sympy

from graphdl.errors import GraphError
from graphdl.ir import describe, topological_order
from graphdl.ops import leaf
from graphdl.ops.scalar import Sigmoid, exact


def _input_symbol(n, args):
    if n.shape != ():
        raise GraphError(f"symbolic: input {n.name!r} has shape {n.shape}; closed forms are for "
                         "scalar graphs")
    return sympy.Symbol(n.name)


def _constant(n, args):
    a = n.attrs["value"].array
    if a.size != 1:
        raise GraphError(f"symbolic: the constant {describe(n)} is not a scalar")
    return exact(a.reshape(()))


# Leaves: converted before the scalar check of the other nodes (a constant may broadcast).
LEAVES = {leaf.INPUT: _input_symbol, leaf.CONST: _constant}


def to_sympy(y, sigmoid=False):
    """The SymPy expression computed by the scalar graph `y`; inputs become symbols named after
    them. With `sigmoid=True`, sigmoid circuits (`1/(1 + e^-x)`) become σ(x)."""
    return _convert(y, sigmoid, {})


def _convert(y, sigmoid, exprs):
    """`to_sympy` with `exprs` (node id -> expression) holding the nodes already converted: a
    custom op's body is converted with its params bound to the op's arguments."""
    from graphdl.ops.composite import COMPOSITES
    from graphdl.views.composites import match_composite

    comp = COMPOSITES["sigmoid"] if sigmoid else None
    for n in topological_order([y]):
        if id(n) in exprs:
            continue
        args = [exprs[id(i)] for i in n.inputs]
        if n.op in LEAVES:
            exprs[id(n)] = LEAVES[n.op](n, args)
            continue
        if n.shape != () or any(i.shape != () for i in n.inputs if i.op is not leaf.CONST):
            raise GraphError(f"symbolic: {describe(n, 2)} is not scalar; closed forms are for "
                             "scalar graphs")
        found = match_composite(comp, n) if comp is not None and comp.ends_with(n.op) else None
        if found is not None:
            exprs[id(n)] = Sigmoid(exprs[id(found[0])])
        elif callable(n.op.closed_form):  # before `sym`: an elementwise op's may differ
            exprs[id(n)] = n.op.closed_form(n, args)
        elif n.op.kind == "custom":
            params, out = n.op.extra["custom"].body(n.inputs)
            exprs[id(n)] = _convert(out, sigmoid, {id(p): a for p, a in zip(params, args)})
        elif n.op.sym is not None:
            exprs[id(n)] = n.op.sym(*args, **dict(n.attrs))
        else:
            why = f" ({n.op.closed_form})" if isinstance(n.op.closed_form, str) else ""
            raise GraphError(f"symbolic: {n.op.name} has no scalar form{why}")
    return exprs[id(y)]


def symbolic(y, sigmoid=False):
    """The closed form of the scalar graph `y` as a SymPy expression (see `to_sympy`)."""
    return to_sympy(y, sigmoid)


def symbolic_grad(y, x, sigmoid=False, simplify=True):
    """∂y/∂x in closed form. `x`: an input node or its name. Simplified cheaply (common factors
    pulled out, no full `simplify`, which can run for minutes on small networks)."""
    name = x if isinstance(x, str) else x.name
    expr = sympy.diff(to_sympy(y, sigmoid), sympy.Symbol(name))
    if simplify:
        expr = sympy.factor_terms(expr)
    return expr
