"""SymPy scalar expressions -> graph nodes: how a user op's derivatives (`sympy.diff` of its
formula) become graph nodes. A SymPy function is built by the op whose SymPy form (`OpDef.sym`)
it is. The other direction, closed forms of graphs, is a view: `graphdl.views.symbolic`."""

from __future__ import annotations

import sympy
from sympy.logic.boolalg import BooleanAtom

from graphdl.errors import GraphError
from graphdl.opdef import REGISTRY
from graphdl.ops import elementwise as ew
from graphdl.ops import leaf


def _applied(arity, relation=False):
    """SymPy function (or relation) -> the built-in elementwise op of `arity` operands whose
    SymPy form is that function applied to its operands and nothing else: exp(x), Max(x, y),
    x > y. Read from the registry, so that a new op with such a form is built without an edit."""
    symbols = sympy.symbols(f"x0:{arity}")
    found = {}
    for op in REGISTRY.values():
        if op.kind != "elementwise" or op.sym is None:
            continue
        try:
            e = op.sym(*symbols)
        except TypeError:  # another number of operands, or attributes (pow's exponent)
            continue
        if (e.is_Relational if relation else e.is_Function) and e.args == symbols:
            found[e.func] = op
    return found


# SymPy -> graph: a SymPy function or relation is built by the op whose SymPy form it is.
_UNARY = _applied(1)
_FOLDED = _applied(2)  # Max(a, b, c): pairwise
_WHERE = ew.WHERE.sym(*sympy.symbols("c x y")).func  # its condition is cast to bool first
_COMPARE = _applied(2, relation=True)
_LOGIC = (sympy.And, sympy.Or, sympy.Not)
_derived_ops = {}


def _function(func, args, like):
    if func in _UNARY:
        return _UNARY[func](*args)
    if func in _FOLDED:
        op = _FOLDED[func]
        out = args[0]
        for a in args[1:]:
            out = op(out, a)
        return out
    if func is sympy.Heaviside:  # 1 above 0, H(0) at 0, else 0 (also at NaN, as relu's gradient)
        x, at_zero = args
        one, zero = leaf.constant(1.0, like.dtype), leaf.constant(0.0, like.dtype)
        return ew.WHERE(ew.GREATER(x, 0), one, ew.WHERE(ew.EQUAL(x, 0), at_zero, zero))
    if func is _WHERE:
        return ew.WHERE(ew.cast(args[0], "bool"), args[1], args[2])
    key = (func, len(args))
    if key not in _derived_ops:  # any other SymPy function becomes an op of its own
        from graphdl.extend import formula_op

        _derived_ops[key] = formula_op(func.__name__, func, len(args))
    return _derived_ops[key](*args)


def _power(base, exponent):
    if exponent == -1:
        return ew.RECIPROCAL(base)
    if exponent == sympy.S.Half:
        return ew.SQRT(base)
    if isinstance(exponent, sympy.Number):
        e = int(exponent) if exponent.is_integer else float(exponent)
        return ew.POW(base, exponent=e)
    return ew.EXP(exponent * ew.LOG(base))


def _piecewise(e, arg, like):
    """Nested where, first condition outermost; NaN where no condition holds (as SymPy)."""
    *pairs, (value, cond) = e.args
    out = arg(value) if cond is sympy.true else \
        ew.WHERE(arg(cond), arg(value), leaf.constant(float("nan"), like.dtype))
    for value, cond in reversed(pairs):
        out = ew.WHERE(arg(cond), arg(value), out)
    return out


def _logic(e, args):
    """And, Or, Not of bool nodes, as selects."""
    if isinstance(e, sympy.Not):
        return ew.WHERE(args[0], False, True)
    out = args[0]
    for a in args[1:]:
        out = ew.WHERE(out, a, False) if isinstance(e, sympy.And) else ew.WHERE(out, True, a)
    return out


def kind(e):
    """Which rule of `from_sympy` builds `e`, or None where it has none."""
    if e.is_number:  # a complex number (I, zoo) has no float to become
        return None if e.is_extended_real is False else "leaf"
    if e.is_Symbol or isinstance(e, BooleanAtom):
        return "leaf"
    if e.is_Add or e.is_Mul or e.is_Pow:
        return "arithmetic"
    if isinstance(e, sympy.Piecewise):
        return "piecewise"
    if type(e) in _COMPARE:
        return "compare"
    if isinstance(e, _LOGIC):
        return "logic"
    return "function" if e.is_Function and isinstance(e, sympy.Expr) else None  # not Xor, ITE


def _operands(e):
    """The sub-expressions that get nodes of their own (a Piecewise's values and conditions)."""
    args = [x for pair in e.args for x in pair] if isinstance(e, sympy.Piecewise) else e.args
    return [a for a in args if not (a.is_number or isinstance(a, BooleanAtom))]


def from_sympy(expr, bindings, like):
    """Build graph nodes computing `expr`, with `bindings` mapping SymPy symbols to nodes.

    Numbers become weak constants of `like`'s dtype. Iterative (post-order with a stack).
    """
    done = {}
    stack = [expr]
    while stack:
        e = stack[-1]
        if e in done:
            stack.pop()
            continue
        pending = [a for a in _operands(e) if a not in done]
        if pending and not e.is_Symbol:
            stack.extend(pending)
            continue
        stack.pop()
        done[e] = _build(e, done, bindings, like)
    return done[expr]


def _build(e, done, bindings, like):
    def arg(a):  # numbers, and numeric constants such as pi or sqrt(2), become constants
        if isinstance(a, BooleanAtom):
            return leaf.constant(bool(a), "bool")
        return leaf.constant(float(a), like.dtype) if a.is_number else done[a]

    how = kind(e)
    if e.is_Symbol:
        if e not in bindings:
            raise GraphError(f"the expression uses {e}, which is not one of the op's arguments")
        return bindings[e]
    if how == "leaf":
        return arg(e)
    if e.is_Add or e.is_Mul:
        coeff, terms = (e.as_coeff_Add() if e.is_Add else e.as_coeff_Mul())
        rest = [arg(t) for t in
                (sympy.Add.make_args(terms) if e.is_Add else sympy.Mul.make_args(terms))]
        out = rest[0]
        for r in rest[1:]:
            out = ew.ADD(out, r) if e.is_Add else ew.MUL(out, r)
        if e.is_Add:
            return out if coeff == 0 else ew.ADD(out, float(coeff))
        if coeff == -1:
            return ew.NEG(out)
        return out if coeff == 1 else ew.MUL(float(coeff), out)
    if e.is_Pow:
        base, exponent = e.args
        if isinstance(exponent, sympy.Number):
            return _power(arg(base), exponent)
        return ew.EXP(arg(exponent) * ew.LOG(arg(base)))
    if how == "piecewise":
        return _piecewise(e, arg, like)
    if how == "compare":
        return _COMPARE[type(e)](arg(e.lhs), arg(e.rhs))
    if how == "logic":
        return _logic(e, [arg(a) for a in e.args])
    if how == "function":
        return _function(e.func, [arg(a) for a in e.args], like)
    raise GraphError(f"cannot turn the SymPy expression {e} into graph nodes")
