"""Scalar graphs -> SymPy expressions: closed forms (`gd.symbolic`, `gd.symbolic_grad`). Every
op with a SymPy form (`OpDef.sym`) is converted by it, so a user op is converted by its formula
whatever its name."""

from __future__ import annotations

import sympy

from graphdl.errors import GraphError
from graphdl.ir import describe, topological_order
from graphdl.ops import conv as cv
from graphdl.ops import elementwise as ew
from graphdl.ops import leaf
from graphdl.ops import matmul as mm
from graphdl.ops import movement as mv
from graphdl.ops import reduce as rd
from graphdl.ops.scalar import Sigmoid


def _number(value):
    """Integers and simple fractions (½) exactly, other constants as floats."""
    from fractions import Fraction

    v = float(value)
    if v.is_integer():
        return sympy.Integer(int(v))
    f = Fraction(v).limit_denominator(64)
    return sympy.Rational(f.numerator, f.denominator) if float(f) == v else sympy.Float(v)


def _input_symbol(n, args):
    if n.shape != ():
        raise GraphError(f"symbolic: input {n.name!r} has shape {n.shape}; closed forms are for "
                         "scalar graphs")
    return sympy.Symbol(n.name)


def _constant(n, args):
    a = n.attrs["value"].array
    if a.size != 1:
        raise GraphError(f"symbolic: the constant {describe(n)} is not a scalar")
    return _number(a.reshape(()))


def _first(n, args):
    return args[0]


# Leaves: converted before the scalar check of the other nodes (a constant may broadcast).
LEAVES = {
    leaf.INPUT: _input_symbol,
    leaf.CONST: _constant,
    leaf.SIZE: lambda n, args: sympy.Integer(1),  # the size of a scalar
    leaf.ZEROS_LIKE: lambda n, args: sympy.Integer(0),
}

# Built-ins whose closed form is not their SymPy form (`OpDef.sym`), keyed by the OpDef: every
# other op with a SymPy form (every elementwise op, a user's included) is converted by it.
TO_SYMPY = {
    ew.STOP_GRADIENT: lambda n, args: StopGradient(args[0]),
    ew.POW: lambda n, args: args[0] ** _number(n.attrs["exponent"]),  # x**2, sqrt(x): readable
    # identities on scalars
    **dict.fromkeys([rd.SUM, rd.MAX, rd.MIN, mv.RESHAPE, mv.SQUEEZE, mv.EXPAND_DIMS,
                     mv.BROADCAST_TO, mv.SUM_TO, mv.TRANSPOSE, mv.CHECK_SHAPE], _first),
}

# Built-ins that need arrays of one or more dimensions (or integer indices): never in a scalar
# graph, so without a closed form.
NOT_SCALAR = {mm.MATMUL, mv.SLICE, mv.UNSLICE, mv.CONCATENATE, mv.TAKE, mv.SCATTER_ADD,
              mv.CHECK_INDEX, cv.CONV2D, cv.CONV2D_INPUT_GRAD, cv.CONV2D_WEIGHT_GRAD,
              cv.MAX_POOL2D, cv.MAX_POOL2D_GRAD, cv.MAX_POOL2D_SELECT, cv.AVG_POOL2D,
              cv.AVG_POOL2D_GRAD}


def to_sympy(y, sigmoid=False):
    """The SymPy expression computed by the scalar graph `y`; inputs become symbols named after
    them. With `sigmoid=True`, sigmoid circuits (`1/(1 + e^-x)`) become σ(x)."""
    return _convert(y, sigmoid, {})


def _convert(y, sigmoid, exprs):
    """`to_sympy` with `exprs` (node id -> expression) holding the nodes already converted: a
    custom op's body is converted with its params bound to the op's arguments."""
    from graphdl.ops.composite import COMPOSITES
    from graphdl.views.circuit import match_composite

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
        found = match_composite(comp, n) if comp is not None and n.op is comp.root else None
        if found is not None:
            exprs[id(n)] = Sigmoid(exprs[id(found[0])])
        elif n.op in TO_SYMPY:
            exprs[id(n)] = TO_SYMPY[n.op](n, args)
        elif n.op.kind == "custom":
            params, out = n.op.extra["custom"].body(n.inputs)
            exprs[id(n)] = _convert(out, sigmoid, {id(p): a for p, a in zip(params, args)})
        elif n.op.sym is not None:
            exprs[id(n)] = n.op.sym(*args, **dict(n.attrs))
        else:
            raise GraphError(f"symbolic: {n.op.name} has no scalar form")
    return exprs[id(y)]


class StopGradient(sympy.Function):
    """The identity whose derivative is zero."""

    def fdiff(self, argindex=1):
        return sympy.S.Zero


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
