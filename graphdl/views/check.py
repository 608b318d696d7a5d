"""Finite-difference gradient checks, per node, so a wrong rule is blamed where it lives.

The checks see the graph as declared (each node's rule is what is checked), so a node may
overflow where compiled code, which runs the stabilized graph, does not. An edge whose values
(the node's inputs or output in its own dtype, the pullback's result or the differences) are
not all finite is reported as not checked, never blamed: inf - inf says nothing about a rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graphdl import autodiff
from graphdl.interpret import evaluate, run
from graphdl.ir import describe, topological_order
from graphdl.ops import elementwise as ew
from graphdl.ops import leaf


@dataclass
class NodeCheck:
    node: object
    input_index: int
    analytic: float  # <pullback(u), v>
    numeric: float  # <u, (f(x + εv) - f(x - εv)) / 2ε>
    overflow: bool = False  # some value on the edge is NaN or ±inf: not checked

    @property
    def error(self):
        if self.overflow:
            return 0.0
        return abs(self.analytic - self.numeric) / max(1.0, abs(self.numeric))

    def __str__(self):
        text = (f"{describe(self.node, 2)} (node {self.node.id}), input {self.input_index}: "
                f"pullback gives {self.analytic:.6g}, finite differences {self.numeric:.6g}")
        return text + ("; not checked: overflow" if self.overflow else "")


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
        """The edges not checked because a value on them overflowed (NaN or ±inf)."""
        return [c for c in self.checks if c.overflow]

    @property
    def first(self):
        """The first wrong edge (in topological order), or None."""
        failures = self.failures
        return failures[0] if failures else None

    def report(self):
        """Every checked edge, one a line, the wrong ones marked; the first wrong one named."""
        lines = [str(self)]
        for c in self.checks:
            mark = "–" if c.overflow else "✗" if c.error > self.tolerance else "✓"
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
        skipped = len(self.unchecked)
        note = f" ({skipped} not checked: overflow)" if skipped else ""
        if self.ok:
            agree = len(self.checks) - skipped
            return f"gradient check passed: {agree} edges agree with finite differences{note}"
        first = self.failures[0]
        return (f"gradient check failed on {len(self.failures)} of {len(self.checks)} edges"
                f"{note}; first wrong edge: {first}")


def check_op(node, values, eps=1e-6, seed=0):
    """Check `node`'s pullback against central differences of its own function, in float64.

    `values` maps node id -> array for the node's inputs. One random direction per input.
    """
    rng = np.random.default_rng(seed)
    args = [np.asarray(values[id(i)]) for i in node.inputs]
    args64 = [a.astype(np.float64) if a.dtype.kind == "f" else a for a in args]

    attrs = dict(node.attrs)
    if node.op is ew.CAST and np.dtype(attrs["dtype"]).kind == "f":
        attrs["dtype"] = "float64"  # a cast to float32 would quantize the differences

    def f(xs):
        return np.asarray(node.op.impl(*xs, **attrs), dtype=np.float64)

    out = f(args64)
    u = rng.standard_normal(out.shape)
    g = leaf.input("__cotangent__", node.shape, node.dtype.name)
    bound = {id(i): a for i, a in zip(node.inputs, args)}
    bound[id(node)] = out.astype(node.dtype)
    bound[id(g)] = u.astype(node.dtype)
    checks = []
    # `bound` is keyed by id(): the gradient nodes must outlive the loop, or a new node may
    # reuse a dead one's id
    edges = [(k, inp, gi) for k, inp, gi in autodiff.edge_gradients(node, g)
             if inp.dtype.kind == "f"]
    for k, inp, gi in edges:
        run([gi], bound)
        v = rng.standard_normal(args64[k].shape)
        plus, minus = list(args64), list(args64)
        plus[k], minus[k] = args64[k] + eps * v, args64[k] - eps * v
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: reported as overflow
            numeric = float(np.sum(u * (f(plus) - f(minus)) / (2 * eps)))
            analytic = float(np.sum(bound[id(gi)] * v))
        finite = _finite(*args, bound[id(node)], bound[id(gi)], numeric)
        checks.append(NodeCheck(node, k, analytic, numeric, overflow=not finite))
    return checks


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
