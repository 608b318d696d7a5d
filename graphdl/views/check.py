"""Finite-difference gradient checks, per node, so a wrong rule is blamed where it lives.

The checks see the graph as declared (each node's rule is what is checked), so a node may
overflow where compiled code, which runs the stabilized graph, does not. An edge whose values
(the node's inputs or output in its own dtype, the pullback's result or the differences) are
not all finite is reported as not checked, never blamed: inf - inf says nothing about a rule.

A node at a kink (relu or abs at 0, a tie in a max/min or a max-pool window, maximum(a, a), a
comparison on its boundary — inside a user op too) has no derivative there: finite differences
straddle the kink and would blame a correct rule. Such a node is checked at a probe moved off
the kink by a small deterministic perturbation of its inputs (a wrong rule is still blamed
there), or, when no move clears the kink, reported as not checked. Either way the report says
which kink it is and the convention graphdl's rule follows (PyTorch's).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graphdl import autodiff
from graphdl.interpret import evaluate, run
from graphdl.ir import describe, topological_order
from graphdl.ops import elementwise as ew
from graphdl.ops import leaf

REACH = 10  # a kink closer than REACH · eps to the probe is within the finite differences' step
MOVE = 1e3  # a probe at a kink moves by MOVE · eps · (the input's scale): far out of REACH
MOVES = 3  # attempts to clear the kink (new directions each), before reporting it unchecked


@dataclass
class NodeCheck:
    node: object
    input_index: int
    analytic: float  # <pullback(u), v>
    numeric: float  # <u, (f(x + εv) - f(x - εv)) / 2ε>
    overflow: bool = False  # some value on the edge is NaN or ±inf: not checked
    kink: str | None = None  # the node is not differentiable at the given values: why
    moved: bool = False  # ... and the check ran at a probe moved off the kink

    @property
    def checked(self):
        return not self.overflow and (self.kink is None or self.moved)

    @property
    def error(self):
        if not self.checked:
            return 0.0
        return abs(self.analytic - self.numeric) / max(1.0, abs(self.numeric))

    def __str__(self):
        text = f"{describe(self.node, 2)} (node {self.node.id}), input {self.input_index}"
        if self.kink is not None and not self.moved:
            return f"{text}: not checked: not differentiable here ({self.kink})"
        text += (f": pullback gives {self.analytic:.6g}, finite differences {self.numeric:.6g}"
                 + ("; not checked: overflow" if self.overflow else ""))
        if self.moved:
            text += f"; not differentiable here ({self.kink}): checked beside the kink"
        return text


@dataclass
class GradCheck:
    """The result of `check_grad`: every checked edge, and those that disagree (first = blame)."""

    checks: list = field(default_factory=list)
    tolerance: float = 1e-3
    output: object = None  # the checked scalar node and the input values, for `draw`
    values: dict = None

    @property
    def failures(self):
        return [c for c in self.checks if c.error > self.tolerance]

    @property
    def unchecked(self):
        """The edges not checked: a value on them overflowed (NaN or ±inf), or their node is at
        a kink no probe could be moved off."""
        return [c for c in self.checks if not c.checked]

    @property
    def kinks(self):
        """The edges whose node is not differentiable at the given values (see `NodeCheck.kink`):
        checked beside the kink (`moved`) or not checked."""
        return [c for c in self.checks if c.kink is not None]

    @property
    def first(self):
        """The first wrong edge (in topological order), or None."""
        failures = self.failures
        return failures[0] if failures else None

    def report(self):
        """Every checked edge, one a line, the wrong ones marked; the first wrong one named."""
        lines = [str(self)]
        for c in self.checks:
            mark = "–" if not c.checked else "✗" if c.error > self.tolerance else "✓"
            src = describe(c.node.inputs[c.input_index])
            lines.append(f"  {mark} {src} -> {c}")
        return "\n".join(lines)

    def draw(self, **options):
        """The checked graph drawn with `gd.draw`, the first wrong edge highlighted."""
        from graphdl.views.viz import draw

        return draw(self.output, self.values, check=self, **options)

    @property
    def ok(self):
        return not self.failures

    def __str__(self):
        overflow = sum(c.overflow for c in self.checks)
        kinks = [c for c in self.kinks if not c.overflow]
        moved = sum(c.moved for c in kinks)
        notes = [f"{overflow} not checked: overflow" if overflow else "",
                 f"{moved} at a kink, checked beside it" if moved else "",
                 f"{len(kinks) - moved} not checked: not differentiable here"
                 if len(kinks) > moved else ""]
        note = "; ".join(n for n in notes if n)
        note = f" ({note})" if note else ""
        if self.ok:
            agree = len(self.checks) - len(self.unchecked)
            return f"gradient check passed: {agree} edges agree with finite differences{note}"
        first = self.failures[0]
        return (f"gradient check failed on {len(self.failures)} of {len(self.checks)} edges"
                f"{note}; first wrong edge: {first}")


def check_op(node, values, eps=1e-6, seed=0):
    """Check `node`'s pullback against central differences of its own function, in float64.

    `values` maps node id -> array for the node's inputs. One random direction per input.
    At a kink (see the module's docstring) the probe is moved off it when a move clears it.
    """
    g = leaf.input("__cotangent__", node.shape, node.dtype.name)
    # the pullback into each floating-point input; `bound` below is keyed by id(): these nodes
    # must outlive the loop, or a new node may reuse a dead one's id
    edges = [(k, inp, gi) for k, inp, gi in autodiff.edge_gradients(node, g)
             if inp.dtype.kind == "f"]
    if not edges:
        return []
    args = [np.asarray(values[id(i)]) for i in node.inputs]
    kink = kink_at(node, args, REACH * eps) if _finite(*args) else None
    moved = None if kink is None else _off_kink(node, args, eps, seed)
    if kink is not None and moved is None:
        return [NodeCheck(node, k, 0.0, 0.0, kink=kink) for k, _, _ in edges]
    args = args if moved is None else moved
    rng = np.random.default_rng(seed)
    args64 = [a.astype(np.float64) if a.dtype.kind == "f" else a for a in args]

    attrs = dict(node.attrs)
    if node.op is ew.CAST and np.dtype(attrs["dtype"]).kind == "f":
        attrs["dtype"] = "float64"  # a cast to float32 would quantize the differences

    def f(xs):
        return np.asarray(node.op.impl(*xs, **attrs), dtype=np.float64)

    out = f(args64)
    u = rng.standard_normal(out.shape)
    bound = {id(i): a for i, a in zip(node.inputs, args)}
    bound[id(node)] = out.astype(node.dtype)
    bound[id(g)] = u.astype(node.dtype)
    checks = []
    for k, inp, gi in edges:
        run([gi], bound)
        v = rng.standard_normal(args64[k].shape)
        plus, minus = list(args64), list(args64)
        plus[k], minus[k] = args64[k] + eps * v, args64[k] - eps * v
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: reported as overflow
            numeric = float(np.sum(u * (f(plus) - f(minus)) / (2 * eps)))
            analytic = float(np.sum(bound[id(gi)] * v))
        finite = _finite(*args, bound[id(node)], bound[id(gi)], numeric)
        checks.append(NodeCheck(node, k, analytic, numeric, overflow=not finite, kink=kink,
                                moved=moved is not None))
    return checks


def _off_kink(node, args, eps, seed):
    """`args` with every floating-point one moved by a small deterministic perturbation that
    clears every kink of `node` (None if none of `MOVES` tries does)."""
    for attempt in range(MOVES):
        rng = np.random.default_rng([seed, attempt])
        moved = [_perturbed(a, eps, rng) if a.dtype.kind == "f" else a for a in args]
        if _finite(*moved) and kink_at(node, moved, REACH * eps) is None:
            return moved
    return None


def _perturbed(a, eps, rng):
    scale = MOVE * eps * max(1.0, float(np.max(np.abs(a), initial=0.0)))
    return (a + scale * rng.standard_normal(a.shape)).astype(a.dtype)


# ---------------------------------------------------------------------------------------------
# Kinks: where an op is not differentiable, and the convention its rule follows there


def kink_at(node, args, reach):
    """Why `node` is not differentiable within `reach` of its input values `args` (its first
    kink, and the convention its pullback follows there), or None where it is."""
    if not any(i.dtype.kind == "f" for i in node.inputs):
        return None  # nothing to perturb: integer comparisons (one_hot's) are exact
    find = node.op.kinks if callable(node.op.kinks) else None  # a string: it has none
    if find is None and node.op.kind == "elementwise" and node.op.sym is not None:
        find = _elementwise_kink
    elif find is None and node.op.kind == "custom":
        find = _body_kink
    if find is None:
        return None
    with np.errstate(invalid="ignore", over="ignore"):  # -inf - -inf: no kink (NaN <= reach)
        return find(node, args, reach)


def _elementwise_kink(node, args, reach):
    """The first non-smooth part of the op's SymPy form whose kink lies within `reach`."""
    from graphdl.formula import from_sympy

    symbols, parts = _nonsmooth_parts(node)
    if not parts:
        return None
    bindings = dict(zip(symbols, node.inputs))
    distances = [from_sympy(distance, bindings, node) for _, distance in parts]
    bound = {id(i): np.asarray(a) for i, a in zip(node.inputs, args)}
    run(distances, bound)
    for (why, _), d in zip(parts, distances):
        if np.any(np.abs(bound[id(d)]) <= reach):
            return why
    return None


def _nonsmooth_parts(node):
    """(symbols, [(why, distance)]): each kink of the op's SymPy form, with the expression whose
    zero it is (relu's argument, the difference of maximum's arguments, a comparison's sides)."""
    import sympy

    from graphdl.ops.scalar import Relu

    conventions = {
        Relu: "relu at 0; PyTorch's convention is relu'(0) = 0",
        sympy.Abs: "abs at 0; PyTorch's convention is abs'(0) = 0",
        sympy.sign: "a step at 0; its derivative is taken as 0 (PyTorch)",
        sympy.Heaviside: "a step at 0; its derivative is taken as 0 (PyTorch)",
        sympy.Max: "maximum of equal values; PyTorch's convention splits the gradient evenly",
        sympy.Min: "minimum of equal values; PyTorch's convention splits the gradient evenly",
    }
    symbols = sympy.symbols(f"x0:{len(node.inputs)}")
    expr = node.op.sym(*symbols, **dict(node.attrs))
    boundary = ("a comparison on its boundary; the branch it selects gets the whole gradient "
                "(a where or Piecewise switches here)")
    parts = []
    for e in sympy.preorder_traversal(expr):
        if isinstance(e, sympy.core.relational.Relational):
            parts.append((boundary, e.lhs - e.rhs))
        elif e.func in (sympy.Max, sympy.Min) and len(e.args) == 2:
            parts.append((conventions[e.func], e.args[0] - e.args[1]))
        elif e.func in conventions and len(e.args) <= 2:  # Heaviside(x, value at 0)
            parts.append((conventions[e.func], e.args[0]))
    return symbols, parts


def _body_kink(node, args, reach):
    """A kink of any node inside a custom op's body, at the values the body computes."""
    params, out = node.op.extra["custom"].body(node.inputs)
    bound = {id(p): np.asarray(a) for p, a in zip(params, args)}
    run([out], bound)
    for inner in topological_order([out]):
        if inner.inputs and id(inner) in bound:
            why = kink_at(inner, [bound[id(i)] for i in inner.inputs], reach)
            if why is not None:
                return f"{why}, inside {node.op.name}"
    return None


def _finite(*values):
    return all(np.all(np.isfinite(a)) for a in map(np.asarray, values) if a.dtype.kind in "fc")


def check_grad(y, values, tolerance=1e-3):
    """Check every edge of `y`'s graph against finite differences, at the given input values.

    Returns a `GradCheck`; `.failures[0]` is the first edge (in topological order) whose
    gradient rule disagrees, e.g. a custom op with a wrong hand-written pullback. The graph is
    evaluated as declared; edges where it overflows are listed in `.unchecked`, not blamed.
    """
    order = topological_order([y])
    nodes = [n for n in order if n.op.pullback is not None and n.inputs]
    # One evaluation binds every node (inputs included: evaluating each input alone would
    # refuse the other inputs' values as unknown).
    valued = [n for n in order if n.op is not leaf.CONST]
    declared = evaluate(valued, values, stabilize=False) if valued else []
    bound = {id(n): v for n, v in zip(valued, declared)}
    for n in order:
        if n.op is leaf.CONST:
            bound[id(n)] = n.attrs["value"].array
    result = GradCheck(tolerance=tolerance, output=y, values=dict(values))
    for node in nodes:
        result.checks.extend(check_op(node, bound))
    return result
