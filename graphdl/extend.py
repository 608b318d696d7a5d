"""User-defined ops: from a SymPy formula, or from graph-building forward and pullback functions."""

from __future__ import annotations

import functools
import inspect

import numpy as np
import sympy
from sympy.functions.elementary.piecewise import ExprCondPair

from graphdl.errors import GraphError
from graphdl.formula import from_sympy, kind
from graphdl.ir import Node, describe, format_shape, make_node
from graphdl.opdef import OpDef
from graphdl.ops import elementwise as ew
from graphdl.ops import leaf
from graphdl.ops import movement as mv

SUPPORTED = ("arithmetic and powers, the functions NumPy has (exp, log, sqrt, sin, tanh, floor, "
             "atan2, ...), Abs, sign, Max, Min, Heaviside, Piecewise (with comparisons, And, Or, "
             "Not), erf")


def elementwise_op(name, formula):
    """A new elementwise primitive whose whole definition is the SymPy `formula`.

    `softplus = gd.elementwise_op("softplus", lambda x: sympy.log(1 + sympy.exp(x)))`
    Its gradient is `sympy.diff` of the formula, turned into graph nodes; its reference
    implementation is `sympy.lambdify` with the code generator's printer (the same text as
    generated code). The formula and its first and second derivatives are checked here: a
    construct graphdl cannot compute is an error now, naming it. Derivatives of step functions
    (DiracDelta) are taken as 0, as PyTorch does for sign, abs at 0 and relu.
    """
    return formula_op(name, formula, len(inspect.signature(formula).parameters))


def formula_op(name, formula, arity):
    """`elementwise_op` for a formula of `arity` arguments."""
    symbols = sympy.symbols(f"x0:{arity}")
    expr = formula(*symbols)
    if not isinstance(expr, sympy.Expr):
        raise GraphError(f"elementwise_op {name!r}: the formula must give a SymPy expression")
    free = sorted(map(str, expr.free_symbols - set(symbols)))
    if free:
        raise GraphError(f"elementwise_op {name!r}: the formula uses {', '.join(free)}, which "
                         f"is not one of its arguments ({', '.join(map(str, symbols))})")
    # Real arguments: SymPy differentiates Abs(x) into sign(x) only for real x.
    real = sympy.symbols(f"x0:{arity}", real=True)
    derivatives = _derivatives(expr.xreplace(dict(zip(symbols, real))), real)
    _check(name, expr, derivatives, real)
    impl = _reference(symbols, expr)

    def pullback(node, g):
        bindings = dict(zip(real, node.inputs))
        return [g * from_sympy(d, bindings, node) if d != 0 else None for d in derivatives]

    return OpDef(
        name, kind="elementwise", broadcasts=True, sym=formula, pullback=pullback, impl=impl,
        infer=lambda inputs, attrs: (ew.broadcast_shapes(inputs, name),
                                     ew.floating(name)(inputs, attrs)),
        doc=f"{name}({', '.join(map(str, symbols))}) = {expr}",
    )


def _derivatives(expr, symbols):
    """∂expr/∂s for each symbol. The derivatives of steps (DiracDelta) and of floor and ceiling
    (which SymPy leaves unevaluated) are taken as 0, their value almost everywhere."""
    return [_zero_at_steps(sympy.diff(expr, s)) for s in symbols]


def _zero_at_steps(expr):
    expr = expr.replace(sympy.DiracDelta, lambda *a: sympy.S.Zero)
    expr = expr.replace(lambda e: isinstance(e, sympy.Derivative)
                        and isinstance(e.expr, (sympy.floor, sympy.ceiling)),
                        lambda e: sympy.S.Zero)
    # The chain rule through floor(2*x) gives 2*Subs(Derivative(floor(ξ), ξ), ξ, 2*x): with the
    # derivative now 0, the substitution has nothing left to substitute into.
    return expr.replace(lambda e: isinstance(e, sympy.Subs) and not e.expr.has(*e.variables),
                        lambda e: e.expr)


def _check(name, expr, derivatives, symbols):
    """Raise naming the first construct of the formula or of its first and second derivatives
    that graphdl cannot compute."""
    parts = [("the formula", expr)]
    for s, d in zip(symbols, derivatives):
        parts.append((f"its derivative in {s}", d))
        parts += [(f"its second derivative in {s}, {t}", dd)
                  for t, dd in zip(symbols, _derivatives(d, symbols))]
    for where, e in parts:
        bad = _unsupported(e)
        if bad is None:
            continue
        raise GraphError(f"elementwise_op {name!r}: {where}: {_what(bad)}; supported: {SUPPORTED}")


def _what(bad):
    """What is wrong with the construct `bad`, in words."""
    if isinstance(bad, sympy.Derivative):
        return f"SymPy cannot differentiate {bad.expr}"
    if isinstance(bad, sympy.Subs):  # the chain rule's Derivative(f(ξ), ξ) at ξ = an expression
        at = bad.expr.expr.xreplace(dict(zip(bad.variables, bad.point)))
        return f"SymPy cannot differentiate {at}"
    if bad.is_number and bad.is_extended_real is False:
        return f"{bad} (SymPy's {type(bad).__name__}) is not a real number"
    return f"SymPy's {type(bad).__name__} ({bad}) is not supported"


def _unsupported(expr):
    """The first, innermost construct of `expr` that graphdl cannot compute, or None. A
    derivative SymPy could not take comes first: it is the cause of whatever it holds."""
    if _computable(expr):
        return None
    underived = next((e for e in sympy.preorder_traversal(expr)
                      if isinstance(e, sympy.Derivative)
                      or isinstance(e, sympy.Subs) and isinstance(e.expr, sympy.Derivative)),
                     None)
    if underived is not None:
        return underived
    return next((e for e in sympy.postorder_traversal(expr)
                 if not isinstance(e, (sympy.Tuple, ExprCondPair)) and not _computable(e)), expr)


