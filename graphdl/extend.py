"""User-defined ops: from a SymPy formula, or from graph-building forward and pullback functions."""

from __future__ import annotations

import inspect

import numpy as np
import sympy

from graphdl.errors import GraphError
from graphdl.ir import make_node
from graphdl.opdef import OpDef
from graphdl.ops import elementwise as ew
from graphdl.ops import leaf
from graphdl.symbolic import from_sympy


def elementwise_op(name, formula):
    """A new elementwise primitive whose whole definition is the SymPy `formula`.

    `softplus = gd.elementwise_op("softplus", lambda x: sympy.log(1 + sympy.exp(x)))`
    Its gradient is `sympy.diff` of the formula, turned into graph nodes; its reference
    implementation is `sympy.lambdify`; the code generators print it with SymPy's printers.
    """
    arity = len(inspect.signature(formula).parameters)
    symbols = sympy.symbols(f"x0:{arity}")
    expr = formula(*symbols)
    if not isinstance(expr, sympy.Expr):
        raise GraphError(f"elementwise_op {name!r}: the formula must give a SymPy expression")
    derivatives = [sympy.diff(expr, s) for s in symbols]
    impl = sympy.lambdify(symbols, expr, modules="numpy")

    def pullback(node, g):
        bindings = dict(zip(symbols, node.inputs))
        return [g * from_sympy(d, bindings, node) if d != 0 else None for d in derivatives]

    return OpDef(
        name, kind="elementwise", broadcasts=True, sym=formula, pullback=pullback,
        impl=lambda *xs: impl(*xs),
        infer=lambda inputs, attrs: (ew.broadcast_shapes(inputs, name), ew.floating(name)(inputs, attrs)),
        doc=f"{name}({', '.join(map(str, symbols))}) = {expr}",
    )


# param: the i-th argument inside a custom op's body.
PARAM = OpDef("param", kind="leaf", infer=lambda inputs, a: (a["shape"], a["dtype"]), impl=None)


class CustomOp:
    """An op whose forward and pullback are Python functions building graph nodes (like JAX's
    `custom_vjp`). Each application stays one node, so gradient checks can blame it.

    `forward(*args) -> node`; `pullback(inputs, out, g) -> [gradient node or None per input]`.
    """

    def __init__(self, name, forward, pullback):
        self.name = name
        self.forward = forward
        self._bodies = {}
        self.op = OpDef(
            name, kind="custom", infer=self._infer, impl=self._impl,
            pullback=lambda node, g: list(pullback(node.inputs, node, g)),
            extra={"custom": self},
        )

    def __call__(self, *args):
        return make_node(self.op, leaf.lift_all(args))

    def body(self, inputs):
        """(params, out): the forward graph over placeholders shaped like `inputs`."""
        key = tuple((i.shape, i.dtype.name) for i in inputs)
        if key not in self._bodies:
            params = tuple(
                make_node(PARAM, (), {"index": k, "shape": i.shape, "dtype": i.dtype.name, "of": self})
                for k, i in enumerate(inputs)
            )
            (out,) = leaf.lift_all([self.forward(*params)])
            self._bodies[key] = (params, out)
        return self._bodies[key]

    def _infer(self, inputs, attrs):
        _, out = self.body(inputs)
        return out.shape, out.dtype

    def _impl(self, *values):
        from graphdl.interpret import run

        params, out = self.body([_Like(v) for v in values])
        bound = {id(p): np.asarray(v) for p, v in zip(params, values)}
        run([out], bound)
        return bound[id(out)]


class _Like:
    """Shape and dtype of an array, to find the body built for it."""

    def __init__(self, value):
        self.shape, self.dtype = np.shape(value), np.asarray(value).dtype


def custom_op(name, forward, pullback):
    """Declare a custom op; see `CustomOp`."""
    return CustomOp(name, forward, pullback)