def _computable(expr):
    """Whether `from_sympy` has a rule for every part of `expr` and the printer prints it with
    NumPy alone."""
    if any(kind(e) is None for e in sympy.preorder_traversal(expr)
           if not isinstance(e, (sympy.Tuple, ExprCondPair))):
        return False
    printers, _ = _printing()
    try:
        text = printers.GraphdlNumPyPrinter().doprint(expr)
    except (NotImplementedError, TypeError, ValueError):  # what SymPy's printers raise
        return False
    return printers.numpy_only(text, {str(s) for s in expr.free_symbols})


def _reference(symbols, expr):
    """The formula evaluated with NumPy by the text generated code has, broadcast to the
    arguments' shape (a formula need not use every argument)."""
    printers, namespace = _printing()
    f = sympy.lambdify(symbols, expr, modules=[namespace], printer=printers.GraphdlNumPyPrinter())

    def impl(*xs):
        out = f(*xs)
        shape = np.broadcast_shapes(*map(np.shape, xs))
        return out if np.shape(out) == shape else np.broadcast_to(out, shape).copy()
    return impl


@functools.cache
def _printing():
    """The printer of generated code, and the namespace its text runs in: NumPy and the
    runtime's helpers. (graphdl reaches `codegen.numpy_backend.printers` lazily, as `compile`
    does.)"""
    from graphdl.codegen.numpy_backend import printers

    return printers, printers.namespace()


# param: the i-th argument inside a custom op's body.
PARAM = OpDef("param", kind="leaf", infer=lambda inputs, a: (a["shape"], a["dtype"]), impl=None)


class CustomOp:
    """An op whose forward and pullback are Python functions building graph nodes (like JAX's
    `custom_vjp`). Each application stays one node, so gradient checks can blame it.

    `forward(*args) -> node`; `pullback(inputs, out, g) -> [gradient node or None per input]`.
    The gradients are checked as the pullback builds them (`_checked`).
    """

    def __init__(self, name, forward, pullback):
        self.name = name
        self.forward = forward
        self._bodies = {}
        self.op = OpDef(
            name, kind="custom", infer=self._infer, impl=self._impl,
            pullback=lambda node, g: self._checked(node, pullback(node.inputs, node, g)),
            extra={"custom": self},
        )

    def __call__(self, *args):
        return make_node(self.op, leaf.lift_all(args))

    def body(self, inputs):
        """(params, out): the forward graph over placeholders shaped like `inputs`."""
        key = tuple((i.shape, i.dtype.name) for i in inputs)
        if key not in self._bodies:
            params = tuple(
                make_node(PARAM, (),
                          {"index": k, "shape": i.shape, "dtype": i.dtype.name, "of": self})
                for k, i in enumerate(inputs)
            )
            (out,) = leaf.lift_all([self.forward(*params)])
            self._bodies[key] = (params, out)
        return self._bodies[key]

    def _checked(self, node, grads):
        """The pullback's gradients, one per input: None (no gradient) or a node of the input's
        shape and dtype. Nothing is summed down or cast here: a gradient of another shape is
        a wrong rule, and fixing it silently would hide it."""
        where = f"custom_op {self.name!r}: the pullback"
        if not isinstance(grads, (list, tuple)):
            raise GraphError(f"{where} must return a list (one gradient or None per input), "
                             f"got {type(grads).__name__}")
        if len(grads) != len(node.inputs):
            raise GraphError(f"{where} returned {len(grads)} gradients for "
                             f"{len(node.inputs)} inputs (one gradient or None per input)")
        for k, (inp, gi) in enumerate(zip(node.inputs, grads)):
            if gi is not None:
                _check_gradient(f"{where}'s gradient for input {k} ({describe(inp)})", inp, gi)
        return list(grads)

    def _infer(self, inputs, attrs):
        _, out = self.body(inputs)
        return out.shape, out.dtype

    def _impl(self, *values):
        from graphdl.interpret import run

        params, out = self.body([_Like(v) for v in values])
        bound = {id(p): np.asarray(v) for p, v in zip(params, values)}
        run([out], bound)
        return bound[id(out)]


def _check_gradient(what, inp, gi):
    """Raise unless `gi` is a graph node of `inp`'s shape (dimensions unknown on either side
    match anything) and `inp`'s floating dtype."""
    if not isinstance(gi, Node):
        raise GraphError(f"{what} is of type {type(gi).__name__}, not a graph node (or None)")
    if inp.dtype.kind != "f":
        raise GraphError(f"{what}: the input has dtype {inp.dtype}, which has no gradient; "
                         "return None for it")
    if not mv.shapes_match(gi.shape, inp.shape):
        raise GraphError(f"{what} has shape {format_shape(gi.shape)}; the input has shape "
                         f"{format_shape(inp.shape)} (a gradient is not summed or broadcast "
                         "to fit)")
    if gi.dtype != inp.dtype:
        raise GraphError(f"{what} has dtype {gi.dtype}; the input has dtype {inp.dtype}")


class _Like:
    """Shape and dtype of an array, to find the body built for it."""

    def __init__(self, value):
        self.shape, self.dtype = np.shape(value), np.asarray(value).dtype


def custom_op(name, forward, pullback):
    """Declare a custom op; see `CustomOp`."""
    return CustomOp(name, forward, pullback)
